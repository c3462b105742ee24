"""The one orchestrator: dedupe, load state, call the flow step, apply effects in one transaction.

Concurrency is optimistic: the keys a step depends on are WATCHed before they are read, and
the step's writes go into one MULTI/EXEC. If anything changed in between (a duplicate hop, a
racing booking, a second DONE) the EXEC fails and the step runs again on fresh data, so a
repeated hop answers the same screen and no effect happens twice. A USSD hop that only moves
the menu along (nothing it does could harm if done twice) is first tried without the WATCH.

Every transaction lives in one hash slot, its *home*: the sender's number, or for a
vaccinator's V/DONE the number whose appointment it names (then the vaccinator's own number
is held by a short lock instead). Writes elsewhere go through `gateway.slots`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from redis.exceptions import RedisClusterException, RedisError, WatchError
from redis.crc import key_slot

from flows import availability, commands, ids, sms, ussd
from flows.base import Channel, Context, Inbound, Outcome, Reply, SetLanguage
from flows.domain import Status

from . import codes, gsm, keys, outbox, phones, shedding, slots, store
from .effects import Commit, SeatLost, Stale, hour_of, transact
from .logs import log_event

USSD_SESSION_TTL = 600  # seconds; AT sessions last at most 180 s
RESUME_TTL = 600  # "dialling again within 10 minutes" resumes an unfinished booking
SEEN_TTL = 48 * 3600
MAX_ATTEMPTS = 50  # optimistic retries under contention (200 people racing for 10 seats)


@lru_cache(maxsize=8)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def now_in(services) -> datetime:
    return datetime.now(_zone(services.config.timezone))


def _random_digits(n: int) -> str:
    return f"{secrets.randbelow(10 ** n):0{n}d}"


_PAGE_SIZES: dict[int, tuple[object, dict[str, int]]] = {}  # id(templates) -> sizes


def _page_sizes(services) -> dict[str, int]:
    """Items per USSD page of each configured language, worked out once per template set."""
    templates = services.templates
    held = _PAGE_SIZES.get(id(templates))
    if held is None or held[0] is not templates:  # holding it keeps its id from being reused
        if len(_PAGE_SIZES) > 16:
            _PAGE_SIZES.clear()
        held = (templates, {lang: templates.page_size(lang) for lang in services.config.languages})
        _PAGE_SIZES[id(templates)] = held
    return held[1]


def _base_context(services, citizen, now: datetime | None = None, **extra) -> Context:
    return Context(
        now=now or now_in(services),
        citizen=citizen,
        languages=services.config.languages,
        max_per_mobile=services.config.max_per_mobile,
        page_size=_page_sizes(services),
        new_ref=ids.make_ref(_random_digits(9)),
        ussd_code=services.config.ussd_code,
        **extra,
    )


def _commit(services, pipe, outcome: Outcome, ctx: Context, before=(), home: str = "") -> Commit:
    """Phase 1 (watch, re-check, take a seat) and phase 2 (one MULTI/EXEC) of a step's effects,
    then its follow-ups. `home` is a key of the transaction's slot (default: the citizen's)."""
    known = {a.ref: a for a in ctx.citizen.appointments}
    if ctx.appointment is not None:
        known[ctx.appointment.ref] = ctx.appointment
    commit = Commit(services=services, now=ctx.now, known=known, citizen=ctx.citizen,
                    catalog=ctx.catalog, codes=dict(ctx.codes))
    transact(services, pipe, commit, home or keys.citizen(ctx.citizen.phone),
             *before, lambda w: commit.write(w, outcome.effects),
             prepare=lambda: commit.prepare(pipe, outcome.effects))
    return commit


def _enqueue(services, commit: Commit) -> None:
    """After the commit: tell the operator's log of alerts, then queue the step's messages
    (alerts first: a queue that does not answer must not silence them)."""
    for alert in commit.alerts:
        log_event("operator.alert", level=logging.WARNING, kind=alert.kind, ref=alert.ref,
                  detail=alert.detail)
    for message_id, priority in commit.messages:
        outbox.enqueue(services, message_id, priority)


def _enqueue_later(services, commit: Commit) -> None:
    """`_enqueue`, run once the answer has gone. A job it cannot create (Redis down by then)
    is not lost: the record stays queued and the worker's requeue-stuck sweep gives it one."""
    try:
        _enqueue(services, commit)
    except (RedisError, RedisClusterException) as exc:
        log_event("sms.enqueue_failed", level=logging.WARNING, error=type(exc).__name__,
                  messages=[message_id for message_id, _ in commit.messages])


