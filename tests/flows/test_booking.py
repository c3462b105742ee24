"""The USSD booking branch as tables: (state, input, context) -> screen, state, effects."""
from __future__ import annotations

from dataclasses import replace

import pytest

from flows import booking, ussd
from flows.base import Book, Channel, NewPerson, T
from flows.domain import Beneficiary, Gender, Status
from gateway.templates import Templates

from .catalog import NOW, DictCatalog, session, slot
from .ussd_world import (ASHA, CENTRES, CTX, NEW_REF, PHONE, RAVI, SESSIONS, Then, appointment,
                         check, day, hop, make_ctx, shown, transcript)

MENU = {"s": "menu", "l": "en"}
PERSON = {"s": "person", "l": "en"}
NAME = {"s": "name", "l": "en"}
YEAR = {"s": "year", "l": "en", "n": "Meena Devi"}
GENDER = {**YEAR, "s": "gender", "y": 1992}
NEWCOMER = {"n": "Meena Devi", "y": 1992, "x": "f"}
AREA_NEW = {"s": "area", "l": "en", **NEWCOMER}
AREA = {"s": "area", "l": "en", "b": 1}
CENTRES_ = {**AREA, "s": "centres", "a": "110001"}
DATES = {**CENTRES_, "s": "dates", "c": "101"}
SLOTS = {**DATES, "s": "slots", "d": "2026-11-26"}
CONFIRM = {**SLOTS, "s": "confirm", "e": "101:2026-11-26:Covishield", "t": "14:00-16:00"}
PAGED = {**AREA, "s": "centres", "a": "560001"}  # seven centres

ADD = T("ussd/add_person")
FOUR = (ASHA, RAVI, Beneficiary(3, "Meena Devi", 1992, Gender.FEMALE),
        Beneficiary(4, "Imran Khan", 1985, Gender.MALE))
MAIN_MENU = Then("ussd/main_menu", state=MENU)
INVALID = "ussd/hint_invalid"


def _full(*full: tuple[str, str]) -> DictCatalog:
    """The test catalogue with some (session id, slot) seats all taken."""
    sessions = [replace(s, slots=tuple(replace(sl, taken=sl.capacity)
                                       if (s.session_id, sl.name) in full else sl
                                       for sl in s.slots)) for s in SESSIONS]
    return DictCatalog(CENTRES, sessions)


TODAY_1416 = ("101:2026-11-26:Covishield", "14:00-16:00")
TODAY_0911 = ("101:2026-11-26:Covishield", "09:00-11:00")
TWO_VACCINES = DictCatalog(CENTRES[:1], [
    session("101", day(0), slot("14:00-16:00")),
    session("101", day(0), slot("14:00-16:00"), vaccine="Covaxin"),
])
ASHA_BOOKED = appointment("3105527188", ASHA, CENTRES[0], 1, "09:00-11:00")
RAVI_DOSE_1_DONE = appointment("2700319457", RAVI, CENTRES[0], -30, "09:00-11:00",
                               status=Status.VACCINATED)

