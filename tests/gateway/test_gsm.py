"""GSM 03.38 encoding and SMS part counts at the boundaries that cost money."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from gateway import gsm

EMOJI = "\U0001F600"  # outside the BMP: a surrogate pair, 2 UTF-16 units


@pytest.mark.parametrize("text, parts", [
    ("", 1),
    ("a" * 160, 1),
    ("a" * 161, 2),
    ("a" * 306, 2),
    ("a" * 307, 3),
    ("a" * 158 + "€", 1),  # 160 septets
    ("a" * 159 + "€", 2),  # 161 septets
    ("a" * 151 + "€" + "a" * 153, 2),  # the escape pair ends part 1 exactly
    ("a" * 152 + "€" + "a" * 152, 3),  # 306 septets, but the pair may not straddle 153
    ("ê" * 70, 1),
    ("ê" * 71, 2),
    ("ê" * 134, 2),
    ("ê" * 135, 3),
    ("ê" * 68 + EMOJI, 1),  # 70 units
    ("ê" * 69 + EMOJI, 2),  # 71 units
    ("ê" * 65 + EMOJI + "ê" * 67, 2),  # the pair ends part 1 exactly
    ("ê" * 66 + EMOJI + "ê" * 67, 3),  # the pair may not straddle 67
])
def test_segments_at_the_boundaries(text, parts):
    assert gsm.segments(text) == parts


@pytest.mark.parametrize("text, expected", [
    ("Hello, Ref 48213 90576 Code 1234.", "gsm7"),
    ("é è Ç Ñ ü à ß @ £ ¥ § ¿ ¡", "gsm7"),
    ("Price 5€ {x} [y] ~|^\\", "gsm7"),
    ("It’s", "ucs2"),  # smart quote
    ("“quoted”", "ucs2"),
    ("a\tb", "ucs2"),
    ("ç", "ucs2"),  # only the capital Ç is in the table
    ("ê", "ucs2"),
    ("a – b", "ucs2"),  # en dash
    ("\x1b", "ucs2"),  # the escape code is not a character
    ("टीका", "ucs2"),
    ("ٹیکہ", "ucs2"),
    (EMOJI, "ucs2"),
])
def test_encoding_is_decided_by_every_character(text, expected):
    assert gsm.encoding(text) == expected


def test_one_smart_quote_turns_a_full_message_into_three_parts():
    plain = "Don't forget your appointment. " * 6
    assert gsm.segments(plain[:160]) == 1
    assert gsm.segments(plain[:159].replace("'", "’")) == 3


def test_extension_characters_count_two_septets():
    assert gsm.septets("a€") == 3
    assert gsm.septets("{}[]~|^\\") == 16
    assert gsm.septets("é") == 1


def test_septets_refuses_text_outside_the_alphabet():
    with pytest.raises(ValueError, match="GSM"):
        gsm.septets("ç")


def test_units_count_utf16_code_units():
    assert gsm.units("टीका") == 4
    assert gsm.units(EMOJI) == 2


@pytest.mark.parametrize("text, basic", [
    ("1 Book vaccination\n2 My appointments", True),
    ("é Ñ ü @ £", True),
    ("Cost 5€", False),
    ("[1] Book", False),
    ("a\tb", False),
    ("It’s", False),
    ("हिन्दी", False),
])
def test_ussd_screens_may_use_only_the_basic_table(text, basic):
    assert gsm.is_gsm7_basic(text) is basic


@given(st.text(alphabet="a€[é\n", max_size=500))
def test_gsm_parts_never_hold_more_than_153_septets(text):
    parts, size = gsm.segments(text), gsm.septets(text)
    if size <= 160:
        assert parts == 1
    else:  # a part gives up at most one septet to keep an escape pair whole
        assert (parts - 1) * 152 < size <= parts * 153
