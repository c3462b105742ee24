"""Templates: rendering, USSD screens, keywords, and every template against its budget."""
from __future__ import annotations

from pathlib import Path

import pytest

from flows.base import Reply, T
from flows.menu import CENTRE_WIDTH
from flows.text import clip, language_name
from gateway import gsm
from gateway.config import Config
from gateway.templates import PAGE_SIZE_GSM7, ROOT, ScreenTooLong, TemplateError, Templates, fold

LANGUAGES = ("en", "hi", "ur")
MAX_PER_MOBILE = Config().max_per_mobile

# The longest value each parameter can take; a template using a parameter not listed here
# fails the budget tests until someone adds its worst case.
WORST = {
    "initials": "V.N.L.N.R.K.",  # flows.text.initials of the name below
    "name": "Venkata Naga Lakshmi Narasimha Rao Kumar",  # 40, flows.booking.NAME_LENGTH
    "birth_year": "1937",
    "centre": "Community Health Centre Rampur Khas East",  # 40 characters
    "date": "Wed 30 Sep",  # flows.text.day_label ("30 Sep") with room for a weekday
    "day": "30 Sep",  # flows.text.day_label
    "slot": "09:00-11:00",
    "ref": "48213 90576",
    "code": "####",  # the mask the shell renders; the real code has the same length
    "dose": "2",
    "vaccine": "Measles-Rubella (MR)",  # 20 characters
    "cert_id": "1234 5678 9012",
    "ussd_code": "*384*12345#",
    "tries_left": "4",
    "booked": "999",
    "verified": "999",
    "vaccinated": "999",
    "no_show": "999",
    "codes": "en, hi, ur, bn, ta, te, mr, gu, kn, ml, pa, or, sw",  # GATEWAY_LANGUAGES, all 13
}
assert len(WORST["centre"]) == len(WORST["name"]) == 40

# Data items of a list screen (centres, people): longer than any screen can show whole.
WORST_ITEM = WORST["centre"]
# Days and times on their lists: the whole "dd Mmm" / "hh:mm-hh:mm" must show; a slot names
# its vaccine when the day offers several, and that part may be shortened.
DAYS = [f"{day} Sep" for day in range(24, 31)]
SLOTS = [f"{h:02d}:00-{h + 2:02d}:00 {WORST['vaccine']}" for h in range(7, 21, 2)]

# SMS parts each message may cost, per language: "*" is the default for that language.
SMS_BUDGETS = {
    "en": {"*": 1},
    "hi": {"*": 3},
    "ur": {"*": 3},
}

# How each USSD screen is shown at its worst, following the flows: the hints it may carry,
# its list items (None: no list; "data": long names that may be shortened; a list: these
# labels, which must show whole), and whether it has the navigation line. Lists get one
# item more than a page, so "98" shows too. A screen missing here is shown with every hint,
# a list of long names and navigation.
_ANY_HINT = ("*",)
_INVALID = ("ussd/hint_invalid",)
_PEOPLE = ("ussd/hint_invalid", "ussd/hint_has_appointment", "ussd/hint_fully_vaccinated",
           "ussd/hint_people_limit")
SCREENS = {
    "ussd/busy": {"hints": (), "items": None, "nav": False},
    "ussd/shed": {"hints": (), "items": None, "nav": False},
    "ussd/welcome": {"hints": _INVALID, "items": "languages", "nav": False},
    "ussd/language": {"hints": _INVALID, "items": "languages", "nav": True},
    "ussd/resume": {"hints": _INVALID, "items": None, "nav": False},
    "ussd/main_menu": {"hints": _INVALID, "items": None, "nav": False},
    "ussd/person": {"hints": _PEOPLE, "items": "people", "nav": True},
    "ussd/name": {"hints": ("ussd/hint_name", *_PEOPLE), "items": None, "nav": True},
    "ussd/birth_year": {"hints": ("ussd/hint_year",), "items": None, "nav": True},
    "ussd/gender": {"hints": _INVALID, "items": None, "nav": True},
    "ussd/area": {"hints": ("ussd/hint_area",), "items": None, "nav": True},
    "ussd/no_centres": {"hints": (), "items": None, "nav": True},
    "ussd/centres": {"hints": ("ussd/hint_invalid", "ussd/hint_full"), "items": "data",
                     "nav": True},
    "ussd/dates": {"hints": ("ussd/hint_invalid", "ussd/hint_full"), "items": DAYS,
                   "nav": True},
    "ussd/slots": {"hints": ("ussd/hint_invalid", "ussd/hint_slot_filled"), "items": SLOTS,
                   "nav": True},
    "ussd/confirm": {"hints": _INVALID, "items": None, "nav": True},
    "ussd/booked": {"hints": (), "items": None, "nav": False},
    "ussd/appointments": {"hints": _INVALID, "items": "data", "nav": True},
    "ussd/code_which": {"hints": _INVALID, "items": "data", "nav": True},
    "ussd/cancel_which": {"hints": _INVALID, "items": "data", "nav": True},
    "ussd/appointment": {"hints": (), "items": None, "nav": False},
    "ussd/cancel_confirm": {"hints": _INVALID, "items": None, "nav": True},
    "ussd/cancelled": {"hints": (), "items": None, "nav": False},
    "ussd/code_sent": {"hints": (), "items": None, "nav": False},
    "ussd/no_appointments": {"hints": _INVALID, "items": None, "nav": True},
}
SCREEN_DEFAULT = {"hints": _ANY_HINT, "items": "data", "nav": True}
# Pieces of screens rather than screens: checked as part of the screens that use them.
FRAGMENTS = {"ussd/add_person"}


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates.load(LANGUAGES)