CASES = [
    # ---- choose a person ----
    pytest.param(MENU, "1", CTX, Then("ussd/person", PERSON,
                 items=["Asha Kumari", "Ravi Kumar", ADD]), id="book_lists_people_then_add"),
    pytest.param(MENU, "1", make_ctx(people=()), Then("ussd/name", NAME),
                 id="nobody_registered_goes_straight_to_the_name"),
    pytest.param(MENU, "1", make_ctx(people=FOUR), Then("ussd/person", PERSON,
                 items=[p.name for p in FOUR]), id="limit_of_4_hides_add_a_person"),
    pytest.param(MENU, "1", make_ctx(max_per_mobile=2), Then("ussd/person", PERSON,
                 items=["Asha Kumari", "Ravi Kumar"]), id="the_limit_comes_from_the_context"),
    pytest.param(PERSON, "5", make_ctx(people=FOUR),
                 Then("ussd/person", PERSON, hint="ussd/hint_people_limit"),
                 id="hidden_add_a_person_number_says_the_number_is_full"),
    pytest.param(PERSON, "6", make_ctx(people=FOUR), Then("ussd/person", PERSON, hint=INVALID),
                 id="a_number_past_the_hidden_item_is_a_wrong_choice"),
    pytest.param(PERSON, "3", CTX, Then("ussd/name", NAME), id="add_a_person_asks_the_name"),
    pytest.param(PERSON, "1", CTX, Then("ussd/area", AREA), id="a_person_chosen_asks_the_area"),
    pytest.param(PERSON, "4", CTX, Then("ussd/person", PERSON, hint=INVALID),
                 id="wrong_choice_repeats_the_people_with_a_hint"),
    pytest.param(PERSON, "1", make_ctx(appointments=[ASHA_BOOKED]),
                 Then("ussd/person", PERSON, hint="ussd/hint_has_appointment"),
                 id="person_with_a_live_appointment_cannot_book_again"),
    pytest.param(PERSON, "2", make_ctx(appointments=[RAVI_DOSE_1_DONE]),
                 Then("ussd/area", {**AREA, "b": 2}), id="dose_2_is_bookable_after_dose_1"),
    pytest.param(PERSON, "2", make_ctx(people=(ASHA, replace(RAVI, doses_done=2))),
                 Then("ussd/person", PERSON, hint="ussd/hint_fully_vaccinated"),
                 id="nobody_books_a_third_dose"),
    # ---- a new person: name, year of birth, gender ----
    pytest.param(NAME, "  Meena   Devi ", CTX, Then("ussd/birth_year", YEAR),
                 id="name_is_taken_with_spaces_tidied"),
    pytest.param(NAME, "मीना देवी", CTX, Then("ussd/birth_year", {**YEAR, "n": "मीना देवी"}),
                 id="name_in_devanagari_with_vowel_signs"),
    pytest.param(NAME, "Ann D'Souza-Rao Jr.", CTX,
                 Then("ussd/birth_year", {**YEAR, "n": "Ann D'Souza-Rao Jr."}),
                 id="name_with_apostrophe_hyphen_and_dot"),
    *[pytest.param(NAME, bad, CTX, Then("ussd/name", NAME, hint="ussd/hint_name"),
                   id=f"bad_name_{n}")
      for n, bad in enumerate(["M", "R2D2", "x" * 41, "Meena@Devi", "-Meena", "  "])],
    pytest.param(YEAR, "1992", CTX, Then("ussd/gender", GENDER), id="year_of_birth"),
    pytest.param(YEAR, "१९९२", CTX, Then("ussd/gender", GENDER), id="year_in_devanagari_digits"),
    pytest.param(YEAR, "1906", CTX, Then("ussd/gender", {**GENDER, "y": 1906}),
                 id="year_120_years_ago_is_accepted"),
    pytest.param(YEAR, "2026", CTX, Then("ussd/gender", {**GENDER, "y": 2026}),
                 id="year_this_year_is_accepted"),
    *[pytest.param(YEAR, bad, CTX, Then("ussd/birth_year", YEAR, hint="ussd/hint_year"),
                   id=f"bad_year_{bad}") for bad in ["2027", "1905", "92", "19922", "abcd"]],
    *[pytest.param(GENDER, key, CTX, Then("ussd/area", {**AREA_NEW, "x": code}),
                   id=f"gender_{key}_is_{code}") for key, code in [("1", "f"), ("2", "m"),
                                                                 ("3", "o")]],
    pytest.param(GENDER, "4", CTX, Then("ussd/gender", GENDER, hint=INVALID),
                 id="gender_out_of_range"),
    # ---- area and centres (free seats, the person's dose and age, the next 7 days) ----
    pytest.param(AREA, "110001", CTX, Then("ussd/centres", CENTRES_, items=[
        "PHC Connaught Place", "Lodhi Road Health Centre"]),
        id="centres_with_seats_for_dose_1_and_age_36"),
    pytest.param(AREA, "110 001", CTX, Then("ussd/centres", CENTRES_, items=[
        "PHC Connaught Place", "Lodhi Road Health Centre"]), id="area_code_with_a_space"),
    pytest.param({**AREA, "b": 2}, "110001", CTX,
                 Then("ussd/centres", {**CENTRES_, "b": 2},
                      items=["PHC Connaught Place", "Civil Hospital Dwarka",
                             "Old Fort Dispensary", "Lodhi Road Health Centre"]),
                 id="dose_2_at_68_adds_dose_2_and_45_plus_centres"),
    pytest.param({**AREA_NEW, "y": 1970}, "110001", CTX,
                 Then("ussd/centres", {**AREA_NEW, "y": 1970, "s": "centres", "a": "110001"},
                      items=["PHC Connaught Place", "Old Fort Dispensary",
                             "Lodhi Road Health Centre"]),
                 id="min_age_counts_by_year_of_birth"),
    *[pytest.param(AREA, bad, CTX, Then("ussd/area", AREA, hint="ussd/hint_area"),
                   id=f"bad_area_{bad}") for bad in ["11", "12345678901", "11a001"]],
    pytest.param(AREA, "999999", CTX, Then("ussd/no_centres", AREA),
                 id="no_centres_asks_for_another_area"),
    pytest.param(CENTRES_, "1", CTX, Then("ussd/dates", DATES, items=["26 Nov", "27 Nov"],
                 params={"centre": "PHC Connaught Place"}),
                 id="dates_within_7_days_today_included"),
    pytest.param(CENTRES_, "3", CTX, Then("ussd/centres", CENTRES_, hint=INVALID),
                 id="wrong_centre_number"),
    pytest.param(CENTRES_, "1", make_ctx(now=NOW.replace(hour=16)),
                 Then("ussd/dates", DATES, items=["27 Nov"]),
                 id="a_day_whose_slots_are_all_over_is_not_offered"),
    # ---- slots ----
    pytest.param(DATES, "1", CTX, Then("ussd/slots", SLOTS, items=["09:00-11:00", "14:00-16:00"],
                 params={"day": "26 Nov"}), id="slots_with_seats_not_over_and_not_full"),
    pytest.param(DATES, "1", make_ctx(now=NOW.replace(hour=11)),
                 Then("ussd/slots", SLOTS, items=["14:00-16:00"]),
                 id="a_slot_that_ended_today_is_not_offered"),
    pytest.param(DATES, "1", make_ctx(catalog=TWO_VACCINES),
                 Then("ussd/slots", SLOTS,
                      items=["14:00-16:00 Covaxin", "14:00-16:00 Covishield"]),
                 id="two_vaccines_on_a_day_are_named"),
    pytest.param(SLOTS, "1", make_ctx(catalog=TWO_VACCINES), Then("ussd/confirm", {
        **CONFIRM, "e": "101:2026-11-26:Covaxin"}, params={"vaccine": "Covaxin"}),
        id="the_slot_chosen_names_its_session"),
    pytest.param(SLOTS, "2", CTX, Then("ussd/confirm", CONFIRM, params={
        "initials": "A.K.", "dose": 1, "vaccine": "Covishield", "centre": "PHC Connaught Place",
        "day": "26 Nov", "slot": "14:00-16:00"}), id="confirm_summary"),
    # ---- confirm ----
    pytest.param(CONFIRM, "1", CTX, Then("ussd/booked", None, end=True,
                 params={"ref": "48213 90575"}, effects=(Book(
                     phone=PHONE, ref=NEW_REF, session_id="101:2026-11-26:Covishield",
                     slot="14:00-16:00", dose=1, channel=Channel.USSD, lang="en",
                     beneficiary_id=1),)), id="confirm_books_and_ends_with_the_ref"),
    pytest.param({**CONFIRM, "b": 2, "c": "102", "d": "2026-11-28",
                  "e": "102:2026-11-28:Covaxin", "t": "10:00-12:00"}, "1", CTX,
                 Then("ussd/booked", None, end=True, effects=(Book(
                     phone=PHONE, ref=NEW_REF, session_id="102:2026-11-28:Covaxin",
                     slot="10:00-12:00", dose=2, channel=Channel.USSD, lang="en",
                     beneficiary_id=2),)), id="dose_2_after_dose_1"),
    pytest.param({**CONFIRM, "b": 9}, "1", CTX, Then(
        "ussd/person", PERSON, hint=INVALID), id="a_vanished_person_goes_back_to_people"),
    pytest.param({k: v for k, v in {**CONFIRM, **NEWCOMER}.items() if k != "b"}, "1", CTX,
                 Then("ussd/booked", None, end=True, effects=(Book(
                     phone=PHONE, ref=NEW_REF, session_id="101:2026-11-26:Covishield",
                     slot="14:00-16:00", dose=1, channel=Channel.USSD, lang="en",
                     person=NewPerson("Meena Devi", 1992, "f")),)),
                 id="a_new_person_is_saved_with_the_booking"),
    pytest.param(CONFIRM, "2", CTX, MAIN_MENU, id="confirm_2_cancels_to_the_main_menu"),
    pytest.param(CONFIRM, "3", CTX, Then("ussd/confirm", CONFIRM, hint=INVALID),
                 id="wrong_choice_on_confirm"),
    pytest.param(CONFIRM, "1", make_ctx(catalog=_full(TODAY_1416)),
                 Then("ussd/slots", SLOTS, hint="ussd/hint_slot_filled", items=["09:00-11:00"]),
                 id="slot_filled_before_confirm_shows_slots_again"),
    pytest.param(CONFIRM, "1", make_ctx(appointments=[ASHA_BOOKED]),
                 Then("ussd/person", PERSON, hint="ussd/hint_has_appointment"),
                 id="person_booked_meanwhile_is_refused_at_confirm"),
    # ---- 0 Back, 00 Main menu ----
    pytest.param(PERSON, "0", CTX, MAIN_MENU, id="back_from_people_is_the_main_menu"),
    pytest.param(NAME, "0", CTX, Then("ussd/person", PERSON), id="back_from_name_to_people"),
    pytest.param(NAME, "0", make_ctx(people=()), MAIN_MENU,
                 id="back_from_name_is_the_main_menu_when_nobody_is_registered"),
    pytest.param(YEAR, "0", CTX, Then("ussd/name", NAME), id="back_from_year_to_name"),
    pytest.param(AREA_NEW, "0", CTX, Then("ussd/gender", GENDER),
                 id="back_from_area_to_gender_for_a_new_person"),
    pytest.param(AREA, "0", CTX, Then("ussd/person", PERSON), id="back_from_area_to_people"),
    pytest.param(CENTRES_, "0", CTX, Then("ussd/area", AREA), id="back_from_centres_to_area"),
    pytest.param(DATES, "0", CTX, Then("ussd/centres", CENTRES_), id="back_from_dates"),
    pytest.param(SLOTS, "0", CTX, Then("ussd/dates", DATES), id="back_from_slots"),
    pytest.param(CONFIRM, "0", CTX, Then("ussd/slots", SLOTS), id="back_from_confirm"),
    *[pytest.param(state, "00", CTX, MAIN_MENU, id=f"main_menu_from_{state['s']}")
      for state in (NAME, AREA, SLOTS, CONFIRM)],
    # ---- 98 More: numbering is global across pages ----
    pytest.param(AREA, "560001", CTX, Then("ussd/centres", PAGED,
                 items=[f"Centre {n}" for n in range(1, 8)]), id="a_long_list_starts_on_page_1"),
    pytest.param(PAGED, "98", CTX, Then("ussd/centres", {**PAGED, "g": 1}, page=1),
                 id="more_shows_the_next_page"),
    pytest.param({**PAGED, "g": 1}, "0", CTX, Then("ussd/centres", PAGED),
                 id="back_on_page_2_shows_page_1"),
    pytest.param({**PAGED, "g": 1}, "98", CTX,
                 Then("ussd/centres", {**PAGED, "g": 1}, page=1, hint=INVALID),
                 id="more_on_the_last_page_is_a_wrong_choice"),
    pytest.param({**PAGED, "g": 1}, "6", CTX, Then("ussd/dates", {**DATES, "a": "560001",
                 "c": "211"}, params={"centre": "Centre 6"}), id="page_2_item_6_is_centre_6"),
    pytest.param({**PAGED, "l": "hi", "g": 1}, "98", CTX,
                 Then("ussd/centres", {**PAGED, "l": "hi", "g": 2}, page=2),
                 id="hindi_pages_by_3"),
    pytest.param(CENTRES_, "98", CTX, Then("ussd/centres", CENTRES_, hint=INVALID),
                 id="more_on_a_short_list_is_a_wrong_choice"),
]


