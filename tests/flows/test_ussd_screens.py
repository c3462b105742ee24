"""Every USSD screen fits its budget in every language, with the worst data it can carry."""
from __future__ import annotations

from dataclasses import replace

import pytest

from flows.base import Context, Reply, T
from flows.domain import Citizen
from flows.menu import centre_width
from flows.screens import ITEM_TEMPLATES, SHAPES
from flows.text import language_name
from gateway import gsm
from gateway.templates import Templates

LANGUAGES = ("en", "hi", "ur")

# The longest value of each parameter the USSD flows pass: they cut centre names to
# `centre_width` and vaccine names to 20; data items are shortened by the renderer.
WORST = {
    "initials": "V.N.L.N.R.K.",  # cut to INITIALS_WIDTH by the flows
    "centre": "Primary Health Centre Rampur Khas Block",  # 40 characters
    "day": "30 Sep",
    "slot": "09:00-11:00",
    "vaccine": "Measles-Rubella (MR)",  # 20 characters
    "dose": 2,
    "ref": "48213 90576",
    "code": "1234",
}
WORST_ITEMS = ["Community Health Centre Rampur Khas Block Number 12",
               "Mohammed Abdul Rahman Siddiqui Qureshi Khan", "Lodhi Road Health Centre Annexe"]
# Language menus list each language in its own script, so they are UCS-2 screens; checked
# with the three languages configured by default.
LANGUAGE_ITEMS = [language_name(code) for code in LANGUAGES]
LANGUAGE_SCREENS = ("ussd/welcome", "ussd/language")
# Days and times are useless shortened: these labels must show whole ("hh:mm-hh:mm" at least,
# when a slot also names its vaccine).
WHOLE = {
    "ussd/dates": [[f"{d} Sep" for d in range(24, 31)]],
    "ussd/slots": [[f"{h:02d}:00-{h + 2:02d}:00" for h in range(7, 21, 2)],
                   [f"{h:02d}:00-{h + 2:02d}:00 Measles-Rubella (MR)" for h in range(7, 21, 2)]],
}


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates.load(LANGUAGES)


def _worst(templates: Templates, lang: str) -> dict:
    ctx = Context(now=None, citizen=Citizen(""), page_size={lang: templates.page_size(lang)})
    return {**WORST, "centre": WORST["centre"][:centre_width(ctx, lang)]}


def _item_pages(template_id: str, size: int) -> list[tuple[list, int]]:
    """(items, page) at their worst: a full page with a further one, and a last page that
    ends with "Add a person" (numbered 10 and more, so the numbers are wide too)."""
    if template_id in LANGUAGE_SCREENS:
        return [(LANGUAGE_ITEMS, 0)]
    if template_id in WHOLE:
        return [(labels[:size + 1], 0) for labels in WHOLE[template_id]]
    data = [WORST_ITEMS[n % len(WORST_ITEMS)] for n in range(3 * size)]
    return [(data[:size + 1], 0), (data[:3 * size - 1] + [T("ussd/add_person")], 2)]


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("template_id", sorted(SHAPES))
def test_screen_fits_its_budget_with_every_hint_it_can_show(templates, lang, template_id):
    shape = SHAPES[template_id]
    pages = _item_pages(template_id, templates.page_size(lang)) if shape.items else [((), 0)]
    for hint in ("", *shape.hints):
        for items, page in pages:
            reply = Reply(template_id, _worst(templates, lang), items=items, page=page, hint=hint,
                          nav=shape.nav, end=shape.end)
            screen = templates.screen(reply, lang)  # raises ScreenTooLong
            if template_id in WHOLE:
                shown = items[:templates.page_size(lang)]
                assert all(label[:len("hh:mm-hh:mm")] in screen for label in shown), screen
    if lang == "en":  # English texts stay plain GSM-7 (language names are data)
        for text_id in (template_id, *shape.hints):
            text = templates.render(text_id, lang, _worst(templates, lang))
            assert gsm.is_gsm7_basic(text), text


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_ussd_template_is_a_screen_an_item_or_a_hint(templates, lang):
    known = set(SHAPES) | set(ITEM_TEMPLATES) | {h for s in SHAPES.values() for h in s.hints}
    ours = {i for i in templates.ids("en") if i.startswith("ussd/")} - {"ussd/busy", "ussd/shed"}
    assert ours == known
    assert known <= set(templates.ids(lang))


