"""The vaccinator's conversation (V, DONE, TODAY) and the certificate commands (CHECK, NOTME).

    vaccinator> V 48213 90575 1234
    Teeka: code OK. Asha Devi, born 1988, dose 1 of Covishield. Check their ID. After the dose SMS DONE 48213 90575
    vaccinator> DONE 48213 90575 B-4471
    Teeka: dose 1 of Covishield recorded for Asha Devi. Cert 4821 3905 7610. The citizen gets an SMS now.

Each SMS stands alone: the shell looks up the vaccinator, the appointment (by ref, or for a
mobile target that number's appointment at the vaccinator's centre today), the certificate
and the code check, and puts them in the Context. A `DONE` is accepted only for an appointment
a `V` verified, so no completion SMS exists without the citizen's code.

The checks of a `V`, in order (the first that fails answers):
1. the sender is an active vaccinator, and has had fewer than 20 failed `V` this hour;
2. the command carries a target and a code, and the target reads as a ref or a mobile;
3. the appointment exists and is at the vaccinator's centre: another centre's appointment
   is none of this vaccinator's business, so nothing about its state is told;
4. its state: vaccinated, cancelled, locked, no-show and disputed are final, and saying so is
   more useful than "other day";
5. it is today's appointment;
6. the code: a wrong one counts toward the appointment's 5 tries; the 5th locks it.
Failures at 2 (invalid target), 3 and 5, and wrong codes, count toward the vaccinator's
hourly limit. The code itself is never in a reply.

The shell calls `step` for the names in COMMANDS, and for `help` (or an unknown command) from
an active vaccinator; a citizen's HELP is answered elsewhere.
"""
from __future__ import annotations

from .base import (AlertOperator, Context, Dispute, Inbound, Outcome, RecordDose,
                   RecordFailedAttempt, RecordVerification, RecordWrongCode, Reply, SendSms)
from .commands import Command
from .domain import Appointment, Status
from .ids import format_cert, format_ref, parse_cert, parse_ref, target_kind
from .text import clip, day_label, initials

COMMANDS = frozenset({"verify", "done", "today", "check", "notme"})
VACCINATOR_ONLY = frozenset({"verify", "done", "today"})
MAX_WRONG_CODES = 5  # per appointment, then it is locked
MAX_FAILED_PER_HOUR = 20  # failed V commands per vaccinator
CENTRE_WIDTH = 40  # imported names may be longer than an SMS has room for

# Final states and the reply each gets, to V and to DONE alike.
_STATE_REPLIES = {
    Status.CANCELLED: "cancelled",
    Status.LOCKED: "locked",
    Status.NO_SHOW: "no_show",
    Status.DISPUTED: "disputed",
}


def is_vaccinator(ctx: Context) -> bool:
    """True when the sender is a registered, active vaccinator."""
    return ctx.vaccinator is not None and ctx.vaccinator.active


def step(command: Command, inbound: Inbound, ctx: Context) -> Outcome:
    """Answer one SMS command; the outcome's effects say what to record and send."""
    if command.name in VACCINATOR_ONLY and not is_vaccinator(ctx):
        return _reply("not_vaccinator")
    handler = _HANDLERS.get(command.name)
    if handler is not None:
        return handler(command, inbound, ctx)
    if is_vaccinator(ctx):
        return _reply("help")
    raise ValueError(f"verify.step does not answer {command.name!r} from a citizen")


# ---- V <ref or mobile> <code> ----


def _verify(command: Command, inbound: Inbound, ctx: Context) -> Outcome:
    if ctx.failed_attempts_last_hour >= MAX_FAILED_PER_HOUR:
        return _reply("too_many")
    if not command.target or not command.code:
        return _reply("v_usage")
    kind = ctx.target_kind or target_kind(command.target)
    appt = ctx.appointment
    if kind not in ("ref", "mobile"):
        return _failed(ctx, "invalid", "check_number")
    if appt is None:
        if kind == "mobile":
            return _failed(ctx, "unknown", "unknown_mobile")
        return _failed(ctx, "unknown", "unknown_ref", ref=format_ref(command.target))
    ref = format_ref(appt.ref)
    if appt.centre_id != ctx.vaccinator.centre_id:
        return _failed(ctx, "other_centre", "other_centre", ref=ref,
                       centre=clip(appt.centre_name, CENTRE_WIDTH))
    if appt.status == Status.VACCINATED:
        return _reply("used", ref=ref, date=day_label(appt.day))
    if appt.status in _STATE_REPLIES:
        return _reply(_STATE_REPLIES[appt.status], ref=ref)
    if appt.day != ctx.today:
        return _failed(ctx, "other_day", "other_day", ref=ref, date=day_label(appt.day))
    if ctx.code_matches is not True:  # only a positive check by the shell verifies
        return _wrong_code(appt, ctx)
    # A second V of a verified appointment (an interrupted vaccinator) just says OK again.
    effects = (RecordVerification(appt.ref, ctx.vaccinator.phone),) \
        if appt.status == Status.BOOKED else ()
    return _reply("ok", effects, name=appt.name, birth_year=appt.birth_year, dose=appt.dose,
                  vaccine=appt.vaccine, ref=ref)


