/* Teeka phone simulator: feature phones that use the gateway's webhooks as a telecom partner would.
 *
 * USSD hops go to /ussd with the session's inputs joined by "*", SMS to /sms/incoming; each
 * phone polls its inbox (every message the gateway sent that number, with delivery status).
 * A message reaches the handset once the worker has sent it, as on a real network. */
"use strict";

const SETUP = JSON.parse(document.getElementById("setup").textContent);
const RECEIVED = new Set(SETUP.received);
const POLL_MS = 1000;
const TAP_MS = 900; // a second press of the same key within this cycles its letters
const MAX_SMS = 459; // three segments
const MAX_USSD = 182;
const LETTERS = {
  "1": ".,?!'-1", "2": "abc2", "3": "def3", "4": "ghi4", "5": "jkl5", "6": "mno6",
  "7": "pqrs7", "8": "tuv8", "9": "wxyz9", "0": " 0", "*": "*+-/#",
};
const ENTRY_MODES = ["123", "ABC", "abc"]; // "#" cycles them while writing
const KEYBOARD = {
  Enter: "green", Escape: "red", Backspace: "clear", ArrowUp: "up", ArrowDown: "down",
  ArrowLeft: "left", ArrowRight: "right", F1: "left", F2: "right",
};
const DIAL_KEYS = /^[0-9*#+]$/;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function randomHex(bytes) {
  const values = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(values, (b) => b.toString(16).padStart(2, "0")).join("");
}

function two(n) { return String(n).padStart(2, "0"); }
function clock(date) { return `${two(date.getHours())}:${two(date.getMinutes())}`; }
function stamp(seconds) {
  const d = new Date(seconds * 1000);
  return `${clock(d)}:${two(d.getSeconds())}`;
}
function providerDate(date) { // Africa's Talking sends "2026-11-26 10:00:00"
  return `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())} ` +
         `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}`;
}

/** POST a form to one of the gateway's webhooks, with the key when one is configured. */
async function webhook(name, fields) {
  const url = new URL(SETUP.urls[name], location.href);
  if (SETUP.key) url.searchParams.set("key", SETUP.key);
  try {
    const response = await fetch(url, { method: "POST", body: new URLSearchParams(fields), cache: "no-store" });
    return { ok: response.ok, status: response.status, text: await response.text() };
  } catch (error) {
    return { ok: false, status: 0, text: "the gateway does not answer" };
  }
}

class Phone {
  constructor(station, role, number) {
    this.role = role;
    station.append(document.getElementById("station-template").content.cloneNode(true));
    const $ = (selector) => station.querySelector(selector);
    this.ui = {
      station, phone: $(".phone"), screen: $(".screen"), content: $(".content"), mode: $(".entry-mode"),
      envelope: $(".envelope"), clock: $(".clock"), left: $(".soft-left"), right: $(".soft-right"),
      number: $(".number"), numberError: $(".number-error"), thread: $(".thread"), logNumber: $(".log-number"),
    };
    $(".who").textContent = role === "vaccinator" ? "Vaccinator's number" : "Citizen's number";
    this.ui.phone.setAttribute("aria-label", `${role}'s phone`);
    if (role === "vaccinator") this.ui.number.setAttribute("list", "vaccinator-numbers");
    this.mode = "idle";
    this.buffer = "";
    this.entry = "123";
    this.tap = null;
    this.selected = 0;
    this.ussd = null;
    this.notice = null;
    this.openId = null;
    this.resetInbox();
    this.bindKeys();
    this.ui.number.addEventListener("change", () => this.setNumber(this.ui.number.value));
    this.ui.number.addEventListener("keydown", (e) => { if (e.key === "Enter") this.ui.number.blur(); });
    this.render();
    this.setNumber(Phone.remembered(role) || number);
    setInterval(() => this.poll(), POLL_MS);
    setInterval(() => this.renderStatus(), 15000);
  }

  static remembered(role) {
    try { return localStorage.getItem(`teeka-simulator-${role}`); } catch (error) { return null; }
  }

  resetInbox() {
    this.messages = [];
    this.outgoing = [];
    this.read = new Set();
    this.known = new Set();
    this.loaded = false;
    this.signature = "";
  }

