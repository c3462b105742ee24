"""The vaccinator's conversation as tables: (SMS text, context) -> (reply, params, effects)."""
from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from flows import verify
from flows.base import (AlertOperator, Channel, Context, Dispute, Inbound, RecordDose,
                        RecordFailedAttempt, RecordVerification, RecordWrongCode, SendSms)
from flows.commands import parse
from flows.domain import Appointment, Certificate, Citizen, Status, Vaccinator

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=ZoneInfo("Asia/Kolkata"))
TODAY = NOW.date()
REF, SHOWN_REF = "4821390575", "48213 90575"
CERT, SHOWN_CERT = "482139057610", "4821 3905 7610"
CODE = "7391"
VAX = Vaccinator(phone="+919800000001", name="Meena Shah", centre_id="101")
CITIZEN_PHONE = "+919812345210"
APPT = Appointment(ref=REF, phone=CITIZEN_PHONE, beneficiary_id=1, name="Asha Devi",
                   birth_year=1988, centre_id="101", centre_name="PHC Andheri", day=TODAY,
                   slot="09:00-11:00", vaccine="Covishield", dose=1, status=Status.BOOKED)
VERIFIED = replace(APPT, status=Status.VERIFIED, verified_by=VAX.phone)
VACCINATED = replace(APPT, status=Status.VACCINATED, verified_by=VAX.phone, cert_id=CERT)
CERTIFICATE = Certificate(cert_id=CERT, ref=REF, name="Asha Devi", vaccine="Covishield", dose=1,
                          day=TODAY, centre_id="101", centre_name="PHC Andheri",
                          vaccinator=VAX.phone)
V = f"V {SHOWN_REF} {CODE}"

FAILED = {reason: RecordFailedAttempt(VAX.phone, reason)
          for reason in ("invalid", "unknown", "other_centre", "other_day", "wrong_code")}


def ctx(**changes) -> Context:
    """A vaccinator's SMS whose code the shell found right; each case changes what it needs."""
    base = Context(now=NOW, citizen=Citizen(phone=VAX.phone), vaccinator=VAX, appointment=APPT,
                   target_kind="ref", code_matches=True, new_cert=CERT)
    return replace(base, **changes)


def run(text: str, context: Context, sender: str = VAX.phone):
    inbound = Inbound(phone=sender, text=text, channel=Channel.SMS)
    return verify.step(parse(text, {}), inbound, context)


def check(outcome, template, params, effects):
    assert outcome.state is None
    assert outcome.reply.template == f"sms/verify/{template}"
    assert {k: outcome.reply.params.get(k) for k in params} == params
    assert outcome.effects == effects


# ---- V <ref or mobile> <code> ----

OK = {"name": "Asha Devi", "birth_year": 1988, "dose": 1, "vaccine": "Covishield",
      "ref": SHOWN_REF}

