"""The USSD root menu as tables: first dial, main menu, resume, language, appointments."""
from __future__ import annotations

import pytest

from flows import appointments, ussd
from flows.base import Cancel, Channel, SendSms, SetLanguage
from flows.domain import Status
from gateway.templates import Templates

from .catalog import DictCatalog, session, slot
from .ussd_world import (ASHA, CENTRES, CTX, PHONE, RAVI, Then, appointment, check, day, hop,
                         make_ctx, shown, transcript)

MENU = {"s": "menu", "l": "en"}
MAIN_MENU = Then("ussd/main_menu", state=MENU)
INVALID = "ussd/hint_invalid"
LANGS = ["English", "हिन्दी", "اردو"]

ASHA_APPT = appointment("3105527188", ASHA, CENTRES[0], 1, "09:00-11:00")
RAVI_APPT = appointment("2700319457", RAVI, CENTRES[1], 2, "10:00-12:00", dose=2)
CODES = {"3105527188": "4821", "2700319457": "0917"}
ONE = make_ctx(appointments=[ASHA_APPT], codes=CODES)
TWO = make_ctx(appointments=[RAVI_APPT, ASHA_APPT], codes=CODES)  # listed by day: Asha first
SLOTS = {"s": "slots", "l": "en", "b": 1, "a": "110001", "c": "101", "d": "2026-11-26"}
CONFIRM = {**SLOTS, "s": "confirm", "e": "101:2026-11-26:Covishield", "t": "14:00-16:00"}
FULL_1416 = make_ctx(catalog=DictCatalog(CENTRES, [
    session("101", day(0), slot("09:00-11:00"), slot("14:00-16:00", capacity=3, taken=3))]))

START_CASES = [
    pytest.param(make_ctx(lang=""), None, Then("ussd/welcome", {"s": "lang", "l": "en", "f": 1},
                 items=LANGS), id="first_dial_asks_the_language_in_each_own_script"),
    pytest.param(make_ctx(lang="", languages=("hi", "en")), None,
                 Then("ussd/welcome", {"s": "lang", "l": "hi", "f": 1},
                      items=["हिन्दी", "English"]),
                 id="languages_in_the_configured_order"),
    pytest.param(CTX, None, MAIN_MENU, id="known_language_gets_the_main_menu"),
    pytest.param(CTX, SLOTS, Then("ussd/resume", {"s": "resume", "l": "en", "r": SLOTS}),
                 id="unfinished_booking_offers_to_continue"),
    pytest.param(make_ctx(lang="hi"), SLOTS,
                 Then("ussd/resume", {"s": "resume", "l": "hi", "r": SLOTS}),
                 id="resume_offer_in_the_citizens_language"),
    pytest.param(CTX, {"s": "resume", "l": "en", "r": SLOTS},
                 Then("ussd/resume", {"s": "resume", "l": "en", "r": SLOTS}),
                 id="a_resume_offer_left_unanswered_is_offered_again_not_nested"),
    pytest.param(CTX, MENU, MAIN_MENU, id="nothing_to_resume_outside_booking"),
    pytest.param(make_ctx(lang=""), SLOTS, Then("ussd/welcome", {"s": "lang", "l": "en", "f": 1}),
                 id="language_first_even_with_a_resume"),
]


@pytest.mark.parametrize("ctx, resume, then", START_CASES)
def test_start(ctx, resume, then):
    check(ussd.start(ctx, resume), then)


FIRST = {"s": "lang", "l": "en", "f": 1}
LANGUAGE = {"s": "lang", "l": "en"}
NONE = {"s": "none", "l": "en"}
LIST_VIEW = {"s": "appts", "l": "en", "m": "v"}
LIST_CODE = {"s": "appts", "l": "en", "m": "k"}
LIST_CANCEL = {"s": "appts", "l": "en", "m": "x"}
ASK_ASHA = {"s": "cancel", "l": "en", "q": "3105527188"}
ASHA_DETAIL = {"initials": "A.K.", "centre": "PHC Connaught Place", "day": "27 Nov",
               "slot": "09:00-11:00", "ref": "31055 27188", "code": "4821", "dose": 1}
CODE_SMS = SendSms(to=PHONE, template="sms/code_resend", params={"ref": "31055 27188"},
                   purpose="code", lang="en", code_of="3105527188")
CANCEL_ASHA = Cancel(ref="3105527188", actor=PHONE, channel=Channel.USSD)