def _wrong_code(appt: Appointment, ctx: Context) -> Outcome:
    tries_left = MAX_WRONG_CODES - appt.wrong_tries - 1
    who = ctx.vaccinator.phone
    failed = RecordFailedAttempt(who, "wrong_code")
    ref = format_ref(appt.ref)
    if tries_left <= 0:
        effects = (RecordWrongCode(appt.ref, who, lock=True), failed,
                   AlertOperator("locked", appt.ref))
        return _reply("locked_now", effects, ref=ref)
    return _reply("wrong_code", (RecordWrongCode(appt.ref, who), failed), ref=ref,
                  tries_left=tries_left)


def _failed(ctx: Context, reason: str, template: str, /, **params) -> Outcome:
    return _reply(template, (RecordFailedAttempt(ctx.vaccinator.phone, reason),), **params)


# ---- DONE <ref> [batch] ----


def _done(command: Command, inbound: Inbound, ctx: Context) -> Outcome:
    if not command.target:
        return _reply("done_usage")
    ref = parse_ref(command.target)
    appt = ctx.appointment
    if ref is None:
        return _reply("check_number")
    if appt is None or appt.ref != ref:
        return _reply("unknown_ref", ref=format_ref(ref))
    shown = format_ref(ref)
    if appt.centre_id != ctx.vaccinator.centre_id:
        return _reply("other_centre", ref=shown, centre=clip(appt.centre_name, CENTRE_WIDTH))
    if appt.status == Status.VACCINATED:  # DONE twice: one completion SMS
        return _reply("already_recorded", ref=shown, cert_id=format_cert(appt.cert_id))
    if appt.status in _STATE_REPLIES:
        return _reply(_STATE_REPLIES[appt.status], ref=shown)
    if appt.day != ctx.today:
        return _reply("other_day", ref=shown, date=day_label(appt.day))
    if appt.status != Status.VERIFIED:
        return _reply("not_verified", ref=shown)
    if not parse_cert(ctx.new_cert):
        raise ValueError("ctx.new_cert must be a fresh certificate id to record a dose")
    cert = format_cert(ctx.new_cert)
    completion = SendSms(
        to=appt.phone, template="sms/completion", purpose="completion", priority="high",
        lang=_owner_lang(ctx, appt),
        params={"dose": appt.dose, "vaccine": appt.vaccine, "date": day_label(ctx.today),
                "centre": clip(appt.centre_name, CENTRE_WIDTH), "cert_id": cert, "ref": shown})
    effects = (RecordDose(ref, ctx.vaccinator.phone, ctx.new_cert, command.batch), completion)
    return _reply("recorded", effects, name=appt.name, dose=appt.dose, vaccine=appt.vaccine,
                  cert_id=cert)


def _owner_lang(ctx: Context, appt: Appointment) -> str:
    """The booking number's language, as the shell looked it up."""
    if ctx.owner_lang in ctx.languages:
        return ctx.owner_lang
    if ctx.citizen.phone == appt.phone and ctx.citizen.lang in ctx.languages:
        return ctx.citizen.lang
    return ctx.languages[0]


# ---- TODAY ----


def _today(command: Command, inbound: Inbound, ctx: Context) -> Outcome:
    counts = {status: ctx.today_counts.get(status, 0)
              for status in ("booked", "verified", "vaccinated", "no_show")}
    return _reply("today", date=day_label(ctx.today), **counts)


# ---- CHECK <certificate id> ----


def _check(command: Command, inbound: Inbound, ctx: Context) -> Outcome:
    if not command.target:
        return _reply("check_usage")
    cert_id = parse_cert(command.target)
    if cert_id is None:
        return _reply("cert_check_number")
    cert = ctx.certificate
    shown = format_cert(cert_id)
    if cert is None or cert.cert_id != cert_id:
        return _reply("cert_unknown", cert_id=shown)
    if cert.frozen:
        return _reply("cert_review", cert_id=shown)
    return _reply("cert_genuine", cert_id=shown, initials=initials(cert.name), dose=cert.dose,
                  vaccine=cert.vaccine, date=day_label(cert.day),
                  centre=clip(cert.centre_name, CENTRE_WIDTH))


# ---- NOTME <ref> ----


def _notme(command: Command, inbound: Inbound, ctx: Context) -> Outcome:
    if not command.target:
        return _reply("notme_usage")
    ref = parse_ref(command.target)
    if ref is None:
        return _reply("check_number")
    appt = ctx.appointment
    shown = format_ref(ref)
    # Another number's booking is answered like a missing one: nothing is told about it.
    if appt is None or appt.ref != ref or appt.phone != inbound.phone:
        return _reply("notme_not_yours", ref=shown)
    if appt.status == Status.DISPUTED:
        return _reply("notme_already", ref=shown)
    if appt.status != Status.VACCINATED:
        return _reply("notme_not_done", ref=shown)
    effects = (Dispute(ref, inbound.phone), AlertOperator("dispute", ref))
    return _reply("notme_frozen", effects, ref=shown)


_HANDLERS = {"verify": _verify, "done": _done, "today": _today, "check": _check,
             "notme": _notme}


def _reply(reply_id: str, effects: tuple = (), /, **params) -> Outcome:
    return Outcome(None, Reply(f"sms/verify/{reply_id}", params, end=True, nav=False), effects)
