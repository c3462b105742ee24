"""References and certificate ids: Verhoeff check digits, parsing and display."""
from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows import ids

REF = "4821390575"
CERT = "482139057610"

# A fixed sample of refs and certificate ids, the same on every run.
_rng = random.Random(20261126)
SAMPLE_REFS = [ids.make_ref("".join(_rng.choices("0123456789", k=9))) for _ in range(300)]
SAMPLE_CERTS = [ids.make_cert("".join(_rng.choices("0123456789", k=11))) for _ in range(300)]


def substitutions(digits: str):
    for i, old in enumerate(digits):
        for new in "0123456789":
            if new != old:
                yield digits[:i] + new + digits[i + 1:]


def adjacent_swaps(digits: str):
    for i in range(len(digits) - 1):
        if digits[i] != digits[i + 1]:
            yield digits[:i] + digits[i + 1] + digits[i] + digits[i + 2:]


@pytest.mark.parametrize("digits, check", [("236", "3"), ("12345", "1"), ("142857", "0"),
                                           ("482139057", "5"), ("48213905761", "0")])
def test_check_digit_matches_published_verhoeff_values(digits, check):
    assert ids.check_digit(digits) == check
    assert ids.is_valid(digits + check)


def test_make_ref_keeps_the_random_digits_and_appends_the_check_digit():
    assert ids.make_ref("482139057") == REF


@pytest.mark.parametrize("first, expected", [("0", "5"), ("1", "1"), ("2", "2"), ("3", "3"),
                                             ("4", "4"), ("5", "5"), ("6", "1"), ("7", "2"),
                                             ("8", "3"), ("9", "4")])
def test_make_ref_folds_the_first_digit_into_1_to_5(first, expected):
    assert ids.make_ref(first + "12345678")[0] == expected


@given(st.text("0123456789", min_size=9, max_size=9))
def test_every_made_ref_is_a_valid_10_digit_ref_starting_1_to_5(nine):
    ref = ids.make_ref(nine)
    assert len(ref) == 10 and ref[0] in "12345"
    assert ids.parse_ref(ref) == ref


@pytest.mark.parametrize("bad", ["48213905", "4821390575a", "", "1234567890"])
def test_make_ref_refuses_anything_but_9_digits(bad):
    with pytest.raises(ValueError):
        ids.make_ref(bad)


def test_check_digit_catches_every_single_digit_substitution_in_refs():
    for ref in SAMPLE_REFS:
        for typo in substitutions(ref):
            assert ids.parse_ref(typo) is None, (ref, typo)
            assert ids.ref_problem(typo) in ("check_digit", "not_a_ref")


def test_check_digit_catches_every_adjacent_transposition_in_refs():
    for ref in SAMPLE_REFS:
        for typo in adjacent_swaps(ref):
            assert ids.parse_ref(typo) is None, (ref, typo)


def test_check_digit_catches_every_substitution_and_swap_in_certificate_ids():
    for cert in SAMPLE_CERTS:
        for typo in [*substitutions(cert), *adjacent_swaps(cert)]:
            assert ids.parse_cert(typo) is None, (cert, typo)


@pytest.mark.parametrize("raw", ["4821390575", "48213 90575", "48213-90575", " 4821-3905 75 ",
                                 "४८२१३ ९०५७५", "۴۸۲۱۳ ۹۰۵۷۵"])
def test_parse_ref_accepts_spaces_dashes_and_any_script_digits(raw):
    assert ids.parse_ref(raw) == REF
    assert ids.ref_problem(raw) == ""


@pytest.mark.parametrize("raw, problem", [
    ("48213 90576", "check_digit"),  # last digit mistyped
    ("48231 90575", "check_digit"),  # two digits swapped
    ("482139057", "not_a_ref"),  # 9 digits
    ("48213905750", "not_a_ref"),  # 11 digits
    ("48213 9057S", "not_a_ref"),  # a letter
    ("48213.90575", "not_a_ref"),  # only spaces and dashes are separators
    ("", "not_a_ref"),
    ("9876543210", "not_a_ref"),  # a mobile number, never a ref
])
def test_parse_ref_refuses_and_ref_problem_says_why(raw, problem):
    assert ids.parse_ref(raw) is None
    assert ids.ref_problem(raw) == problem


def test_a_number_starting_6_to_9_or_0_is_never_a_ref_even_with_a_valid_check_digit():
    for first in "06789":
        body = first + "82139057"
        digits = body + ids.check_digit(body)
        assert ids.is_valid(digits)
        assert ids.parse_ref(digits) is None
        assert ids.ref_problem(digits) == "not_a_ref"


def test_format_ref_shows_two_groups_of_five():
    assert ids.format_ref(REF) == "48213 90575"
    assert ids.format_ref("48213-90575") == "48213 90575"
    assert ids.format_ref("12") == "12"


@pytest.mark.parametrize("target, kind", [
    ("4821390575", "ref"),
    ("4821390576", "invalid"),  # a mistyped ref is not read as a mobile
    ("9876543210", "mobile"),
    ("+919876543210", "mobile"),
    ("09876543210", "mobile"),
    ("03001234567", "mobile"),
    ("12345", "invalid"),
    ("98765abcde", "invalid"),
    ("", "invalid"),
])
def test_target_kind_tells_refs_from_mobiles(target, kind):
    assert ids.target_kind(target) == kind


def test_make_cert_appends_the_check_digit():
    assert ids.make_cert("48213905761") == CERT
    with pytest.raises(ValueError):
        ids.make_cert("4821390576")


@pytest.mark.parametrize("raw", [CERT, "4821 3905 7610", "4821-3905-7610", "४८२१ ३९०५ ७६१०"])
def test_parse_cert_accepts_spaces_and_dashes(raw):
    assert ids.parse_cert(raw) == CERT


@pytest.mark.parametrize("raw", ["482139057611", "48213905761", "4821390575", "4821 3905 761O"])
def test_parse_cert_refuses_wrong_check_digit_or_length(raw):
    assert ids.parse_cert(raw) is None


def test_format_cert_shows_three_groups_of_four():
    assert ids.format_cert(CERT) == "4821 3905 7610"
    assert ids.format_cert("123") == "123"