# ------------------------------------------------------------------ USSD
def _ussd_lang(state, previous, citizen, services) -> str:
    """The screen's language: the new state's, else the state before an END, else saved."""
    lang = (state or {}).get("l") or (previous or {}).get("l") or citizen.lang
    return lang if lang in services.config.languages else services.config.languages[0]


def handle_ussd(services, session_id: str, phone: str, text: str, service_code: str = "",
                network_code: str = "", after=None) -> tuple[str, bool]:
    """One USSD hop -> (screen text without the CON/END prefix, end of session?).

    What follows a commit (the jobs of its SMS) runs before returning, or, given `after`, is
    handed to it as a callable: the webhook runs it once the screen is on its way, so the
    citizen does not wait for the SMS queue."""
    shed = shedding.shed_screen(services, session_id, phone, text)  # launch days: busy
    if shed is not None:
        return shed, True
    r = services.redis
    skey, rkey = keys.ussd_session(phone, session_id), keys.ussd_resume(phone)
    last = text.rsplit("*", 1)[-1] if text else ""
    heard = _digest(text)
    # Most hops only move the menu along: running such a hop twice writes the same record, so
    # the first try reads without a WATCH (one round trip less). A step with an effect that
    # must not happen twice (a booking, a cancellation, an SMS) is run again under WATCH.
    watched, catalog = False, None
    for _ in range(MAX_ATTEMPTS):
        with r.pipeline(transaction=True) as pipe:
            try:
                if watched:
                    pipe.watch(skey, keys.citizen(phone), keys.citizen_appointments(phone))
                # Read on another connection, after the WATCH: a change made after these reads
                # is still a change after the WATCH, so the EXEC below fails on it.
                raw, resume_to, held, hashes, version = store.ussd_hop_reads(r, skey, rkey, phone)
                record = json.loads(raw) if raw else None
                if record is not None and record["h"] in (heard, text):
                    return record["r"], bool(record.get("e"))  # a repeat: same screen, no effects
                window = availability.window(now_in(services).date())
                # The catalogue is never WATCHed (a seat is re-checked when it is taken), so
                # the run under WATCH may use what the first try read.
                catalog = catalog or store.StoreCatalog(r, window, version, fresh=watched)
                citizen, nonces = store.citizen_from(r, phone, held, hashes, catalog, hashes=hashes)
                codes_by_ref = store.codes_from(services.config.code_secret,
                                                citizen.appointments, nonces)
                ctx = _base_context(services, citizen, catalog=catalog, codes=codes_by_ref)
                if record is None:
                    outcome = ussd.start(ctx, _resume_state(r, phone, resume_to))
                else:
                    inbound = Inbound(phone, last, Channel.USSD, session_id)
                    outcome = ussd.step(record["st"], inbound, ctx)
                if not watched and not _repeatable(outcome):
                    watched = True
                    continue
                hop = _Hop(session_id, skey, rkey, heard, record, resume_to is not None)
                try:
                    screen, end, commit = _save_ussd(services, pipe, outcome, ctx, hop, watched)
                except SeatLost:
                    pipe.unwatch()
                    ctx = replace(ctx, catalog=store.StoreCatalog(r, window, version, fresh=True))
                    lost = Inbound(phone, last, Channel.USSD, session_id, event="seat_lost")
                    outcome = ussd.step(record["st"], lost, ctx)
                    pipe.watch(skey, keys.citizen(phone), keys.citizen_appointments(phone))
                    screen, end, commit = _save_ussd(services, pipe, outcome, ctx, hop, watched)
            except (WatchError, Stale):
                catalog = None  # contention: seats may have gone, read them again
                continue
        if commit is not None and (commit.messages or commit.alerts):
            if after is None:
                _enqueue(services, commit)
            else:
                after(lambda: _enqueue_later(services, commit))
        return screen, end
    raise RuntimeError(f"USSD session {session_id}: too much contention, gave up")