V_CASES = [
    ("ok", V, ctx(), "ok", OK, (RecordVerification(REF, VAX.phone),)),
    ("verify_keyword", f"VERIFY {REF} {CODE}", ctx(), "ok", OK,
     (RecordVerification(REF, VAX.phone),)),
    ("second_v_says_ok_again", V, ctx(appointment=VERIFIED), "ok", OK, ()),
    ("by_mobile", f"V +91 98123 45210 {CODE}", ctx(target_kind="mobile"), "ok", OK,
     (RecordVerification(REF, VAX.phone),)),
    ("not_registered", V, ctx(vaccinator=None), "not_vaccinator", {}, ()),
    ("inactive", V, ctx(vaccinator=replace(VAX, active=False)), "not_vaccinator", {}, ()),
    ("19_failures_still_checks", V, ctx(failed_attempts_last_hour=19), "ok", OK,
     (RecordVerification(REF, VAX.phone),)),
    ("20_failures_refused_unchecked", V, ctx(failed_attempts_last_hour=20), "too_many", {}, ()),
    ("refused_even_when_invalid", "V 48213 90576 1234",
     ctx(failed_attempts_last_hour=25, target_kind="invalid"), "too_many", {}, ()),
    ("forgot_code", f"V {SHOWN_REF}", ctx(), "v_usage", {}, ()),
    ("bare_v", "V", ctx(), "v_usage", {}, ()),
    ("wrong_check_digit", "V 48213 90576 1234", ctx(target_kind="invalid", appointment=None),
     "check_number", {}, (FAILED["invalid"],)),
    ("unreadable_target", "V 12-34 1234", ctx(target_kind="", appointment=None),
     "check_number", {}, (FAILED["invalid"],)),
    ("unknown_ref", V, ctx(appointment=None), "unknown_ref", {"ref": SHOWN_REF},
     (FAILED["unknown"],)),
    ("unknown_mobile", f"V 98123 45210 {CODE}", ctx(target_kind="mobile", appointment=None),
     "unknown_mobile", {}, (FAILED["unknown"],)),
    ("other_centre", V, ctx(appointment=replace(APPT, centre_id="202", centre_name="CHC Thane")),
     "other_centre", {"ref": SHOWN_REF, "centre": "CHC Thane"}, (FAILED["other_centre"],)),
    ("other_centre_hides_state", V,
     ctx(appointment=replace(APPT, centre_id="202", status=Status.CANCELLED)),
     "other_centre", {"ref": SHOWN_REF}, (FAILED["other_centre"],)),
    ("already_used", V, ctx(appointment=VACCINATED), "used",
     {"ref": SHOWN_REF, "date": "26 Nov"}, ()),
    ("used_yesterday_is_used_not_other_day", V,
     ctx(appointment=replace(VACCINATED, day=date(2026, 11, 25))), "used",
     {"date": "25 Nov"}, ()),
    ("cancelled", V, ctx(appointment=replace(APPT, status=Status.CANCELLED)), "cancelled",
     {"ref": SHOWN_REF}, ()),
    ("locked", V, ctx(appointment=replace(APPT, status=Status.LOCKED, wrong_tries=5)), "locked",
     {"ref": SHOWN_REF}, ()),
    ("no_show", V, ctx(appointment=replace(APPT, status=Status.NO_SHOW)), "no_show",
     {"ref": SHOWN_REF}, ()),
    ("disputed", V, ctx(appointment=replace(APPT, status=Status.DISPUTED)), "disputed",
     {"ref": SHOWN_REF}, ()),
    ("other_day", V, ctx(appointment=replace(APPT, day=date(2026, 11, 27))), "other_day",
     {"ref": SHOWN_REF, "date": "27 Nov"}, (FAILED["other_day"],)),
    ("other_day_does_not_test_the_code", V,
     ctx(appointment=replace(APPT, day=date(2026, 11, 25)), code_matches=False), "other_day",
     {"date": "25 Nov"}, (FAILED["other_day"],)),
    ("wrong_code_first", V, ctx(code_matches=False), "wrong_code",
     {"ref": SHOWN_REF, "tries_left": 4},
     (RecordWrongCode(REF, VAX.phone), FAILED["wrong_code"])),
    ("wrong_code_fourth", V, ctx(code_matches=False, appointment=replace(APPT, wrong_tries=3)),
     "wrong_code", {"tries_left": 1}, (RecordWrongCode(REF, VAX.phone), FAILED["wrong_code"])),
    ("wrong_code_fifth_locks", V,
     ctx(code_matches=False, appointment=replace(APPT, wrong_tries=4)), "locked_now",
     {"ref": SHOWN_REF},
     (RecordWrongCode(REF, VAX.phone, lock=True), FAILED["wrong_code"],
      AlertOperator("locked", REF))),
    ("unchecked_code_is_not_a_match", V, ctx(code_matches=None), "wrong_code",
     {"tries_left": 4}, (RecordWrongCode(REF, VAX.phone), FAILED["wrong_code"])),
    ("wrong_code_on_verified", V, ctx(code_matches=False, appointment=VERIFIED), "wrong_code",
     {"tries_left": 4}, (RecordWrongCode(REF, VAX.phone), FAILED["wrong_code"])),
]


@pytest.mark.parametrize("text, context, template, params, effects",
                         [case[1:] for case in V_CASES], ids=[case[0] for case in V_CASES])
def test_verify(text, context, template, params, effects):
    check(run(text, context), template, params, effects)


@pytest.mark.parametrize("text, context", [case[1:3] for case in V_CASES],
                         ids=[case[0] for case in V_CASES])
def test_a_verify_reply_never_contains_the_code(text, context, templates):
    reply = run(text, context).reply
    assert CODE not in " ".join(str(v) for v in reply.params.values())
    for lang in ("en", "hi", "ur"):
        assert CODE not in templates.render(reply.template, lang, reply.params)