def _worst_params(templates: Templates, template_id: str, lang: str) -> dict:
    missing = sorted(templates.fields(template_id, lang) - WORST.keys())
    if missing:
        pytest.fail(f"{lang}/{template_id}.txt uses {', '.join(missing)}: add its worst-case "
                    f"value to WORST in {Path(__file__).name}")
    params = dict(WORST)
    if template_id.startswith("ussd/") and templates.page_size(lang) < PAGE_SIZE_GSM7:
        # the flows give a centre half the room on a UCS-2 screen (flows.menu.centre_width)
        params["centre"] = clip(params["centre"], CENTRE_WIDTH // 2)
    return params


def _ids(prefix: str) -> list[tuple[str, str]]:
    """(lang, template id) of every template file under `prefix`, read from disk."""
    return [(lang, path.relative_to(ROOT / lang).with_suffix("").as_posix())
            for lang in LANGUAGES for path in sorted((ROOT / lang / prefix).rglob("*.txt"))]


def _hint_ids(templates: Templates, lang: str) -> list[str]:
    return [i for i in templates.ids(lang) if i.startswith("ussd/") and "hint" in i]


# ---- every template, every language, worst-case values ----


def test_every_english_template_exists_in_every_language(templates):
    for lang in LANGUAGES:
        missing = sorted(set(templates.ids("en")) - set(templates.ids(lang)))
        assert not missing, f"{lang} lacks {missing}"


def test_every_parameter_of_every_template_has_a_worst_case(templates):
    for lang in LANGUAGES:
        for template_id in templates.ids(lang):
            _worst_params(templates, template_id, lang)


@pytest.mark.parametrize("lang, template_id", _ids("sms"))
def test_sms_fits_its_segment_budget_with_worst_case_values(templates, lang, template_id):
    budget = SMS_BUDGETS[lang].get(template_id, SMS_BUDGETS[lang]["*"])
    body, encoding, parts = templates.sms(template_id, lang,
                                          _worst_params(templates, template_id, lang))
    assert parts <= budget, (f"{lang}/{template_id} costs {parts} parts ({encoding}, "
                             f"{gsm.length(body)} chars), budget {budget}:\n{body}")
    if lang == "en":
        assert encoding == gsm.GSM7, f"en/{template_id} has a non-GSM character:\n{body}"


def _screen_items(templates: Templates, kind, lang: str, params: dict) -> list:
    size = templates.page_size(lang)
    if kind is None:
        return []
    if kind == "languages":
        return [language_name(code) for code in LANGUAGES]
    if kind == "people":  # the most a number may register, and "Add a person" at the end
        return [WORST["name"]] * (MAX_PER_MOBILE - 1) + [T("ussd/add_person", params)]
    if kind == "data":
        return [WORST_ITEM] * (size + 1)
    return kind[:size + 1]


def _screen_hint(templates: Templates, hints, lang: str, params: dict) -> str:
    if hints == _ANY_HINT:
        hints = _hint_ids(templates, lang)
    return max(hints, key=lambda h: len(templates.render(h, lang, params)), default="")


@pytest.mark.parametrize("lang, template_id", [
    (lang, i) for lang, i in _ids("ussd") if "hint" not in i and i not in FRAGMENTS])
def test_ussd_screen_fits_with_worst_case_values(templates, lang, template_id):
    shape = SCREENS.get(template_id, SCREEN_DEFAULT)
    params = _worst_params(templates, template_id, lang)
    items = _screen_items(templates, shape["items"], lang, params)
    hint = _screen_hint(templates, shape["hints"], lang, params)
    reply = Reply(template_id, params, items=items, hint=hint, nav=shape["nav"])
    screen = templates.screen(reply, lang)  # raises ScreenTooLong when it cannot fit
    if lang == "en" and shape["items"] != "languages":  # languages are named in their script
        assert gsm.is_gsm7_basic(screen), f"en/{template_id} leaves the GSM-7 basic table"
    if isinstance(shape["items"], list):  # dates and times are useless shortened
        for label in shape["items"][:templates.page_size(lang)]:
            whole = label[:len("hh:mm-hh:mm")]
            assert whole in screen, f"{lang}/{template_id} cuts {whole!r}:\n{screen}"


@pytest.mark.parametrize("lang, template_id", [
    (lang, i) for lang, i in _ids("ussd") if "hint" in i])
def test_ussd_hint_is_one_line(templates, lang, template_id):
    hint = templates.render(template_id, lang, _worst_params(templates, template_id, lang))
    assert "\n" not in hint


def test_english_booking_slip_is_one_segment_with_ref_and_code(templates):
    body, encoding, parts = templates.sms("sms/booking", "en", WORST)
    assert (encoding, parts) == ("gsm7", 1)
    for text in ("V.N.L.N.R.K.", WORST["centre"], WORST["date"], "09:00-11:00",
                 "Ref 48213 90576", "Code ####"):
        assert text in body


def test_english_code_resend_carries_ref_and_code(templates):
    body = templates.render("sms/code_resend", "en", WORST)
    assert "Ref 48213 90576" in body and "Code ####" in body


def test_english_completion_names_dose_vaccine_cert_and_the_notme_command(templates):
    body = templates.render("sms/completion", "en", WORST)
    for text in ("2", "Measles-Rubella (MR)", WORST["date"], WORST["centre"],
                 "Cert 1234 5678 9012", "NOTME 48213 90576"):
        assert text in body


def test_busy_and_shed_screens_say_when_to_try_again(templates):
    assert templates.render("ussd/busy", "en") == "Service busy, please try again later."
    assert "15 minutes" in templates.render("ussd/shed", "en")


def test_page_size_follows_the_script_of_the_navigation(templates):
    assert [templates.page_size(lang) for lang in LANGUAGES] == [5, 3, 3]


# ---- keywords ----


def test_keywords_in_each_language_lead_to_the_english_command(templates):
    assert templates.aliases("hi")["टीका"] == "BOOK"
    assert templates.aliases("hi")["बुक"] == "BOOK"
    assert templates.aliases("ur")["بک"] == "BOOK"
    assert templates.aliases("hi")["book"] == "BOOK"  # English always works
    assert templates.aliases("en")["y"] == "YES"
    assert templates.aliases("hi")["haan"] == "YES"
    assert templates.aliases("ur")["main nahi"] == "NOTME"


def test_every_command_has_an_alias_in_every_other_language(templates):
    for lang in LANGUAGES[1:]:
        own = {command for word, command in templates.aliases(lang).items()
               if word != command.casefold()}
        lacking = {"BOOK", "STATUS", "CODE", "CANCEL", "CERT", "NOTME", "LANG", "STOP",
                   "START", "HELP", "CHECK", "DONE", "TODAY", "YES"} - own
        assert not lacking, f"{lang}/keywords.txt has no alias for {sorted(lacking)}"


def test_all_languages_together_give_each_word_one_meaning(templates):
    merged = templates.keywords()
    for lang in LANGUAGES:
        for word, command in templates.aliases(lang).items():
            assert merged[word] == command


# ---- behaviour, on a small template tree ----


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    base = {"en/nav/more.txt": "More\n", "en/nav/back.txt": "Back\n",
            "en/nav/main.txt": "Main menu\n"}
    for name, text in {**base, **files}.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


def test_render_fills_named_params_and_strips_one_trailing_newline(tmp_path):
    root = _tree(tmp_path, {"en/sms/hello.txt": "Hello {name},\nRef {ref}\n\n"})
    templates = Templates.load(["en"], root=root)
    assert templates.render("sms/hello", "en", {"name": "Asha", "ref": "1"}) == \
        "Hello Asha,\nRef 1\n"


def test_render_names_the_missing_parameter(tmp_path):
    root = _tree(tmp_path, {"en/sms/hello.txt": "Hello {name}, Ref {ref}"})
    templates = Templates.load(["en"], root=root)
    with pytest.raises(TemplateError, match=r"'sms/hello' \(en\) needs parameter\(s\) ref"):
        templates.render("sms/hello", "en", {"name": "Asha"})


def test_a_language_without_the_template_falls_back_to_english(tmp_path):
    root = _tree(tmp_path, {"en/sms/a.txt": "English", "en/sms/b.txt": "Also English",
                            "hi/sms/a.txt": "हिन्दी"})
    templates = Templates.load(["hi"], root=root)
    assert templates.render("sms/a", "hi") == "हिन्दी"
    assert templates.render("sms/b", "hi") == "Also English"
    assert templates.languages == ("hi",)
    with pytest.raises(TemplateError, match="sms/c"):
        templates.render("sms/c", "hi")


def test_ids_follow_nested_folders(tmp_path):
    root = _tree(tmp_path, {"en/sms/verify/ok.txt": "OK"})
    assert "sms/verify/ok" in Templates.load(["en"], root=root).ids("en")


def test_a_template_with_broken_braces_fails_at_load(tmp_path):
    root = _tree(tmp_path, {"en/sms/bad.txt": "Ref {ref"})
    with pytest.raises(TemplateError, match="sms/bad"):
        Templates.load(["en"], root=root)


def test_a_configured_language_without_a_folder_fails_at_load(tmp_path):
    with pytest.raises(TemplateError, match="'sw'"):
        Templates.load(["en", "sw"], root=_tree(tmp_path, {}))


def test_sms_reports_encoding_and_parts(tmp_path):
    root = _tree(tmp_path, {"en/sms/a.txt": "{text}"})
    templates = Templates.load(["en"], root=root)
    assert templates.sms("sms/a", "en", {"text": "a" * 161}) == ("a" * 161, "gsm7", 2)
    assert templates.sms("sms/a", "en", {"text": "It’s"}) == ("It’s", "ucs2", 1)


# ---- USSD screens ----


@pytest.fixture
def screens(tmp_path) -> Templates:
    root = _tree(tmp_path, {
        "en/ussd/centres.txt": "Choose a centre",
        "en/ussd/hint.txt": "Please reply with a number.",
        "en/ussd/add.txt": "Add a person",
        "en/ussd/long.txt": "x" * 150,
        "hi/nav/more.txt": "और", "hi/nav/back.txt": "वापस", "hi/nav/main.txt": "मुख्य मेनू",
        "hi/ussd/centres.txt": "केंद्र चुनें",
    })
    return Templates.load(["en", "hi"], root=root)


def test_screen_numbers_items_and_offers_more_when_a_page_follows(screens):
    items = [f"Centre {n}" for n in range(1, 8)]
    assert screens.screen(Reply("ussd/centres", items=items), "en") == (
        "Choose a centre\n1 Centre 1\n2 Centre 2\n3 Centre 3\n4 Centre 4\n5 Centre 5\n"
        "98 More\n0 Back  00 Main menu")


def test_second_page_is_numbered_globally_and_has_no_more(screens):
    items = [f"Centre {n}" for n in range(1, 8)]
    assert screens.screen(Reply("ussd/centres", items=items, page=1), "en") == (
        "Choose a centre\n6 Centre 6\n7 Centre 7\n0 Back  00 Main menu")


def test_screen_shows_hint_and_translated_items_and_no_nav_when_asked(screens):
    reply = Reply("ussd/centres", items=["Rampur PHC", T("ussd/add")], hint="ussd/hint",
                  nav=False)
    assert screens.screen(reply, "en") == (
        "Please reply with a number.\nChoose a centre\n1 Rampur PHC\n2 Add a person")


def test_ucs2_language_pages_by_three_with_translated_navigation(screens):
    items = ["Rampur", "Sitapur", "Kheri", "Gonda"]
    assert screens.screen(Reply("ussd/centres", items=items), "hi") == (
        "केंद्र चुनें\n1 Rampur\n2 Sitapur\n3 Kheri\n98 और\n0 वापस  00 मुख्य मेनू")


def test_long_data_labels_are_shortened_evenly_keeping_their_ends(screens):
    towns = ("Rampur Khas", "Sitapur", "Gonda Nagar", "Lakhimpur", "Bahraich")
    items = [f"Primary Health Centre {town}" for town in towns]
    screen = screens.screen(Reply("ussd/centres", items=items), "en")
    assert len(screen) <= 160
    lines = screen.split("\n")[1:6]
    assert [line.split(" ", 1)[0] for line in lines] == ["1", "2", "3", "4", "5"]
    for line, town in zip(lines, towns):
        assert line.startswith(line[:2] + "Prim") and "." in line and line.endswith(town[-5:])
    assert screen.split("\n")[6] == "0 Back  00 Main menu"


def test_labels_without_a_shared_start_are_cut_at_the_end(screens):
    hours = (7, 9, 11, 13, 15)
    items = [f"{h:02d}:00-{h + 2:02d}:00 Measles-Rubella (MR) campaign" for h in hours]
    lines = screens.screen(Reply("ussd/centres", items=items), "en").split("\n")[1:6]
    assert [line[:13] for line in lines] == [f"{n} {h:02d}:00-{h + 2:02d}:00"
                                             for n, h in enumerate(hours, 1)]
    assert all(line.endswith(".") for line in lines)


def test_short_labels_are_left_whole(screens):
    items = ["Rampur", "Primary Health Centre Sitapur Nagar Khas Block 2"]
    lines = screens.screen(Reply("ussd/centres", items=items), "en").split("\n")
    assert lines[1] == "1 Rampur" and lines[2] == "2 " + items[1]


def test_a_non_gsm_item_makes_the_budget_80(screens):
    long_name = "Kendra Facade Road " + "x" * 50
    whole = screens.screen(Reply("ussd/centres", items=[long_name, "Rampur"]), "en")
    assert long_name in whole
    cut = screens.screen(Reply("ussd/centres", items=[long_name.replace("c", "ç"), "Rampur"]),
                         "en")
    assert gsm.units(cut) <= 80 and "1 Kendra" in cut and "." in cut


def test_translated_items_are_never_shortened(screens):
    as_data = screens.screen(Reply("ussd/long", items=["Add a person"], nav=False), "en")
    assert as_data.endswith("\n1 Add a.")
    with pytest.raises(ScreenTooLong):
        screens.screen(Reply("ussd/long", items=[T("ussd/add")], nav=False), "en")


def test_a_screen_that_cannot_fit_raises(screens):
    items = ["Centre " + "y" * 30] * 5
    with pytest.raises(ScreenTooLong, match="ussd/long"):
        screens.screen(Reply("ussd/long", items=items), "en")


# ---- keywords files ----


def _keywords(tmp_path: Path, en: str, hi: str = "") -> Path:
    files = {"en/keywords.txt": en}
    if hi:
        files.update({"hi/keywords.txt": hi, "hi/nav/more.txt": "और"})
    return _tree(tmp_path, files)


def test_keywords_file_lines_map_aliases_to_commands(tmp_path):
    text = "# comment\nBOOK: Book, buk  # trailing comment\n\nYES: y , haan ji\n"
    root = _keywords(tmp_path, text)
    aliases = Templates.load(["en"], root=root).aliases("en")
    assert aliases["buk"] == "BOOK" and aliases["y"] == "YES" and aliases["haan ji"] == "YES"
    assert aliases["status"] == "STATUS"


@pytest.mark.parametrize("text, message", [
    ("BOOK: b\nCANCEL: b\n", "'b' already means BOOK"),
    ("STOP: start\n", "'start' already means START"),
    ("BOOKING: b\n", "expected `COMMAND: alias"),
    ("book b\n", "expected `COMMAND: alias"),
])
def test_keywords_file_defects_fail_at_load(tmp_path, text, message):
    with pytest.raises(TemplateError, match=message):
        Templates.load(["en"], root=_keywords(tmp_path, text))


def test_an_alias_meaning_two_commands_in_two_languages_fails_at_load(tmp_path):
    root = _keywords(tmp_path, "STOP: band\n", "START: band\n")
    with pytest.raises(TemplateError, match="'band' means STOP in en but START in hi"):
        Templates.load(["en", "hi"], root=root)


def test_arabic_keyboard_letters_match_urdu_aliases(templates):
    assert templates.aliases("ur")[fold("بك")] == "BOOK"  # Arabic kaf typed for Urdu keheh