@pytest.mark.parametrize("state, text, ctx, then", CASES)
def test_booking_hop(state, text, ctx, then):
    check(ussd.step(state, hop(text), ctx), then)


SEAT_LOST_CASES = [
    pytest.param(CONFIRM, make_ctx(catalog=_full(TODAY_1416)),
                 Then("ussd/slots", SLOTS, hint="ussd/hint_slot_filled", items=["09:00-11:00"]),
                 id="back_to_the_slots_with_a_hint"),
    pytest.param(CONFIRM, make_ctx(catalog=_full(TODAY_1416, TODAY_0911)),
                 Then("ussd/dates", DATES, hint="ussd/hint_full", items=["27 Nov"]),
                 id="the_day_now_full_goes_back_to_the_dates"),
    pytest.param(None, CTX, MAIN_MENU, id="without_a_booking_state_the_main_menu"),
]


@pytest.mark.parametrize("state, ctx, then", SEAT_LOST_CASES)
def test_seat_lost_event(state, ctx, then):
    check(ussd.step(state, hop("1", event="seat_lost"), ctx), then)


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates.load(("en", "hi", "ur"))


def test_the_transcript_in_the_module_docstring_replays(templates):
    steps = transcript(booking.__doc__)
    assert len(steps) == 8
    state, effects = None, ()
    for typed, expected in steps:
        outcome = ussd.start(CTX) if typed is None else ussd.step(state, hop(typed), CTX)
        assert shown(templates, outcome, state) == expected
        state, effects = outcome.state or state, outcome.effects
    assert effects == (Book(phone=PHONE, ref=NEW_REF, session_id="101:2026-11-26:Covishield",
                            slot="14:00-16:00", dose=1, channel=Channel.USSD, lang="en",
                            beneficiary_id=1),)


def test_a_live_booking_state_stays_well_under_512_bytes():
    import json

    worst = {**CONFIRM, "l": "hi", "n": "क" * 40, "y": 1992, "x": "o", "a": "1" * 10,
             "c": "9" * 10, "e": "9" * 10 + ":2026-11-26:" + "V" * 20, "g": 12}
    worst.pop("b")
    resume = {"s": "resume", "l": "hi", "r": worst}
    assert len(json.dumps(resume).encode()) < 512  # ensure_ascii: 6 bytes per Hindi letter