def test_only_wrong_codes_count_toward_the_appointments_tries():
    for name, *_, effects in V_CASES:
        wrong = [e for e in effects if isinstance(e, RecordWrongCode)]
        assert bool(wrong) == name.startswith(("wrong_code", "unchecked")), name


# ---- DONE <ref> [batch] ----

COMPLETION = SendSms(
    to=CITIZEN_PHONE, template="sms/completion", purpose="completion", priority="high", lang="en",
    params={"dose": 1, "vaccine": "Covishield", "date": "26 Nov", "centre": "PHC Andheri",
            "cert_id": SHOWN_CERT, "ref": SHOWN_REF})
RECORDED = {"name": "Asha Devi", "dose": 1, "vaccine": "Covishield", "cert_id": SHOWN_CERT}

DONE_CASES = [
    ("recorded", f"DONE {SHOWN_REF} B-4471", ctx(appointment=VERIFIED), "recorded", RECORDED,
     (RecordDose(REF, VAX.phone, CERT, "B-4471"), COMPLETION)),
    ("without_batch", f"DONE {REF}", ctx(appointment=VERIFIED), "recorded", RECORDED,
     (RecordDose(REF, VAX.phone, CERT), COMPLETION)),
    ("in_the_citizens_language", f"DONE {REF}",
     ctx(appointment=VERIFIED, citizen=Citizen(phone=CITIZEN_PHONE, lang="hi")), "recorded",
     RECORDED, (RecordDose(REF, VAX.phone, CERT), replace(COMPLETION, lang="hi"))),
    ("vaccinators_language_is_not_the_citizens", f"DONE {REF}",
     ctx(appointment=VERIFIED, citizen=Citizen(phone=VAX.phone, lang="ur")), "recorded",
     RECORDED, (RecordDose(REF, VAX.phone, CERT), COMPLETION)),
    ("verified_by_a_colleague", f"DONE {REF}",
     ctx(appointment=replace(VERIFIED, verified_by="+919800000002")), "recorded", RECORDED,
     (RecordDose(REF, VAX.phone, CERT), COMPLETION)),
    ("without_v_refused", f"DONE {REF}", ctx(), "not_verified", {"ref": SHOWN_REF}, ()),
    ("twice_no_second_sms", f"DONE {REF}", ctx(appointment=VACCINATED), "already_recorded",
     {"ref": SHOWN_REF, "cert_id": SHOWN_CERT}, ()),
    ("not_registered", f"DONE {REF}", ctx(vaccinator=None, appointment=VERIFIED),
     "not_vaccinator", {}, ()),
    ("inactive", f"DONE {REF}", ctx(vaccinator=replace(VAX, active=False), appointment=VERIFIED),
     "not_vaccinator", {}, ()),
    ("other_centre", f"DONE {REF}",
     ctx(appointment=replace(VERIFIED, centre_id="202", centre_name="CHC Thane")),
     "other_centre", {"centre": "CHC Thane"}, ()),
    ("verified_yesterday", f"DONE {REF}",
     ctx(appointment=replace(VERIFIED, day=date(2026, 11, 25))), "other_day",
     {"date": "25 Nov"}, ()),
    ("cancelled", f"DONE {REF}", ctx(appointment=replace(APPT, status=Status.CANCELLED)),
     "cancelled", {"ref": SHOWN_REF}, ()),
    ("locked", f"DONE {REF}", ctx(appointment=replace(APPT, status=Status.LOCKED)), "locked",
     {}, ()),
    ("no_show", f"DONE {REF}", ctx(appointment=replace(APPT, status=Status.NO_SHOW)), "no_show",
     {}, ()),
    ("disputed", f"DONE {REF}", ctx(appointment=replace(APPT, status=Status.DISPUTED)),
     "disputed", {}, ()),
    ("unknown", f"DONE {REF}", ctx(appointment=None), "unknown_ref", {"ref": SHOWN_REF}, ()),
    ("other_ref_looked_up", f"DONE {REF}", ctx(appointment=replace(VERIFIED, ref="1234567891")),
     "unknown_ref", {"ref": SHOWN_REF}, ()),
    ("mistyped", "DONE 48213 90576", ctx(appointment=None), "check_number", {}, ()),
    ("mobile_is_no_ref", "DONE 98123 45210", ctx(appointment=None), "check_number", {}, ()),
    ("bare", "DONE", ctx(), "done_usage", {}, ()),
]