CASES = [
    # ---- first dial and change of language ----
    pytest.param(FIRST, "2", CTX, Then("ussd/main_menu", {"s": "menu", "l": "hi"},
                 effects=(SetLanguage(PHONE, "hi"),)), id="first_dial_choice_saves_the_language"),
    pytest.param(FIRST, "0", CTX, Then("ussd/welcome", FIRST, hint=INVALID, items=LANGS),
                 id="no_back_before_the_main_menu"),
    pytest.param(FIRST, "4", CTX, Then("ussd/welcome", FIRST, hint=INVALID),
                 id="wrong_language_number"),
    pytest.param(MENU, "5", CTX, Then("ussd/language", LANGUAGE, items=LANGS),
                 id="change_language_lists_the_languages"),
    pytest.param(LANGUAGE, "3", CTX, Then("ussd/main_menu", {"s": "menu", "l": "ur"},
                 effects=(SetLanguage(PHONE, "ur"),)), id="new_language_main_menu_in_it"),
    pytest.param(LANGUAGE, "0", CTX, MAIN_MENU, id="back_from_language_list"),
    pytest.param(LANGUAGE, "00", CTX, MAIN_MENU, id="main_menu_from_language_list"),
    # ---- main menu ----
    pytest.param(MENU, "6", CTX, Then("ussd/main_menu", MENU, hint=INVALID),
                 id="wrong_choice_repeats_the_main_menu_with_a_hint"),
    pytest.param(MENU, "hello", CTX, Then("ussd/main_menu", MENU, hint=INVALID),
                 id="text_on_the_main_menu_is_a_wrong_choice"),
    pytest.param(MENU, "00", CTX, MAIN_MENU, id="main_menu_key_on_the_main_menu"),
    pytest.param(MENU, " १ ", CTX, Then("ussd/person", {"s": "person", "l": "en"}),
                 id="devanagari_digit_and_spaces_are_read"),
    pytest.param({"s": "gone"}, "1", CTX, MAIN_MENU, id="an_unknown_screen_restarts_at_the_menu"),
    pytest.param(None, "1", CTX, MAIN_MENU, id="no_state_restarts_at_the_menu"),
    # ---- resume ----
    pytest.param({"s": "resume", "l": "en", "r": SLOTS}, "1", CTX,
                 Then("ussd/slots", SLOTS, items=["09:00-11:00", "14:00-16:00"]),
                 id="continue_returns_to_the_screen_with_the_choices"),
    pytest.param({"s": "resume", "l": "hi", "r": SLOTS}, "1", CTX,
                 Then("ussd/slots", {**SLOTS, "l": "hi"}),
                 id="continue_in_the_language_of_today"),
    pytest.param({"s": "resume", "l": "en", "r": CONFIRM}, "1", FULL_1416,
                 Then("ussd/slots", SLOTS, hint="ussd/hint_slot_filled", items=["09:00-11:00"]),
                 id="continue_to_a_slot_filled_meanwhile_shows_the_slots"),
    pytest.param({"s": "resume", "l": "en", "r": SLOTS}, "2", CTX, MAIN_MENU,
                 id="resume_declined_main_menu"),
    pytest.param({"s": "resume", "l": "en", "r": SLOTS}, "3", CTX,
                 Then("ussd/resume", {"s": "resume", "l": "en", "r": SLOTS}, hint=INVALID),
                 id="wrong_choice_on_resume"),
    # ---- my appointments ----
    pytest.param(MENU, "2", CTX, Then("ussd/no_appointments", NONE),
                 id="no_live_appointment_says_so"),
    pytest.param(NONE, "0", CTX, MAIN_MENU, id="back_from_no_appointments"),
    pytest.param(NONE, "1", CTX, Then("ussd/no_appointments", NONE, hint=INVALID),
                 id="wrong_choice_on_no_appointments"),
    pytest.param(MENU, "2", ONE, Then("ussd/appointment", None, end=True, params=ASHA_DETAIL),
                 id="one_appointment_is_shown_with_its_code"),
    pytest.param(MENU, "2", TWO, Then("ussd/appointments", LIST_VIEW, items=[
        "A.K. 27 Nov PHC Connaught Place", "R.K. 28 Nov Civil Hospital Dwarka"]),
        id="several_appointments_are_numbered_by_day"),
    pytest.param(LIST_VIEW, "2", TWO, Then("ussd/appointment", None, end=True, params={
        "initials": "R.K.", "ref": "27003 19457", "code": "0917", "dose": 2}),
        id="the_chosen_appointment_with_its_code"),
    pytest.param(LIST_VIEW, "3", TWO, Then("ussd/appointments", LIST_VIEW, hint=INVALID),
                 id="wrong_appointment_number"),
    pytest.param(LIST_VIEW, "0", TWO, MAIN_MENU, id="back_from_the_list"),
    pytest.param(MENU, "2", make_ctx(appointments=[
        appointment("3105527188", ASHA, CENTRES[0], -3, "09:00-11:00", status=Status.VACCINATED)]),
        Then("ussd/no_appointments", NONE), id="past_appointments_are_not_live"),
    # ---- send my code again ----
    pytest.param(MENU, "3", ONE, Then("ussd/code_sent", None, end=True,
                 params={"ref": "31055 27188"}, effects=(CODE_SMS,)),
                 id="send_code_queues_the_code_sms"),
    pytest.param(MENU, "3", TWO, Then("ussd/code_which", LIST_CODE), id="send_code_asks_which"),
    pytest.param(LIST_CODE, "1", TWO, Then("ussd/code_sent", None, end=True, effects=(CODE_SMS,)),
                 id="send_code_for_the_chosen_one"),
    pytest.param({"s": "menu", "l": "hi"}, "3", ONE, Then("ussd/code_sent", None, end=True,
                 effects=(SendSms(to=PHONE, template="sms/code_resend",
                                  params={"ref": "31055 27188"}, purpose="code", lang="hi",
                                  code_of="3105527188"),)),
                 id="code_sms_in_the_language_of_the_session"),
    # ---- cancel ----
    pytest.param(MENU, "4", ONE, Then("ussd/cancel_confirm", ASK_ASHA,
                 params={"initials": "A.K.", "day": "27 Nov"}), id="cancel_asks_yes_or_no"),
    pytest.param(MENU, "4", TWO, Then("ussd/cancel_which", LIST_CANCEL),
                 id="cancel_asks_which_first"),
    pytest.param(LIST_CANCEL, "1", TWO, Then("ussd/cancel_confirm", ASK_ASHA),
                 id="cancel_the_chosen_one"),
    pytest.param(ASK_ASHA, "1", ONE, Then("ussd/cancelled", None, end=True,
                 params={"ref": "31055 27188"}, effects=(CANCEL_ASHA,)),
                 id="yes_cancels_and_confirms"),
    pytest.param(ASK_ASHA, "2", ONE, MAIN_MENU, id="no_keeps_it"),
    pytest.param(ASK_ASHA, "3", ONE, Then("ussd/cancel_confirm", ASK_ASHA, hint=INVALID),
                 id="wrong_choice_on_cancel"),
    pytest.param(ASK_ASHA, "0", TWO, Then("ussd/cancel_which", LIST_CANCEL),
                 id="back_to_the_list"),
    pytest.param(ASK_ASHA, "0", ONE, MAIN_MENU, id="back_without_a_list_is_the_main_menu"),
    pytest.param(ASK_ASHA, "1", CTX, Then("ussd/no_appointments", NONE),
                 id="cancelled_meanwhile_nothing_left"),
    pytest.param(ASK_ASHA, "00", ONE, MAIN_MENU, id="main_menu_from_cancel"),
]


@pytest.mark.parametrize("state, text, ctx, then", CASES)
def test_menu_hop(state, text, ctx, then):
    check(ussd.step(state, hop(text), ctx), then)


@pytest.mark.parametrize("state, expected", [
    *[({"s": s, "l": "en"}, True) for s in ("person", "name", "year", "gender", "area",
                                             "centres", "dates", "slots", "confirm")],
    ({"s": "resume", "l": "en", "r": SLOTS}, True),
    *[({"s": s, "l": "en"}, False) for s in ("menu", "lang", "appts", "cancel", "none")],
    (None, False),
    ({}, False),
])
def test_resumable_only_inside_booking(state, expected):
    assert ussd.resumable(state) is expected


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates.load(("en", "hi", "ur"))


@pytest.mark.parametrize("module, ctx, count", [
    (ussd, make_ctx(lang=""), 4),
    (appointments, TWO, 3),
])
def test_the_transcript_in_the_module_docstring_replays(templates, module, ctx, count):
    steps = transcript(module.__doc__)
    assert len(steps) == count
    state = None
    for typed, expected in steps:
        outcome = ussd.start(ctx) if typed is None else ussd.step(state, hop(typed), ctx)
        assert shown(templates, outcome, state) == expected
        state = outcome.state or state
