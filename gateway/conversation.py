"""The one orchestrator: dedupe, load state, call the flow step, apply effects in one transaction.

Concurrency is optimistic: the keys a step depends on are WATCHed before they are read, and
the step's writes go into one MULTI/EXEC. If anything changed in between (a duplicate hop, a
racing booking, a second DONE) the EXEC fails and the step runs again on fresh data, so a
repeated hop answers the same screen and no effect happens twice.
"""
from __future__ import annotations

import json
import secrets
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from redis.exceptions import WatchError

from flows import commands, ids, ussd, verify
from flows.base import Channel, Context, Inbound, Outcome, Reply
from flows.domain import Status

from . import codes, keys, outbox, phones, store
from .effects import Commit, SeatLost, Stale
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
    return "".join(secrets.choice("0123456789") for _ in range(n))


def _base_context(services, citizen, **extra) -> Context:
    templates = services.templates
    return Context(
        now=now_in(services),
        citizen=citizen,
        languages=services.config.languages,
        max_per_mobile=services.config.max_per_mobile,
        page_size={lang: templates.page_size(lang) for lang in services.config.languages},
        new_ref=ids.make_ref(_random_digits(9)),
        new_cert=ids.make_cert(_random_digits(11)),
        ussd_code=services.config.ussd_code,
        **extra,
    )


def _commit(services, pipe, outcome: Outcome, ctx: Context, before=()) -> Commit:
    """Phase 1 (watch, re-check) and phase 2 (one MULTI/EXEC) of a step's effects."""
    known = {a.ref: a for a in ctx.citizen.appointments}
    if ctx.appointment is not None:
        known[ctx.appointment.ref] = ctx.appointment
    commit = Commit(services=services, now=ctx.now, known=known, citizen=ctx.citizen)
    commit.prepare(pipe, outcome.effects)
    pipe.multi()
    for write in before:
        write(pipe)
    commit.write(pipe, outcome.effects)
    pipe.execute()
    return commit


def _enqueue(services, commit: Commit) -> None:
    for message_id, priority in commit.messages:
        outbox.enqueue(services, message_id, priority)


# ------------------------------------------------------------------ USSD
def _ussd_lang(state, previous, citizen, services) -> str:
    """The screen's language: the new state's, else the state before an END, else saved."""
    lang = (state or {}).get("l") or (previous or {}).get("l") or citizen.lang
    return lang if lang in services.config.languages else services.config.languages[0]


def handle_ussd(services, session_id: str, phone: str, text: str, service_code: str = "",
                network_code: str = "") -> tuple[str, bool]:
    """One USSD hop -> (screen text without the CON/END prefix, end of session?)."""
    r = services.redis
    skey, rkey = keys.ussd_session(session_id), keys.ussd_resume(phone)
    last = text.rsplit("*", 1)[-1] if text else ""
    for _ in range(MAX_ATTEMPTS):
        with r.pipeline() as pipe:
            try:
                pipe.watch(skey, keys.citizen(phone), keys.citizen_appointments(phone))
                raw = pipe.get(skey)
                record = json.loads(raw) if raw else None
                if record is not None and record["h"] == text:
                    return record["r"], record["e"]  # a repeated hop: same screen, no effects
                citizen = store.load_citizen(r, phone)
                codes_by_ref = store.codes_for(services, phone, citizen.appointments)
                ctx = _base_context(services, citizen, catalog=store.StoreCatalog(r),
                                    codes=codes_by_ref)
                if record is None:
                    resume_raw = r.get(rkey)
                    outcome = ussd.start(ctx, json.loads(resume_raw) if resume_raw else None)
                else:
                    inbound = Inbound(phone, last, Channel.USSD, session_id)
                    outcome = ussd.step(record["st"], inbound, ctx)
                try:
                    screen, end, commit = _save_ussd(services, pipe, outcome, ctx, skey, rkey,
                                                     text, record)
                except SeatLost:
                    pipe.unwatch()
                    lost = Inbound(phone, last, Channel.USSD, session_id, event="seat_lost")
                    outcome = ussd.step(record["st"], lost, ctx)
                    pipe.watch(skey, keys.citizen(phone), keys.citizen_appointments(phone))
                    screen, end, commit = _save_ussd(services, pipe, outcome, ctx, skey, rkey,
                                                     text, record)
            except (WatchError, Stale):
                continue
        _enqueue(services, commit)
        log_event("ussd.hop", phone=phone, session=session_id, end=end, hops=text.count("*") + 1)
        return screen, end
    raise RuntimeError(f"USSD session {session_id}: too much contention, gave up")