_REPEATABLE = (SetLanguage,)  # effects that do no harm done twice


def _repeatable(outcome: Outcome) -> bool:
    """True when running the step twice would change nothing: it may go without WATCH."""
    return all(isinstance(effect, _REPEATABLE) for effect in outcome.effects)


def _digest(text: str) -> str:
    """What a session record keeps of the hop's text: enough to know a repeated hop."""
    return hashlib.blake2b(text.encode(), digest_size=4).hexdigest()


def _resume_state(r, phone: str, resume_to: str | None) -> dict | None:
    """The state a dropped booking stopped on: the resume pointer names its session."""
    if not resume_to:
        return None
    if resume_to.startswith("{"):  # a state written before pointers were kept
        return json.loads(resume_to)
    raw = r.get(keys.ussd_session(phone, resume_to))
    return json.loads(raw)["st"] if raw else None


@dataclass(frozen=True)
class _Hop:
    """What a hop's save needs of its reads."""

    session_id: str
    skey: str  # the session's hop record
    rkey: str  # the number's resume pointer
    heard: str  # digest of the hop's text
    record: dict | None  # the session's record before this hop
    pointer: bool  # the number had a resume pointer


def _save_ussd(services, pipe, outcome: Outcome, ctx: Context, hop: _Hop,
               watched: bool) -> tuple[str, bool, Commit | None]:
    """Write the hop's record and resume pointer with the step's effects; the screen."""
    lang = _ussd_lang(outcome.state, (hop.record or {}).get("st"), ctx.citizen, services)
    reply = outcome.reply or Reply("ussd/busy", end=True)
    end = reply.end or outcome.state is None
    screen = services.templates.screen(reply, lang)
    fields = {"st": outcome.state, "h": hop.heard, "r": screen}
    if end:  # kept small: "e" only on the last screen
        fields["e"] = True
    record = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))

    def save(p):
        # The resume pointer names this session, whose record holds the state: it must live
        # as long as the pointer, so the record keeps the longer of the two times.
        p.set(hop.skey, record, ex=max(USSD_SESSION_TTL, RESUME_TTL))
        if outcome.state is None or not ussd.resumable(outcome.state):
            if hop.pointer:
                p.delete(hop.rkey)
        elif outcome.state.get("s") != "resume":  # an offer keeps its first 10 minutes
            p.set(hop.rkey, hop.session_id, ex=RESUME_TTL)

    if not outcome.effects and not watched:
        # Only the menu moved: the record and the pointer, written again if the hop is
        # repeated, need no transaction (MULTI/EXEC) and no commit's bookkeeping.
        with services.redis.pipeline(transaction=False) as plain_pipe:
            save(plain_pipe)
            plain_pipe.execute()
        return screen, end, None
    commit = _commit(services, pipe, outcome, ctx, before=(save,))
    return screen, end, commit


CONTINUE_ON = frozenset({"Incomplete", "Failed"})  # session-end statuses of a dropped session