  // ---- the SIM ----
  async setNumber(raw) {
    const wanted = raw.trim();
    this.ui.numberError.textContent = "";
    if (!wanted) return;
    const data = await this.fetchInbox(wanted);
    if (!data) return;
    if (data.error) {
      this.ui.numberError.textContent = `${wanted}: ${data.error}`;
      return;
    }
    if (data.phone !== this.number) {
      this.hangUp();
      this.number = data.phone;
      this.resetInbox();
      this.goIdle();
    }
    this.ui.number.value = data.phone;
    this.ui.logNumber.textContent = data.phone;
    try { localStorage.setItem(`teeka-simulator-${this.role}`, data.phone); } catch (error) { /* private mode */ }
    this.update(data.messages);
  }

  async fetchInbox(phone) {
    const url = new URL(SETUP.urls.inbox, location.href);
    url.searchParams.set("phone", phone);
    try {
      const response = await fetch(url, { cache: "no-store" });
      if (response.status === 400) return { error: (await response.json()).error };
      return response.ok ? await response.json() : null;
    } catch (error) {
      return null; // the gateway is away for a moment: the next poll tries again
    }
  }

  async poll() {
    if (!this.number || this.polling) return;
    this.polling = true;
    try {
      const data = await this.fetchInbox(this.number);
      if (data && data.phone === this.number) this.update(data.messages);
    } finally {
      this.polling = false;
    }
  }

  /** Take the latest inbox: note arrivals, then redraw what changed. */
  update(messages) {
    this.messages = messages;
    let arrived = 0;
    for (const m of this.received()) {
      if (this.known.has(m.id)) continue;
      this.known.add(m.id);
      if (this.loaded) arrived += 1;
      else this.read.add(m.id); // already there when the phone was switched on
    }
    this.loaded = true;
    const signature = messages.map((m) => `${m.id}:${m.status}`).join(",") + `|${this.outgoing.length}`;
    if (signature === this.signature) return;
    this.signature = signature;
    if (arrived) {
      this.ui.screen.classList.remove("flash");
      void this.ui.screen.offsetWidth; // restart the animation
      this.ui.screen.classList.add("flash");
    }
    this.renderLog();
    if (["idle", "inbox", "message"].includes(this.mode)) this.render();
    else this.renderStatus();
  }

  /** Messages the handset has: the provider took them (newest first). */
  received() {
    return this.messages.filter((m) => RECEIVED.has(m.status)).sort((a, b) => (b.sent || b.created) - (a.sent || a.created));
  }

  unread() {
    return this.received().filter((m) => !this.read.has(m.id));
  }

  // ---- input ----
  bindKeys() {
    for (const button of this.ui.station.querySelectorAll(".phone [data-key]")) {
      button.tabIndex = -1; // the phone takes the focus, so the keyboard keeps working after a click
      button.addEventListener("mousedown", (e) => e.preventDefault());
      button.addEventListener("click", () => {
        this.ui.phone.focus({ preventScroll: true });
        this.press(button.dataset.key);
      });
    }
    this.ui.phone.addEventListener("keydown", (e) => {
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      const named = KEYBOARD[e.key];
      if (named) {
        e.preventDefault();
        this.flashKey(named);
        this.press(named);
      } else if (e.key.length === 1) {
        e.preventDefault();
        this.flashKey(e.key);
        this.typed(e.key);
      }
    });
  }

  flashKey(key) {
    const button = this.ui.station.querySelector(`.phone [data-key="${CSS.escape(key)}"]`);
    if (!button) return;
    button.classList.add("pressed");
    setTimeout(() => button.classList.remove("pressed"), 120);
  }

  writing() {
    return this.mode === "compose" || this.mode === "ussd";
  }

  /** A character from the computer's keyboard. */
  typed(ch) {
    if (this.writing()) {
      this.commitTap();
      this.insert(ch);
    } else if (DIAL_KEYS.test(ch)) {
      this.press(ch);
    }
  }

  /** A key of the phone: a digit, "*", "#", or left/right/up/down/ok/green/red/clear. */
  press(key) {
    if (this.mode === "notice") return this.closeNotice();
    if (this.writing() && (key in LETTERS || key === "#")) return this.keypadWrite(key);
    const handler = this[`on_${this.mode.replace("-", "_")}`];
    if (handler) handler.call(this, key);
    this.render();
  }