def _save_ussd(services, pipe, outcome: Outcome, ctx: Context, skey: str, rkey: str,
               text: str, record: dict | None) -> tuple[str, bool, Commit]:
    lang = _ussd_lang(outcome.state, (record or {}).get("st"), ctx.citizen, services)
    reply = outcome.reply or Reply("ussd/busy", end=True)
    end = reply.end or outcome.state is None
    screen = services.templates.screen(reply, lang)
    record = json.dumps({"st": outcome.state, "h": text, "r": screen, "e": end},
                        ensure_ascii=False, separators=(",", ":"))

    def save(p):
        p.set(skey, record, ex=USSD_SESSION_TTL)
        if outcome.state is None or not ussd.resumable(outcome.state):
            p.delete(rkey)
        elif outcome.state.get("s") != "resume":  # an offer keeps its first 10 minutes
            p.set(rkey, json.dumps(outcome.state, separators=(",", ":")), ex=RESUME_TTL)

    commit = _commit(services, pipe, outcome, ctx, before=(save,))
    return screen, end, commit


def handle_ussd_event(services, fields: dict) -> None:
    """A USSD session-end notice: recorded; the resume offer is already kept per hop."""
    log_event("ussd.end", phone=fields.get("phoneNumber", ""), session=fields.get("sessionId"),
              status=fields.get("status", ""), network=fields.get("networkCode", ""))


# ------------------------------------------------------------------ SMS
def _aliases(services) -> dict[str, str]:
    table: dict[str, str] = {}
    for lang in services.config.languages:
        table.update(services.templates.aliases(lang))
    return table


def _sms_context(services, pipe, phone: str, command: commands.Command) -> Context:
    """Load what a vaccinator/citizen command decides on, WATCHing what it may change."""
    r = services.redis
    vaccinator = store.load_vaccinator(r, phone)
    citizen = store.load_citizen(r, phone)
    extra: dict = {"vaccinator": vaccinator}
    now = now_in(services)
    if command.name in ("verify", "done", "notme"):
        appointment, kind = _find_appointment(services, vaccinator, command, now)
        extra["target_kind"] = kind
        if appointment is not None:
            pipe.watch(keys.appointment(appointment.phone, appointment.ref))
            extra["appointment"] = appointment
            extra["owner_lang"] = r.hget(keys.citizen(appointment.phone), "lang") or ""
            if command.name == "verify" and command.code:
                extra["code_matches"] = _code_matches(services, appointment, command.code)
        if vaccinator is not None:
            count = r.get(keys.vaccinator_failures(phone, int(now.timestamp()) // 3600))
            extra["failed_attempts_last_hour"] = int(count or 0)
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
    ctx = _base_context(services, citizen, **extra)
    return ctx


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


def _sms_lang(services, ctx: Context) -> str:
    lang = ctx.citizen.lang
    return lang if lang in services.config.languages else services.config.languages[0]


def _sms_outcome(services, phone: str, text: str, command, ctx: Context) -> Outcome:
    inbound = Inbound(phone, text, Channel.SMS)
    if command.name in verify.COMMANDS:
        return verify.step(command, inbound, ctx)
    if commands.looks_like_ussd(text):
        return Outcome(None, Reply("sms/please_dial", {"ussd_code": services.config.ussd_code}))
    if verify.is_vaccinator(ctx):
        return verify.step(command, inbound, ctx)  # HELP or anything unknown: vaccinator help
    return Outcome(None, Reply("sms/help_citizen", {"ussd_code": services.config.ussd_code}))


def handle_sms(services, phone: str, text: str, provider_id: str, to: str = "") -> None:
    """One inbound SMS: dropped if its provider id was seen; the reply goes out as a job."""
    r = services.redis
    seen = keys.seen("sms", provider_id)
    command = commands.parse(text, _aliases(services))
    for _ in range(MAX_ATTEMPTS):
        with r.pipeline() as pipe:
            try:
                pipe.watch(seen)
                if pipe.exists(seen):
                    log_event("sms.duplicate", phone=phone, provider_id=provider_id)
                    return
                ctx = _sms_context(services, pipe, phone, command)
                outcome = _sms_outcome(services, phone, text, command, ctx)
                if outcome.reply is not None:
                    reply = outcome.reply
                    outcome = Outcome(outcome.state, reply, outcome.effects + (
                        _reply_sms(phone, reply, _sms_lang(services, ctx)),))
                commit = _commit(services, pipe, outcome, ctx,
                                 before=(lambda p: p.set(seen, "1", ex=SEEN_TTL),))
            except (WatchError, Stale):
                continue
        _enqueue(services, commit)
        log_event("sms.in", phone=phone, provider_id=provider_id, command=command.name or "-")
        return
    raise RuntimeError(f"inbound SMS {provider_id}: too much contention, gave up")


def _reply_sms(phone: str, reply: Reply, lang: str):
    from flows.base import SendSms

    return SendSms(to=phone, template=reply.template, params=dict(reply.params),
                   purpose="reply", lang=lang)