@pytest.mark.parametrize("text, context, template, params, effects",
                         [case[1:] for case in DONE_CASES], ids=[case[0] for case in DONE_CASES])
def test_done(text, context, template, params, effects):
    check(run(text, context), template, params, effects)


@pytest.mark.parametrize("status", list(Status))
@pytest.mark.parametrize("centre", ["101", "202"])
@pytest.mark.parametrize("day", [date(2026, 11, 25), TODAY, date(2026, 11, 27)])
def test_no_completion_sms_without_a_successful_v_at_this_centre_today(status, centre, day):
    appointment = replace(APPT, status=status, centre_id=centre, day=day)
    outcome = run(f"DONE {REF}", ctx(appointment=appointment))
    sent = [e for e in outcome.effects if isinstance(e, (SendSms, RecordDose))]
    allowed = status == Status.VERIFIED and centre == VAX.centre_id and day == TODAY
    assert bool(sent) == allowed


def test_done_without_a_fresh_certificate_id_is_a_shell_bug():
    with pytest.raises(ValueError):
        run(f"DONE {REF}", ctx(appointment=VERIFIED, new_cert=""))


# ---- TODAY ----


def test_today_gives_the_centres_counts():
    counts = {"booked": 40, "verified": 3, "vaccinated": 21, "no_show": 2, "cancelled": 5}
    check(run("TODAY", ctx(today_counts=counts)), "today",
          {"date": "26 Nov", "booked": 40, "verified": 3, "vaccinated": 21, "no_show": 2}, ())


def test_today_counts_missing_statuses_as_zero():
    check(run("today", ctx(today_counts={"booked": 7})), "today",
          {"booked": 7, "verified": 0, "vaccinated": 0, "no_show": 0}, ())


def test_today_from_a_citizen_is_refused():
    check(run("TODAY", ctx(vaccinator=None)), "not_vaccinator", {}, ())


# ---- CHECK <certificate id> (anyone) ----

GENUINE = {"cert_id": SHOWN_CERT, "initials": "A.D.", "dose": 1, "vaccine": "Covishield",
           "date": "26 Nov", "centre": "PHC Andheri"}

CHECK_CASES = [
    ("genuine", f"CHECK {SHOWN_CERT}", ctx(vaccinator=None, certificate=CERTIFICATE),
     "cert_genuine", GENUINE),
    ("by_a_vaccinator", f"CHECK {CERT}", ctx(certificate=CERTIFICATE), "cert_genuine", GENUINE),
    ("frozen", f"CHECK {CERT}",
     ctx(vaccinator=None, certificate=replace(CERTIFICATE, frozen=True)), "cert_review",
     {"cert_id": SHOWN_CERT}),
    ("unknown", f"CHECK {CERT}", ctx(vaccinator=None), "cert_unknown", {"cert_id": SHOWN_CERT}),
    ("mistyped", "CHECK 4821 3905 7611", ctx(vaccinator=None), "cert_check_number", {}),
    ("a_ref_is_no_certificate", f"CHECK {SHOWN_REF}", ctx(vaccinator=None),
     "cert_check_number", {}),
    ("bare", "CHECK", ctx(vaccinator=None), "check_usage", {}),
]


@pytest.mark.parametrize("text, context, template, params",
                         [case[1:] for case in CHECK_CASES], ids=[case[0] for case in CHECK_CASES])
def test_check(text, context, template, params):
    check(run(text, context, sender=CITIZEN_PHONE), template, params, ())


def test_check_never_shows_the_full_name():
    reply = run(f"CHECK {CERT}", ctx(vaccinator=None, certificate=CERTIFICATE)).reply
    assert "Asha" not in " ".join(str(v) for v in reply.params.values())


# ---- NOTME <ref> (the citizen) ----

