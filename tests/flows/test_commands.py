"""SMS command parsing (DESIGN 4.3): keywords in any language, refs typed with spaces."""
from __future__ import annotations

import pytest

from flows.commands import Command, looks_like_ussd, parse

# What the templates' keywords.txt files give: folded keyword -> canonical keyword.
ALIASES = {
    "v": "V", "verify": "VERIFY", "done": "DONE", "check": "CHECK", "notme": "NOTME",
    "not-me": "NOTME", "y": "YES",
    "सत्यापन": "V", "पूरा": "DONE", "आज": "TODAY", "जाँच": "CHECK", "मैंनहीं": "NOTME",
    "تصدیق": "V", "مکمل": "DONE", "ہوگیا": "DONE", "آج": "TODAY",
}


@pytest.mark.parametrize("text, name, target, code", [
    ("V 48213 90575 1234", "verify", "4821390575", "1234"),
    ("V 48213-90575 1234", "verify", "4821390575", "1234"),
    ("v 4821390575 1234", "verify", "4821390575", "1234"),
    ("  VERIFY   48213  90575   1234  ", "verify", "4821390575", "1234"),
    ("Verify 4821-3905-75 0042", "verify", "4821390575", "0042"),
    ("V +91 98765 43210 1234", "verify", "+919876543210", "1234"),
    ("V 098765-43210 1234", "verify", "09876543210", "1234"),
    ("V 48213 90575 123", "verify", "4821390575", "123"),  # a short code is a (wrong) code
    ("V 48213 90575", "verify", "4821390575", ""),  # forgot the code: 5 digits are no code
    ("V 4821390575", "verify", "4821390575", ""),
    ("V", "verify", "", ""),
    ("सत्यापन ४८२१३ ९०५७५ १२३४", "verify", "4821390575", "1234"),
    ("تصدیق ۴۸۲۱۳ ۹۰۵۷۵ ۱۲۳۴", "verify", "4821390575", "1234"),
])
def test_verify_takes_the_last_word_as_code_and_the_rest_as_target(text, name, target, code):
    command = parse(text, ALIASES)
    assert (command.name, command.target, command.code) == (name, target, code)
    assert command.raw == text


@pytest.mark.parametrize("text, target, batch", [
    ("DONE 48213 90575", "4821390575", ""),
    ("DONE 48213 90575 B-4471", "4821390575", "B-4471"),
    ("done 4821390575 4471", "4821390575", "4471"),  # a digits-only batch after the ref
    ("Done 48213-90575 Lot 7a", "4821390575", "Lot 7a"),  # batch kept as typed
    ("DONE 4821 3905 75 X9", "4821390575", "X9"),
    ("DONE 48213 9057 B12", "482139057", "B12"),  # 9 digits: not a ref, refused later
    ("DONE 482139057512", "482139057512", ""),
    ("DONE ABC", "ABC", ""),
    ("DONE", "", ""),
    ("पूरा ४८२१३ ९०५७५ B12", "4821390575", "B12"),
    ("مکمل 48213 90575", "4821390575", ""),
])
def test_done_reads_a_ref_typed_with_spaces_and_an_optional_batch(text, target, batch):
    command = parse(text, ALIASES)
    assert (command.name, command.target, command.batch) == ("done", target, batch)


@pytest.mark.parametrize("text, name, target", [
    ("CHECK 4821 3905 7610", "check", "482139057610"),
    ("check 4821-3905-7610", "check", "482139057610"),
    ("NOTME 48213 90575", "notme", "4821390575"),
    ("not-me 48213 90575", "notme", "4821390575"),
    ("मैंनहीं 48213 90575", "notme", "4821390575"),
    ("CANCEL 48213 90575", "cancel", "4821390575"),
    ("Book 110 001", "book", "110001"),
    ("LANG hi", "lang", "hi"),
    ("today", "today", ""),
    ("आज", "today", ""),
    ("آج", "today", ""),
    ("y", "yes", ""),
    ("HELP?", "help", ""),
    ("status", "status", ""),
])
def test_other_commands_take_all_arguments_as_target(text, name, target):
    command = parse(text, ALIASES)
    assert (command.name, command.target) == (name, target)


def test_english_keywords_work_without_any_aliases():
    assert parse("DONE 48213 90575", {}).name == "done"
    assert parse("v 48213 90575 1234", {}).name == "verify"


def test_unknown_text_has_no_name_and_keeps_its_words():
    assert parse("hello there", ALIASES) == Command("", ("hello", "there"), "hello there")
    assert parse("   ", ALIASES).name == ""


def test_arguments_keep_their_case():
    assert parse("DONE 4821390575 Ab-12", ALIASES).args == ("4821390575", "Ab-12")


def test_arabic_keyboard_letters_match_urdu_keywords():
    # "ہوگیا" typed with Arabic heh and yeh, as some Urdu keyboards do.
    assert parse("\u0647\u0648\u06af\u064a\u0627 4821390575", ALIASES).name == "done"


def test_multi_word_keywords_and_the_longest_match_win():
    aliases = {"not me": "notme", "cert": "cert", "cert check": "check"}
    assert parse("Not   Me 48213 90575", aliases).name == "notme"
    assert parse("not me 48213 90575", aliases).target == "4821390575"
    assert parse("CERT CHECK 4821 3905 7610", aliases).name == "check"
    assert parse("cert 48213 90575", aliases).name == "cert"


def test_the_templates_keyword_tables_are_understood():
    from gateway.templates import Templates

    keywords = Templates.load(("en", "hi", "ur")).keywords()
    assert parse("सत्यापन 48213 90575 1234", keywords).name == "verify"
    assert parse("مکمل 48213 90575", keywords).name == "done"
    assert parse("VERIFY 48213 90575 1234", keywords).name == "verify"


@pytest.mark.parametrize("text, ussd", [
    ("*384*123#", True), (" *384# ", True), ("*384*123", True), ("#123#", True),
    ("*384 * 12 #", True), ("V 48213 90575 1234", False), ("*", False), ("*#", False),
    ("384#", False), ("hello*384#", False), ("", False),
])
def test_looks_like_ussd(text, ussd):
    assert looks_like_ussd(text) is ussd
