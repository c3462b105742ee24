"""Phone numbers: raw input to E.164, and masking for logs."""
from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers

# Digits and the punctuation people and telcos put in numbers; letters are refused rather
# than read as a vanity number ("1-800-FLOWERS").
_ALLOWED = re.compile(r"^\+?[0-9 ()\-.]+$")


class InvalidPhone(ValueError):
    """Raised for input that is not a possible phone number."""


def normalise(raw: str, region: str) -> str:
    """Return `raw` as E.164 (`+919812345210`), reading national numbers in `region`."""
    return _normalise(raw or "", region or "")


@lru_cache(maxsize=65536)  # parsing costs more than the rest of a USSD hop's validation
def _normalise(raw: str, region: str) -> str:
    text = raw
    # A '+' sent unescaped in a form body decodes to a space.
    if text.startswith(" ") and text.strip()[:1].isdigit():
        text = "+" + text.strip()
    text = text.strip()
    if not text or not _ALLOWED.match(text):
        raise InvalidPhone(f"not a phone number: {mask(text)!s}")
    try:
        number = phonenumbers.parse(text, region.upper() if region else None)
    except phonenumbers.NumberParseException:
        raise InvalidPhone(f"not a phone number: {mask(text)}") from None
    # "Possible" (right length for the country), not "valid": the telco knows which number
    # ranges exist better than our copy of the numbering plan does.
    if not phonenumbers.is_possible_number(number):
        raise InvalidPhone(f"not a possible phone number: {mask(text)}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask(phone: str) -> str:
    """Hide the middle of a number for logs: `+919812345210` -> `+9198*****210`."""
    phone = phone or ""
    if len(phone) > 8:
        return phone[:5] + "*" * (len(phone) - 8) + phone[-3:]
    if len(phone) > 2:
        return phone[:1] + "*" * (len(phone) - 1)
    return "*" * len(phone)