  keypadWrite(key) {
    if (key === "#") {
      this.commitTap();
      this.entry = ENTRY_MODES[(ENTRY_MODES.indexOf(this.entry) + 1) % ENTRY_MODES.length];
      return this.render();
    }
    if (this.entry === "123") {
      this.commitTap();
      this.insert(key);
      return this.render();
    }
    const letters = LETTERS[key];
    const now = Date.now();
    if (this.tap && this.tap.key === key && now - this.tap.at < TAP_MS) {
      this.tap.index = (this.tap.index + 1) % letters.length;
      this.buffer = this.buffer.slice(0, -1) + this.cased(letters[this.tap.index]);
    } else {
      this.commitTap();
      if (!this.insert(this.cased(letters[0]))) return this.render();
      this.tap = { key, index: 0 };
    }
    this.tap.at = now;
    clearTimeout(this.tapTimer);
    this.tapTimer = setTimeout(() => { this.tap = null; this.render(); }, TAP_MS);
    this.render();
  }

  cased(ch) {
    return this.entry === "ABC" ? ch.toUpperCase() : ch;
  }

  commitTap() {
    clearTimeout(this.tapTimer);
    this.tap = null;
  }

  insert(text) {
    const limit = this.mode === "ussd" ? MAX_USSD : MAX_SMS;
    if (this.buffer.length + text.length > limit) return false;
    this.buffer += text;
    this.render();
    return true;
  }

  backspace() {
    this.commitTap();
    this.buffer = this.buffer.slice(0, -1);
  }

  scroll(by) {
    this.ui.content.scrollTop += by;
  }

  goIdle() {
    this.commitTap();
    this.mode = "idle";
    this.buffer = "";
    this.render();
  }

  // ---- modes: on_<mode>(key) ----
  on_idle(key) {
    if (DIAL_KEYS.test(key)) {
      if (this.buffer.length < 40) this.buffer += key;
    } else if (key === "clear" || (key === "right" && this.buffer)) {
      this.buffer = this.buffer.slice(0, -1);
    } else if (key === "red") {
      this.buffer = "";
    } else if (key === "green" && this.buffer) {
      this.dial(this.buffer);
    } else if ((key === "left" || key === "ok") && !this.buffer) {
      if (this.unread().length) this.openMessage(this.unread()[0].id);
      else this.openMenu();
    } else if (key === "right") {
      this.openInbox();
    }
  }

  menuItems() {
    return [
      ["Messages", () => this.openInbox()],
      ["Write message", () => this.compose("")],
      [`Dial ${SETUP.ussdCode}`, () => this.dial(SETUP.ussdCode)],
    ];
  }

  openMenu() {
    this.mode = "menu";
    this.selected = 0;
  }

  on_menu(key) {
    const items = this.menuItems();
    if (key === "up") this.selected = (this.selected + items.length - 1) % items.length;
    else if (key === "down") this.selected = (this.selected + 1) % items.length;
    else if (["left", "ok", "green"].includes(key)) items[this.selected][1]();
    else if (/^[1-9]$/.test(key) && items[Number(key) - 1]) items[Number(key) - 1][1]();
    else if (key === "right" || key === "red" || key === "clear") this.goIdle();
  }

  openInbox() {
    this.mode = "inbox";
    this.selected = 0;
  }

  on_inbox(key) {
    const list = this.received();
    if (key === "up") this.selected = Math.max(0, this.selected - 1);
    else if (key === "down") this.selected = Math.min(list.length - 1, this.selected + 1);
    else if (["left", "ok", "green"].includes(key) && list[this.selected]) this.openMessage(list[this.selected].id);
    else if (key === "right" || key === "clear") this.openMenu();
    else if (key === "red") this.goIdle();
  }

  openMessage(id) {
    this.mode = "message";
    this.openId = id;
    this.read.add(id);
    this.renderedView = null;
  }

