"""Small pure text helpers shared by the flows: initials, day labels, shortened labels."""
from __future__ import annotations

import unicodedata
from datetime import date

# Fixed English month abbreviations: the same on every screen, whatever the server locale.
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
CUT_MARK = "."

# Each language's own name, in its own script: the language menu must be readable by
# someone who cannot read the current language.
ENDONYMS = {"en": "English", "hi": "हिन्दी", "ur": "اردو", "bn": "বাংলা", "ta": "தமிழ்",
            "te": "తెలుగు", "mr": "मराठी", "gu": "ગુજરાતી", "kn": "ಕನ್ನಡ", "ml": "മലയാളം",
            "pa": "ਪੰਜਾਬੀ", "or": "ଓଡ଼ିଆ", "sw": "Kiswahili"}


def initials(name: str) -> str:
    """"Asha Kumari" -> "A.K." (what a shared phone may show instead of a full name)."""
    return "".join(f"{word[0].upper()}." for word in name.split() if word[0].isalpha())


def day_label(d: date) -> str:
    """A short date such as "27 Nov"."""
    return f"{d.day} {MONTHS[d.month - 1]}"


def language_name(code: str) -> str:
    return ENDONYMS.get(code, code)


def clip(text: str, width: int) -> str:
    """Shorten to `width` characters ending in the cut mark, never splitting a letter."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    end = max(width - len(CUT_MARK), 1)
    while end > 1 and (_is_mark(text[end]) or _is_virama(text[end - 1])):
        end -= 1
    return text[:end].rstrip() + CUT_MARK


def _is_mark(ch: str) -> bool:
    return unicodedata.category(ch) in ("Mn", "Mc")


def _is_virama(ch: str) -> bool:
    """A virama joins its consonant to the next one; cut after it, half a letter remains."""
    return "VIRAMA" in unicodedata.name(ch, "")
