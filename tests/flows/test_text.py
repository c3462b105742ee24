"""The small text helpers the flows share."""
from __future__ import annotations

from datetime import date

import pytest

from flows.text import clip, day_label, initials, language_name


@pytest.mark.parametrize("name, expected", [
    ("Asha Kumari", "A.K."),
    ("  asha   kumari devi ", "A.K.D."),
    ("आशा कुमारी", "आ.क."),
    ("D'Souza", "D."),
    ("", ""),
])
def test_initials(name, expected):
    assert initials(name) == expected


@pytest.mark.parametrize("day, expected", [
    (date(2026, 11, 27), "27 Nov"), (date(2027, 1, 3), "3 Jan"), (date(2026, 9, 30), "30 Sep"),
])
def test_day_label_is_short_and_the_same_in_every_locale(day, expected):
    assert day_label(day) == expected


@pytest.mark.parametrize("text, width, expected", [
    ("PHC Connaught Place", 40, "PHC Connaught Place"),
    ("Primary Health Centre Rampur", 12, "Primary Hea."),
    ("  Civil   Hospital ", 40, "Civil Hospital"),
    ("केंद्रीय अस्पताल", 5, "कें."),  # a vowel sign or nasal mark stays with its letter
    ("केंद्रीय अस्पताल", 6, "कें."),  # no half letter left by a virama
])
def test_clip(text, width, expected):
    assert clip(text, width) == expected
    assert len(clip(text, width)) <= width


def test_language_names_are_in_their_own_script():
    names = [language_name(c) for c in ("en", "hi", "ur", "xx")]
    assert names == ["English", "हिन्दी", "اردو", "xx"]