  on_message(key) {
    if (key === "up") this.scroll(-40);
    else if (key === "down") this.scroll(40);
    else if (key === "left" || key === "green") this.compose("");
    else if (key === "right" || key === "clear" || key === "ok") this.openInbox();
    else if (key === "red") this.goIdle();
  }

  compose(text) {
    this.mode = "compose";
    this.buffer = text;
    this.entry = "ABC";
  }

  on_compose(key) {
    if (key === "left" || key === "green" || key === "ok") {
      if (this.buffer.trim()) this.sendSms(this.buffer);
    } else if (key === "right" || key === "clear") {
      if (this.buffer) this.backspace();
      else this.goIdle();
    } else if (key === "red") {
      this.goIdle();
    } else if (key === "up") this.scroll(-40);
    else if (key === "down") this.scroll(40);
  }

  on_ussd(key) {
    if (key === "left" || key === "green" || key === "ok") {
      if (this.buffer) this.reply(this.buffer);
    } else if (key === "right" || key === "clear") {
      if (this.buffer) this.backspace();
      else this.hangUp();
    } else if (key === "red") {
      this.hangUp();
    } else if (key === "up") this.scroll(-40);
    else if (key === "down") this.scroll(40);
  }

  on_ussd_wait(key) {
    if (key === "red" || key === "right") this.hangUp();
  }

  on_ussd_end(key) {
    if (key === "up") this.scroll(-40);
    else if (key === "down") this.scroll(40);
    else this.goIdle();
  }

  // ---- USSD: a session of hops, the inputs joined by "*" ----
  dial(code) {
    this.commitTap();
    this.buffer = "";
    if (!/^\*[0-9*]+#$/.test(code)) {
      this.showNotice("Calls are not simulated", `Dial a USSD code such as ${SETUP.ussdCode}`);
      return;
    }
    this.ussd = { sessionId: `ATUid_${randomHex(16)}`, serviceCode: code, inputs: [], screen: "", started: Date.now() };
    this.hop();
  }

  reply(text) {
    this.commitTap();
    this.ussd.inputs.push(text);
    this.buffer = "";
    this.hop();
  }

  async hop() {
    const session = this.ussd;
    this.mode = "ussd-wait";
    this.render();
    const answer = await webhook("ussd", {
      sessionId: session.sessionId, serviceCode: session.serviceCode, phoneNumber: this.number,
      networkCode: SETUP.networkCode, text: session.inputs.join("*"),
    });
    if (this.ussd !== session) return; // hung up while waiting
    const match = /^(CON|END)(?: |$)([\s\S]*)$/.exec(answer.text);
    if (!answer.ok || !match) {
      this.ussd = null;
      this.showNotice("Connection problem or invalid MMI code",
                      answer.ok ? "the gateway's answer is not USSD" : `HTTP ${answer.status} ${answer.text}`.trim());
      return;
    }
    session.screen = match[2];
    this.buffer = "";
    this.entry = "123";
    this.renderedView = null;
    if (match[1] === "END") {
      this.mode = "ussd-end";
      this.endSession(session, "Success");
      this.ussd = null;
      this.ussdScreen = session.screen;
    } else {
      this.mode = "ussd";
    }
    this.render();
  }

  hangUp() {
    const session = this.ussd;
    this.ussd = null;
    if (session) this.endSession(session, "Incomplete");
    if (this.mode.startsWith("ussd")) this.goIdle();
  }

  /** The network's session-end notice, as Africa's Talking sends it. */
  endSession(session, status) {
    webhook("ussdEvents", {
      sessionId: session.sessionId, serviceCode: session.serviceCode, phoneNumber: this.number, status,
      networkCode: SETUP.networkCode, hopsCount: String(session.inputs.length + 1),
      input: session.inputs.join("*"), lastAppResponse: session.screen,
      durationInMillis: String(Date.now() - session.started), date: providerDate(new Date()),
    });
  }