def handle_ussd_event(services, fields: dict) -> None:
    """A USSD session-end notice: counted by status and network; a session that dropped inside
    an unfinished booking sends one SMS inviting the citizen to dial again and continue.

    "Unfinished" means the session's saved state is in the booking branch and the resume
    pointer still names this session, so a new dial would continue it. A session that dropped on the
    "Continue booking" offer itself sends nothing: that booking had its SMS already. A notice
    repeated with the same sessionId changes nothing. Without `phoneNumber` there is nobody
    to write to: the notice is only counted.
    """
    from flows.base import SendSms
    from flows.domain import Citizen
    from flows.menu import Screen

    from . import metrics

    r = services.redis
    session_id, phone = fields["sessionId"], fields.get("phoneNumber", "")
    status, network = fields.get("status", ""), fields.get("networkCode", "")
    seen = keys.seen("ussd_end", session_id, phone)
    skey = keys.ussd_session(phone, session_id) if phone else None
    rkey = keys.ussd_resume(phone) if phone else None

    def record(p):
        p.set(seen, "1", ex=SEEN_TTL)
        metrics.count_session_end(p, status, network)

    for _ in range(MAX_ATTEMPTS):
        with r.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(seen, *([skey, rkey] if phone else []))
                if pipe.exists(seen):
                    log_event("ussd.end_duplicate", session=session_id, status=status)
                    return
                effects = ()
                if rkey and status in CONTINUE_ON:
                    raw = pipe.get(skey)
                    state = (json.loads(raw) if raw else {}).get("st")
                    pointer = pipe.get(rkey)  # the session a new dial would continue
                    if (ussd.resumable(state) and state.get("s") != Screen.RESUME and pointer
                            and (pointer == session_id or pointer.startswith("{"))):
                        lang = state.get("l")
                        lang = lang if lang in services.config.languages \
                            else services.config.languages[0]
                        effects = (SendSms(to=phone, template="sms/continue",
                                           params={"ussd_code": services.config.ussd_code},
                                           purpose="continue", priority="high", lang=lang),)
                ctx = Context(now=now_in(services), citizen=Citizen(phone))
                commit = _commit(services, pipe, Outcome(None, None, effects), ctx,
                                 before=(record,), home=seen)
            except WatchError:
                continue
        _enqueue(services, commit)
        log_event("ussd.end", phone=phone, session=session_id, status=status, network=network,
                  continue_sms=bool(effects))
        return
    raise RuntimeError(f"USSD session-end {session_id}: too much contention, gave up")


# ------------------------------------------------------------------ SMS
SMS_STATE_TTL = 30 * 60  # an SMS conversation waits this long for the next answer
FLOOD_WINDOW = 2 * 3600  # an hour's flood counter outlives its hour


def _aliases(services) -> dict[str, str]:
    table: dict[str, str] = {}
    for lang in services.config.languages:
        table.update(services.templates.aliases(lang))
    return table


TARGETED = frozenset({"verify", "done", "notme"})  # commands that name an appointment


