"""A fake Africa's Talking SMS API: a real HTTP server on 127.0.0.1 with the provider's shapes.

It accepts `POST /version1/messaging` like the real API (form fields `username, to, message,
from, bulkSMSMode, enqueue`; header `apiKey`), records every request, and answers HTTP 201
with `Content-Type: application/json` exactly and the recorded body shape. Per recipient it
can be scripted (and re-scripted while running) to answer with a failure status, an HTTP 500
for the whole request, or a reply slower than the client's timeout. A wrong `apiKey` gets the
real 401 `text/plain` answer. It also builds and posts the provider's callbacks (delivery
reports, incoming SMS) with `+` encoded as `%2B`, as Africa's Talking sends them.
"""
from __future__ import annotations

import json
import queue
import secrets
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

AUTH_FAILED = "The supplied authentication is invalid"
GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€"
)
GSM7_EXT = set("^{}\\[~]|€")

# behaviour -> (statusCode, status) of the recipient row
RECIPIENT_FAILURES = {
    "risk_hold": (401, "RiskHold"),
    "invalid_sender": (402, "InvalidSenderId"),
    "invalid_phone": (403, "InvalidPhoneNumber"),
    "unsupported_number": (404, "UnsupportedNumberType"),
    "insufficient_balance": (405, "InsufficientBalance"),
    "blacklist": (406, "UserInBlacklist"),
    "could_not_route": (407, "CouldNotRoute"),
    "dnd": (409, "DoNotDisturbRejection"),
    "internal_error": (500, "InternalServerError"),
    "gateway_error": (501, "GatewayError"),
    "rejected_by_gateway": (502, "RejectedByGateway"),
}
# behaviours that shape the whole HTTP answer rather than one recipient row
REQUEST_BEHAVIOURS = ("http_500", "timeout", "no_recipients")
BEHAVIOURS = ("accept", *RECIPIENT_FAILURES, *REQUEST_BEHAVIOURS)