  // ---- SMS ----
  async sendSms(text) {
    this.commitTap();
    const sent = { id: `sim-${randomHex(12)}`, text, at: Date.now() / 1000, result: "sending" };
    this.outgoing.push(sent);
    this.renderLog();
    this.showNotice("Sending message", "", true);
    const answer = await webhook("smsIncoming", {
      from: this.number, to: SETUP.shortCode, text, id: sent.id,
      date: providerDate(new Date()), networkCode: SETUP.networkCode,
    });
    sent.result = answer.ok ? "accepted" : "refused";
    sent.detail = answer.ok ? "" : `HTTP ${answer.status} ${answer.text}`.trim();
    this.renderLog();
    if (answer.ok) this.showNotice("Message sent", `to ${SETUP.shortCode}`, false, 1200);
    else this.showNotice("Message not sent", sent.detail);
  }

  // ---- notices: a short message over the screen ----
  showNotice(title, detail, busy = false, closeAfter = 0) {
    clearTimeout(this.noticeTimer);
    this.mode = "notice";
    this.notice = { title, detail, busy };
    this.buffer = "";
    if (closeAfter) this.noticeTimer = setTimeout(() => this.closeNotice(), closeAfter);
    this.render();
  }

  closeNotice() {
    if (this.notice && this.notice.busy) return;
    clearTimeout(this.noticeTimer);
    this.notice = null;
    this.goIdle();
  }

  // ---- drawing ----
  renderStatus() {
    this.ui.clock.textContent = clock(new Date());
    this.ui.mode.textContent = this.writing() ? this.entry : "";
    const unread = this.unread().length;
    this.ui.envelope.textContent = unread ? `\u2709${unread}` : "";
  }

  render() {
    this.renderStatus();
    this.ui.phone.dataset.mode = this.mode;
    const view = this.view();
    const c = this.ui.content;
    const key = `${this.mode}:${this.openId}`;
    const keep = key === this.renderedView ? c.scrollTop : 0;
    c.replaceChildren(...view.nodes);
    c.scrollTop = view.bottom ? c.scrollHeight : keep;
    this.renderedView = key;
    this.ui.left.textContent = view.left || "";
    this.ui.right.textContent = view.right || "";
  }

  view() {
    switch (this.mode) {
      case "menu": return this.menuView();
      case "inbox": return this.inboxView();
      case "message": return this.messageView();
      case "compose": return this.composeView();
      case "ussd": return this.ussdView();
      case "ussd-wait": return { nodes: [el("div", "center spinner", "USSD code running")], right: "Cancel" };
      case "ussd-end": return { nodes: [el("div", "", this.ussdScreen)], left: "OK" };
      case "notice": return this.noticeView();
      default: return this.idleView();
    }
  }

  idleView() {
    const nodes = [el("div", "operator", "Teeka Net")];
    const unread = this.unread().length;
    if (this.buffer) {
      nodes.push(el("div", "big", this.buffer));
      return { nodes, left: "", right: "Clear" };
    }
    const now = new Date();
    nodes.push(el("div", "center dim", now.toDateString()));
    nodes.push(el("div", "center", this.number || "no number"));
    if (unread) nodes.push(el("div", "center title", `\u2709 ${unread} new message${unread > 1 ? "s" : ""}`));
    return { nodes, left: unread ? "Read" : "Menu", right: "Inbox" };
  }

  menuView() {
    const list = el("ul");
    this.menuItems().forEach(([label], i) => {
      list.append(el("li", i === this.selected ? "selected" : "", `${i + 1} ${label}`));
    });
    return { nodes: [el("div", "title", "Menu"), list], left: "Select", right: "Back" };
  }

  inboxView() {
    const list = this.received();
    this.selected = Math.min(this.selected, Math.max(0, list.length - 1));
    const nodes = [el("div", "title", `Inbox (${list.length})`)];
    if (!list.length) {
      nodes.push(el("div", "dim", "No messages"));
      return { nodes, right: "Back" };
    }
    const ul = el("ul");
    list.forEach((m, i) => {
      const classes = [i === this.selected ? "selected" : "", this.read.has(m.id) ? "" : "unread"].join(" ");
      const mark = this.read.has(m.id) ? " " : "\u2709";
      ul.append(el("li", classes, `${mark} ${stamp(m.sent || m.created).slice(0, 5)} ${m.text}`));
    });
    nodes.push(ul);
    return { nodes, left: "Open", right: "Back" };
  }