NOTME = f"NOTME {SHOWN_REF}"
NOTME_CASES = [
    ("disputes", NOTME, ctx(vaccinator=None, appointment=VACCINATED), CITIZEN_PHONE,
     "notme_frozen", {"ref": SHOWN_REF},
     (Dispute(REF, CITIZEN_PHONE), AlertOperator("dispute", REF))),
    ("other_number", NOTME, ctx(vaccinator=None, appointment=VACCINATED), "+919899999999",
     "notme_not_yours", {"ref": SHOWN_REF}, ()),
    ("unknown", NOTME, ctx(vaccinator=None, appointment=None), CITIZEN_PHONE,
     "notme_not_yours", {"ref": SHOWN_REF}, ()),
    ("not_vaccinated", NOTME, ctx(vaccinator=None), CITIZEN_PHONE, "notme_not_done",
     {"ref": SHOWN_REF}, ()),
    ("verified_not_vaccinated", NOTME, ctx(vaccinator=None, appointment=VERIFIED),
     CITIZEN_PHONE, "notme_not_done", {}, ()),
    ("twice", NOTME, ctx(vaccinator=None, appointment=replace(VACCINATED,
                                                              status=Status.DISPUTED)),
     CITIZEN_PHONE, "notme_already", {"ref": SHOWN_REF}, ()),
    ("mistyped", "NOTME 48213 90576", ctx(vaccinator=None, appointment=None), CITIZEN_PHONE,
     "check_number", {}, ()),
    ("bare", "NOTME", ctx(vaccinator=None, appointment=None), CITIZEN_PHONE, "notme_usage", {},
     ()),
]


@pytest.mark.parametrize("text, context, sender, template, params, effects",
                         [case[1:] for case in NOTME_CASES],
                         ids=[case[0] for case in NOTME_CASES])
def test_notme(text, context, sender, template, params, effects):
    check(run(text, context, sender=sender), template, params, effects)


# ---- HELP and routing ----


def test_help_from_a_vaccinator_lists_the_vaccinator_commands(templates):
    outcome = run("HELP", ctx())
    check(outcome, "help", {}, ())
    body = templates.render(outcome.reply.template, "en", outcome.reply.params)
    for keyword in ("V ", "DONE", "TODAY", "CHECK"):
        assert keyword in body


def test_an_unknown_command_from_a_vaccinator_gets_the_vaccinator_help():
    check(run("hello", ctx()), "help", {}, ())


def test_a_citizens_help_is_not_answered_here():
    with pytest.raises(ValueError):
        run("HELP", ctx(vaccinator=None))


# ---- the transcript in the module's docstring, replayed ----


def test_the_module_transcript(templates):
    lines = [line.strip() for line in verify.__doc__.splitlines() if line.startswith("    ")]
    pairs = list(zip(lines[::2], lines[1::2]))
    appointments = [APPT, VERIFIED]
    assert len(pairs) == len(appointments)
    for (sent, expected), appointment in zip(pairs, appointments):
        text = sent.removeprefix("vaccinator> ")
        code = text.split()[-1]
        outcome = run(text, ctx(appointment=appointment, code_matches=code.isdigit()))
        assert templates.render(outcome.reply.template, "en", outcome.reply.params) == expected


# ---- every reply template exists in every language with the parameters the flow gives ----

ALL_CASES = ([(c[1], c[2], VAX.phone) for c in V_CASES + DONE_CASES]
             + [(c[1], c[2], CITIZEN_PHONE) for c in CHECK_CASES]
             + [(c[1], c[2], c[3]) for c in NOTME_CASES]
             + [("TODAY", ctx(), VAX.phone), ("HELP", ctx(), VAX.phone)])


@pytest.mark.parametrize("lang", ["en", "hi", "ur"])
def test_every_reply_renders_in_every_language(lang, templates):
    seen = set()
    for text, context, sender in ALL_CASES:
        outcome = run(text, context, sender=sender)
        for template, params in [(outcome.reply.template, outcome.reply.params),
                                 *[(e.template, e.params) for e in outcome.effects
                                   if isinstance(e, SendSms)]]:
            assert template in templates.ids(lang) or template == "sms/completion", template
            body = templates.render(template, lang, params)
            assert not re.search(r"[{}]", body)
            seen.add(template)
    assert seen >= {f"sms/verify/{name}" for name in _verify_template_names()}


def _verify_template_names():
    from gateway.templates import ROOT

    return {p.stem for p in (ROOT / "en" / "sms" / "verify").glob("*.txt")}


@pytest.fixture(scope="module")
def templates():
    from gateway.templates import Templates

    return Templates.load(("en", "hi", "ur"))