def _sms_context(services, pipe, phone: str, command: commands.Command, count: int,
                 vaccinator, found, now, home: str) -> Context:
    """Load what a vaccinator/citizen command decides on, WATCHing what it may change.
    `found` is the (appointment, kind) a V/DONE/NOTME names (`_find_appointment`); it is
    WATCHed when it is in the transaction's slot (`home`'s), as any appointment the step
    may change is."""
    r = services.redis
    citizen = store.load_citizen(r, phone)
    templates = services.templates
    extra: dict = {
        "vaccinator": vaccinator, "catalog": store.StoreCatalog(r),
        "keywords": {lang: templates.aliases(lang) for lang in services.config.languages},
        "sms_this_hour": count, "flood_limit": services.config.sms_flood_limit,
    }
    if command.name == "done":
        extra["new_cert"] = ids.make_cert(_random_digits(11))  # only a dose makes a certificate
    if command.name in TARGETED:
        appointment, kind = found
        extra["target_kind"] = kind
        if appointment is not None:
            if not slots.is_cluster(r) or _same_slot(appointment.phone, home):
                pipe.watch(keys.appointment(appointment.phone, appointment.ref))
            extra["appointment"] = appointment
            extra["owner_lang"] = r.hget(keys.citizen(appointment.phone), "lang") or ""
            if command.name == "verify" and command.code:
                extra["code_matches"] = _code_matches(services, appointment, command.code)
        if vaccinator is not None:
            failures = r.get(keys.vaccinator_failures(phone, int(now.timestamp()) // 3600))
            extra["failed_attempts_last_hour"] = int(failures or 0)
    elif command.name == "today" and vaccinator is not None:
        counts: dict[str, int] = {}
        for a in store.appointments_at(r, vaccinator.centre_id, now.date()):
            counts[str(a.status)] = counts.get(str(a.status), 0) + 1
        extra["today_counts"] = counts
    elif command.name == "check":
        cert = ids.parse_cert(command.target)
        extra["target_kind"] = "ref" if cert else "invalid"
        if cert:
            extra["certificate"] = store.load_certificate(r, cert)
    return _base_context(services, citizen, now=now, **extra)


def _code_matches(services, appointment, typed: str) -> bool:
    nonce = store.nonce_of(services.redis, appointment.phone, appointment.ref)
    return bool(nonce) and codes.matches(services.config.code_secret, appointment.ref, nonce,
                                         typed)


def _find_appointment(services, vaccinator, command, now):
    """The appointment a V/DONE/NOTME names: by ref, or (V) by the citizen's mobile at the
    vaccinator's centre today, preferring the one whose code matches."""
    r = services.redis
    kind = ids.target_kind(command.target)
    if kind == "ref":
        return store.load_appointment(r, ids.parse_ref(command.target)), kind
    if kind != "mobile" or command.name != "verify" or vaccinator is None:
        return None, "invalid" if kind == "invalid" else kind
    try:
        mobile = phones.normalise(command.target, services.config.default_region)
    except phones.InvalidPhone:
        return None, "invalid"
    candidates = [a for a in store.appointments_at(r, vaccinator.centre_id, now.date())
                  if a.phone == mobile and a.status != Status.CANCELLED]
    matching = [a for a in candidates if command.code and _code_matches(services, a, command.code)]
    found = (matching or [a for a in candidates if a.live] or candidates or [None])[0]
    return found, kind


def _count_inbound(pipe, flood_key: str) -> int:
    """This number's SMS in the current hour, this one included (the flood limit's count);
    the count itself is written with the message's seen id, so a duplicate never counts."""
    return int(pipe.get(flood_key) or 0) + 1


def sms_body(templates, reply: Reply, lang: str) -> str:
    """An SMS reply's text: a list as a numbered screen (paged, long names shortened to fit
    one screen), anything else as its hint line and template."""
    if reply.items:
        return templates.screen(reply, lang)
    lines = [templates.render(reply.hint, lang, reply.params)] if reply.hint else []
    return "\n".join(lines + [templates.render(reply.template, lang, reply.params)])


def handle_sms(services, phone: str, text: str, provider_id: str, to: str = "") -> None:
    """One inbound SMS: dropped if its provider id was seen; the reply goes out as a job.

    Its transaction is on the sender's slot, except a V/DONE/NOTME naming an appointment of a
    number in another slot (a Redis Cluster): that one commits on the appointment's slot,
    with a marker of the SMS id there for duplicates, and the sender's own writes (seen id,
    counts, state, reply) follow through `gateway.slots`; a lock on the sender keeps its SMS
    one at a time, as the WATCH on its keys does otherwise.
    """
    r = services.redis
    seen, skey = keys.seen("sms", provider_id, phone), keys.sms_state(phone)
    if r.exists(seen):
        log_event("sms.duplicate", phone=phone, provider_id=provider_id)
        return
    command = commands.parse(text, _aliases(services))
    event, lock = "", None
    try:
        for _ in range(MAX_ATTEMPTS):
            now = now_in(services)
            flood = keys.flood(phone, hour_of(now))
            with r.pipeline(transaction=True) as pipe:
                try:
                    vaccinator = store.load_vaccinator(r, phone)
                    found = (_find_appointment(services, vaccinator, command, now)
                             if command.name in TARGETED else (None, ""))
                    owner = _owner_apart(services, phone, found[0], vaccinator, command)
                    if owner:
                        lock = lock or _hold(r, keys.conversation_lock(phone))
                        marker = keys.applied(owner, provider_id)
                        pipe.watch(marker, keys.citizen(owner))
                        reads = r  # the sender's keys are in another slot than the WATCH
                    else:
                        # every SMS of this number writes `flood`: its SMS are applied one at a
                        # time, so a vaccinator's failure count for the hour is exact too
                        marker = seen
                        pipe.watch(seen, skey, flood, keys.citizen(phone),
                                   keys.citizen_appointments(phone))
                        reads = pipe
                    if pipe.exists(marker) or (marker != seen and r.exists(seen)):
                        log_event("sms.duplicate", phone=phone, provider_id=provider_id)
                        return
                    count = _count_inbound(reads, flood)
                    raw = reads.get(skey)
                    ctx = _sms_context(services, pipe, phone, command, count, vaccinator, found, now,
                                       home=owner or phone)
                    inbound = Inbound(phone, text, Channel.SMS, event=event)
                    answer = sms.step(json.loads(raw) if raw else None, inbound, command, ctx)
                    commit = _save_sms(services, pipe, answer, ctx, seen, skey, flood,
                                       home=keys.citizen(owner or phone), marker=marker)
                except SeatLost:  # the slot filled while confirming: the slots again
                    event = sms.SEAT_LOST
                    continue
                except (WatchError, Stale):
                    continue
            _enqueue(services, commit)
            log_event("sms.in", phone=phone, provider_id=provider_id, command=command.name or "-",
                      answered=bool(commit.messages))
            return
    finally:
        if lock is not None:
            lock()
    raise RuntimeError(f"inbound SMS {provider_id}: too much contention, gave up")


def _owner_apart(services, phone: str, appointment, vaccinator, command) -> str:
    """The number owning the appointment an active vaccinator's V/DONE names, when one
    transaction cannot hold both it and the sender (another hash slot on a cluster); else "".
    (Anything else that names another number's appointment is refused without touching it.)"""
    if (appointment is None or command.name not in ("verify", "done") or vaccinator is None
            or not vaccinator.active or not slots.is_cluster(services.redis)):
        return ""
    return appointment.phone if not _same_slot(appointment.phone, phone) else ""


def _same_slot(a: str, b: str) -> bool:
    return a == b or key_slot(a.encode()) == key_slot(b.encode())


LOCK_WAIT = 5.0  # seconds an SMS waits for the sender's previous one


def _hold(r, key: str):
    """Take a short lock; returns its release. Raises when it stays taken (a provider retry
    brings the SMS back)."""
    token = secrets.token_hex(8)
    deadline = time.monotonic() + LOCK_WAIT
    while not r.set(key, token, nx=True, px=int(LOCK_WAIT * 2000)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{key} stayed locked")
        time.sleep(0.02)
    return lambda: slots.release_lock(r, key, token)


def _save_sms(services, pipe, answer: sms.Answer, ctx: Context, seen: str, skey: str,
              flood: str, *, home: str, marker: str) -> Commit:
    """One transaction: seen id, flood count, conversation state, the reply's record, effects."""
    outcome, languages = answer.outcome, services.config.languages
    lang = answer.lang if answer.lang in languages else languages[0]
    reply = outcome.reply
    body = sms_body(services.templates, reply, lang) if reply is not None else ""
    state = None if outcome.state is None else json.dumps(
        outcome.state, ensure_ascii=False, separators=(",", ":"))

    def save(p):
        p.set(seen, "1", ex=SEEN_TTL)
        if marker != seen:
            p.set(marker, "1", ex=SEEN_TTL)
        p.incr(flood)
        p.expire(flood, FLOOD_WINDOW)
        if state is None:
            p.delete(skey)
        else:
            p.set(skey, state, ex=SMS_STATE_TTL)
        if reply is not None:
            outbox.record(p, to=ctx.citizen.phone, body=body, template=reply.template, lang=lang,
                          purpose="reply", priority="high", segments=gsm.segments(body))

    return _commit(services, pipe, outcome, ctx, before=(save,), home=home)