def segments(text: str) -> int:
    """Message parts as the provider bills them (GSM-7 160/153, UCS-2 70/67)."""
    if all(ch in GSM7 for ch in text):
        septets = sum(2 if ch in GSM7_EXT else 1 for ch in text)
        return 1 if septets <= 160 else -(-septets // 153)
    units = len(text.encode("utf-16-le")) // 2
    return 1 if units <= 70 else -(-units // 67)


@dataclass
class SentRequest:
    """One request the fake received, with what it answered."""

    at: float  # when the request arrived
    path: str
    api_key: str
    form: dict[str, str]
    status: int = 0
    answer: str = ""
    answered: float = 0.0

    @property
    def to(self) -> list[str]:
        return [n for n in self.form.get("to", "").split(",") if n]

    @property
    def message(self) -> str:
        return self.form.get("message", "")


@dataclass
class _Script:
    behaviour: str
    times: int | None  # None: for ever


@dataclass
class FakeAT:
    """The server; start() it, point the adapter at `url`, script recipients, read `requests`."""

    api_key: str = "test-api-key"
    username: str = "sandbox"
    delay: float = 0.0  # seconds before each answer
    timeout_sleep: float = 3.0  # how long a "timeout" answer sleeps (longer than the client waits)
    allowed_sender_ids: set[str] | None = None  # None: any `from` is accepted
    backlog: int = 2048
    json_content_type: str = "application/json"  # the real API's exact value; the SDK depends on it
    keep_requests: bool = True  # False: record nothing (long benchmarks); `on_answer` still runs
    on_answer: object = None  # called with each SentRequest once answered
    requests: list[SentRequest] = field(default_factory=list)
    _scripts: dict[str, list[_Script]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # ---- lifecycle ----
    def start(self, port: int = 0) -> "FakeAT":
        fake = self
        threads = _Threads()

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = fake.backlog
            allow_reuse_address = True

            def process_request(self, request, client_address):
                threads.run(self.process_request_thread, request, client_address)

            def server_close(self):
                super().server_close()
                threads.stop()

        self._server = Server(("127.0.0.1", port), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="fake-at", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def configure(self, config, **overrides):
        """`config` with the gateway's SMS sent to this fake through the real SDK."""
        return config.with_overrides(at_api_key=self.api_key, at_api_url=self.url,
                                     sms_backend="africastalking", **overrides)

    @property
    def url(self) -> str:
        """Base URL without /version1, as GATEWAY_AT_API_URL expects it."""
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # ---- scripting ----
    def script(self, number: str, behaviour: str, times: int | None = None) -> None:
        """Answer `number` with `behaviour` (`times` requests, or for ever); replaces its script."""
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}; one of {BEHAVIOURS}")
        with self._lock:
            self._scripts[number] = [_Script(behaviour, times)]

    def fail_first(self, number: str, n: int, behaviour: str = "internal_error") -> None:
        """The first `n` requests for `number` fail with `behaviour`, later ones are accepted."""
        self.script(number, behaviour, times=n)

    def clear(self, number: str | None = None) -> None:
        with self._lock:
            if number is None:
                self._scripts.clear()
            else:
                self._scripts.pop(number, None)

    def _behaviour(self, number: str) -> str:
        """The scripted behaviour for one request to `number`; counts down limited scripts."""
        with self._lock:
            scripts = self._scripts.get(number)
            if not scripts:
                return "accept"
            current = scripts[0]
            if current.times is not None:
                current.times -= 1
                if current.times <= 0:
                    scripts.pop(0)
            return current.behaviour

    # ---- reading what was sent ----
    def sent_to(self, number: str) -> list[SentRequest]:
        with self._lock:
            return [r for r in self.requests if number in r.to]

    def accepted_to(self, number: str) -> list[SentRequest]:
        """Requests for `number` that the fake accepted (a messageId was issued)."""
        return [r for r in self.sent_to(number) if r.status == 201 and '"messageId": "ATXid_' in r.answer]

    def message_ids(self, number: str) -> list[str]:
        """The messageIds issued for `number`, in order."""
        ids = []
        for r in self.accepted_to(number):
            for row in json.loads(r.answer)["SMSMessageData"]["Recipients"]:
                if row["number"] == number and row["messageId"].startswith("ATXid_"):
                    ids.append(row["messageId"])
        return ids

    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._scripts.clear()

    # ---- answering ----
    def answer(self, path: str, api_key: str, form: dict[str, str], arrived: float | None = None) -> tuple[int, str, str]:
        """(HTTP status, content type, body) for one request; records it."""
        record = SentRequest(at=arrived or time.time(), path=path, api_key=api_key, form=form)
        if self.keep_requests:
            with self._lock:
                self.requests.append(record)
        if self.delay:
            time.sleep(max(0.0, record.at + self.delay - time.time()))
        status, ctype, body = self._answer(path, api_key, form)
        record.status, record.answer, record.answered = status, body, time.time()
        if self.on_answer is not None:
            self.on_answer(record)
        return status, ctype, body

    def max_in_flight(self) -> int:
        """The most requests that were with the fake at one moment."""
        with self._lock:
            events = sorted([(r.at, 1) for r in self.requests] + [(r.answered, -1) for r in self.requests if r.answered])
        most = current = 0
        for _, step in events:
            current += step
            most = max(most, current)
        return most

    def _answer(self, path: str, api_key: str, form: dict[str, str]) -> tuple[int, str, str]:
        if path != "/version1/messaging":
            return 404, "text/plain; charset=UTF-8", "The requested resource could not be found."
        if api_key != self.api_key or form.get("username") != self.username:
            return 401, "text/plain; charset=UTF-8", AUTH_FAILED
        numbers = [n for n in form.get("to", "").split(",") if n]
        if not numbers or "message" not in form:
            return 400, "text/plain; charset=UTF-8", "Request is missing required form field 'to'"
        sender = form.get("from")
        if self.allowed_sender_ids is not None and sender is not None and sender not in self.allowed_sender_ids:
            return 201, "application/json", json.dumps(
                {"SMSMessageData": {"Message": "InvalidSenderId", "Recipients": []}})
        behaviours = [self._behaviour(n) for n in numbers]
        if "timeout" in behaviours:
            time.sleep(self.timeout_sleep)
        if "http_500" in behaviours:
            return 500, "text/plain; charset=UTF-8", "Internal Server Error"
        if "no_recipients" in behaviours:
            return 201, "application/json", json.dumps(
                {"SMSMessageData": {"Message": "InvalidSenderId", "Recipients": []}})
        parts = segments(form["message"])
        accepted_code = 102 if form.get("enqueue") == "1" else 101
        rows, sent = [], 0
        for number, behaviour in zip(numbers, behaviours):
            if behaviour in RECIPIENT_FAILURES:
                code, status = RECIPIENT_FAILURES[behaviour]
                rows.append({"statusCode": code, "number": number, "status": status, "cost": "0",
                             "messageId": "None"})
            else:
                sent += 1
                rows.append({"statusCode": accepted_code, "number": number, "status": "Success",
                             "cost": f"KES {0.8 * parts:.4f}", "messageId": "ATXid_" + secrets.token_hex(16),
                             "messageParts": parts})
        total = f"KES {0.8 * parts * sent:.4f}" if sent else "0"
        body = {"SMSMessageData": {"Message": f"Sent to {sent}/{len(numbers)} Total Cost: {total}",
                                   "Recipients": rows}}
        return 201, "application/json", json.dumps(body)


class _Threads:
    """Daemon threads, one per connection in progress; a finished one waits for the next
    connection instead of exiting (starting a thread costs more than answering a request)."""

    def __init__(self):
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        self._idle = 0
        self._count = 0
        self._lock = threading.Lock()

    def run(self, fn, *args) -> None:
        with self._lock:
            spawn = self._idle == 0
            if spawn:
                self._count += 1
            else:
                self._idle -= 1
        self._work.put((fn, args))
        if spawn:
            threading.Thread(target=self._loop, name="fake-at-conn", daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            count = self._count
        for _ in range(count):
            self._work.put(None)

    def _loop(self) -> None:
        while (task := self._work.get()) is not None:
            fn, args = task
            try:
                fn(*args)
            finally:
                with self._lock:
                    self._idle += 1


def _handler_for(fake: FakeAT):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "akka-http/10.2.10"
        sys_version = ""

        def do_POST(self):  # noqa: N802 (http.server's naming)
            arrived = time.time()
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode("utf-8") if length else ""
            form = {k: v[-1] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()}
            status, ctype, body = fake.answer(self.path.split("?")[0], self.headers.get("apiKey", ""), form, arrived)
            if ctype == "application/json":
                ctype = fake.json_content_type
            payload = body.encode("utf-8")
            try:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="api",charset=UTF-8')
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a scripted timeout)

        def log_message(self, format, *args):  # noqa: A002 (http.server's signature)
            pass

    return Handler


# ---- callbacks the provider posts to the application ----
def delivery_report_body(message_id: str, status: str, phone: str, *, failure_reason: str = "",
                         network_code: str = "99999", retry_count: int | None = 0) -> str:
    """A delivery report form, encoded as Africa's Talking encodes it (`+` as `%2B`)."""
    fields = {"id": message_id, "status": status, "phoneNumber": phone, "networkCode": network_code}
    if failure_reason:
        fields["failureReason"] = failure_reason
    if retry_count is not None:
        fields["retryCount"] = str(retry_count)
    return urllib.parse.urlencode(fields)


def incoming_sms_body(phone: str, text: str, *, message_id: str | None = None, to: str = "12345",
                      network_code: str = "99999", date: str | None = None) -> str:
    """An incoming SMS form, encoded as Africa's Talking encodes it."""
    fields = {
        "from": phone, "to": to, "text": text, "id": message_id or secrets.token_hex(16),
        "date": date or time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "networkCode": network_code,
    }
    return urllib.parse.urlencode(fields)


FORM = "application/x-www-form-urlencoded"


def post_form(url: str, body: str, timeout: float = 5.0) -> requests.Response:
    """POST an encoded callback body to the application over HTTP."""
    return requests.post(url, data=body.encode("utf-8"), headers={"Content-Type": FORM}, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fake_at():
    """A started fake provider, stopped after the test."""
    server = FakeAT().start()
    yield server
    server.stop()