  messageView() {
    const m = this.messages.find((x) => x.id === this.openId);
    if (!m) return { nodes: [el("div", "dim", "Message deleted")], right: "Back" };
    return {
      nodes: [
        el("div", "title", `${SETUP.shortCode}  ${stamp(m.sent || m.created).slice(0, 5)}`),
        el("div", "message-text", m.text),
        el("div", "dim", `\nStatus: ${m.status}`),
      ],
      left: "Reply",
      right: "Back",
    };
  }

  entryLine() {
    const line = el("div", "entry");
    if (this.tap) {
      line.append(this.buffer.slice(0, -1), el("span", "pending", this.buffer.slice(-1)));
    } else {
      line.append(this.buffer);
    }
    line.append(el("span", "cursor"));
    return line;
  }

  composeView() {
    return {
      nodes: [
        el("div", "title", `To: ${SETUP.shortCode}   ${this.buffer.length}/${MAX_SMS}`),
        this.entryLine(),
      ],
      left: this.buffer.trim() ? "Send" : "",
      right: this.buffer ? "Clear" : "Back",
      bottom: true,
    };
  }

  ussdView() {
    return {
      nodes: [el("div", "ussd-screen", this.ussd.screen), this.entryLine()],
      left: this.buffer ? "Send" : "",
      right: this.buffer ? "Clear" : "Cancel",
      bottom: Boolean(this.buffer),
    };
  }

  noticeView() {
    const nodes = [el("div", "center title", this.notice.title)];
    if (this.notice.busy) nodes[0].classList.add("spinner");
    if (this.notice.detail) nodes.push(el("div", "center", this.notice.detail));
    return { nodes, left: this.notice.busy ? "" : "OK" };
  }

  renderLog() {
    const entries = [
      ...this.messages.map((m) => ({ at: m.created, node: this.incomingEntry(m) })),
      ...this.outgoing.map((s) => ({ at: s.at, node: this.outgoingEntry(s) })),
    ].sort((a, b) => a.at - b.at);
    if (!entries.length) {
      this.ui.thread.replaceChildren(el("li", "empty", "No SMS yet. Messages the gateway sends this number appear here."));
      return;
    }
    this.ui.thread.replaceChildren(...entries.map((e) => e.node));
    this.ui.thread.parentElement.scrollTop = this.ui.thread.parentElement.scrollHeight;
  }

  incomingEntry(m) {
    const li = el("li", "in");
    li.dataset.id = m.id;
    const meta = el("div", "meta", `${SETUP.shortCode} \u2192 you \u00b7 ${stamp(m.created)} \u00b7 ${m.purpose} `);
    const badge = el("span", `badge ${m.status}`, m.status);
    badge.title = m.error || (m.delivered ? `delivered ${stamp(m.delivered)}` : m.sent ? `sent ${stamp(m.sent)}` : "");
    meta.append(badge);
    li.append(meta, el("div", "text", m.text));
    return li;
  }

  outgoingEntry(s) {
    const li = el("li", "out");
    const meta = el("div", "meta", `you \u2192 ${SETUP.shortCode} \u00b7 ${stamp(s.at)} `);
    const badge = el("span", `badge ${s.result}`, s.result);
    if (s.detail) badge.title = s.detail;
    meta.append(badge);
    li.append(meta, el("div", "text", s.text));
    return li;
  }
}

function start() {
  for (const node of document.querySelectorAll(".ussd-code")) node.textContent = SETUP.ussdCode;
  document.querySelector(".backend").textContent = SETUP.backend === "outbox"
    ? "SMS backend: outbox. Nothing goes to a provider: messages reach only these phones, once the worker has sent them."
    : `SMS backend: ${SETUP.backend}. Messages also go to the provider for real.`;
  const numbers = document.getElementById("vaccinator-numbers");
  for (const v of SETUP.vaccinators) {
    const option = el("option");
    option.value = v.phone;
    option.label = `${v.name}, centre ${v.centre}`;
    numbers.append(option);
  }
  const first = SETUP.vaccinators.length ? SETUP.vaccinators[0].phone : "";
  window.phones = {
    citizen: new Phone(document.getElementById("citizen"), "citizen", SETUP.citizen),
    vaccinator: new Phone(document.getElementById("vaccinator"), "vaccinator", first),
  };
}

start();