@pytest.mark.parametrize("lang", LANGUAGES)
def test_hints_are_one_line(templates, lang):
    for hint in {h for s in SHAPES.values() for h in s.hints}:
        assert "\n" not in templates.render(hint, lang, WORST)


# ---- the flows themselves, driven through every screen with the longest data ----

LONG = "Primary Health Centre and Community Vaccination Hall, Rampur Khas"


def _worst_world(lang: str, templates: Templates):
    from datetime import timedelta

    from flows.domain import Beneficiary, Centre, Gender

    from .catalog import NOW, TODAY, DictCatalog, session, slot
    from .ussd_world import PHONE, appointment, make_ctx

    names = ["Mohammed Abdul Rahman Siddiqui Qureshi Kh", "Asha Kumari Devi Sharma Chaturvedi Ra",
             "Venkata Subramanian Lakshminarayanan Iy"]
    people = [Beneficiary(1, names[0], 1950, Gender.MALE),
              Beneficiary(2, names[1], 1960, Gender.FEMALE, doses_done=2),
              Beneficiary(3, names[2], 1970, Gender.OTHER)]
    centres = [Centre(str(100 + n), f"{LONG} {n}", area_code="110001") for n in range(1, 8)]
    hours = [f"{h:02d}:00-{h + 1:02d}:00" for h in range(11, 18)]
    sessions = [session(c.centre_id, TODAY + timedelta(days=d), *[slot(h) for h in hours],
                        vaccine=v)
                for c in centres for d in range(7) for v in ("Measles-Rubella (MR)", "Covishield")]
    live = [appointment("3105527188", people[0], centres[0], 1, hours[0]),
            appointment("2700319457", people[2], centres[1], 2, hours[1]),
            appointment("4821390575", people[2], centres[2], 3, hours[2], dose=2)]
    codes = {a.ref: "1234" for a in live}
    pages = {code: templates.page_size(code) for code in LANGUAGES}
    ctx = make_ctx(lang=lang, people=people, appointments=live, codes=codes, page_size=pages,
                   catalog=DictCatalog(centres, sessions), now=NOW)
    return PHONE, ctx


# Inputs from the first hop; "x" and out-of-range numbers provoke each screen's hints.
PATHS = [
    ["1", "x", "98", "1", "3", "0", "2", "110", "110001", "98", "x", "9", "1", "x", "98", "1",
     "98", "x", "1", "x", "1"],
    ["1", "4", "R", "Meena Devi", "20", "1990", "5", "1", "999999", "110001", "1", "1", "1",
     "0", "0", "0", "0", "0", "0", "0"],
    ["2", "x", "98", "1"],
    ["3", "2"],
    ["4", "3", "x", "0", "1", "1"],
    ["5", "x", "00", "5", "2"],
]


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("path", PATHS, ids=[f"path{n}" for n in range(1, len(PATHS) + 1)])
def test_every_screen_the_flows_show_fits(templates, lang, path):
    from flows import ussd

    from .ussd_world import conforms, hop

    _, ctx = _worst_world(lang, templates)
    outcome = ussd.start(ctx)
    state = outcome.state
    for text in path:
        conforms(outcome.reply)
        templates.screen(outcome.reply, (outcome.state or state)["l"])  # raises when too long
        if outcome.state is None:
            break
        state = outcome.state
        outcome = ussd.step(state, hop(text), ctx)
    templates.screen(outcome.reply, (outcome.state or state)["l"])


@pytest.mark.parametrize("lang", LANGUAGES)
def test_first_dial_resume_and_seat_lost_screens_fit(templates, lang):
    from dataclasses import replace

    from flows import ussd

    from .ussd_world import conforms, hop

    _, ctx = _worst_world(lang, templates)
    confirm = {"s": "confirm", "l": lang, "b": 3, "a": "110001", "c": "101",
               "d": ctx.today.isoformat(), "e": f"101:{ctx.today.isoformat()}:Covishield",
               "t": "11:00-12:00"}
    outcomes = [
        ussd.start(replace(ctx, citizen=replace(ctx.citizen, lang=""), languages=(lang, "en"))),
        ussd.start(ctx, confirm),
        ussd.step({"s": "resume", "l": lang, "r": confirm}, hop("x"), ctx),
        ussd.step({"s": "resume", "l": lang, "r": confirm}, hop("1"), ctx),
        ussd.step(confirm, hop("", event="seat_lost"), ctx),
    ]
    for outcome in outcomes:
        conforms(outcome.reply)
        templates.screen(outcome.reply, outcome.state["l"])
