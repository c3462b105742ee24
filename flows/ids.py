"""References and certificate ids: digits with a Verhoeff check digit.

A reference is 10 digits, shown as two groups of five (`48213 90575`); a certificate id is
12 digits, shown as three groups of four (`4821 3905 7610`). The last digit of each is a
Verhoeff check digit, which catches every single-digit substitution and every swap of two
adjacent digits: the typos people make on a keypad.

A reference always starts with 1-5. Mobile numbers in India start with 6-9 and national
formats with a trunk prefix start with 0 (`0300 1234567` in Pakistan, `098765 43210` in
India), so `V <ref or mobile> <code>` can never read a ref as such a mobile number or the
other way round. (A Pakistani mobile typed without its 0 starts with 3: `target_kind` reads
any 10 digits starting 1-5 as a ref, so there a mobile is typed with its 0 or +92.)

Parsers accept spaces and dashes inside, and digits of any script; nothing else. Fresh digits come from
the shell (`secrets`): nothing here is random.
"""
from __future__ import annotations

import unicodedata

REF_DIGITS = 10
CERT_DIGITS = 12
REF_FIRST_DIGITS = "12345"
_SEPARATORS = str.maketrans("", "", " -")

# Verhoeff's tables: multiplication in the dihedral group D5, the position permutation, inverses.
_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0),
    (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
    (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)
_INV = (0, 4, 3, 2, 1, 5, 6, 7, 8, 9)


def _ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _checksum(digits: str) -> int:
    c = 0
    for i, ch in enumerate(reversed(digits)):
        c = _D[c][_P[i % 8][int(ch)]]
    return c


def check_digit(digits: str) -> str:
    """The Verhoeff check digit to append to `digits`."""
    if not _ascii_digits(digits):
        raise ValueError("check_digit() takes digits only")
    return str(_INV[_checksum(digits + "0")])


def is_valid(digits: str) -> bool:
    """True when the last digit of `digits` is the Verhoeff check digit of the rest."""
    return len(digits) >= 2 and _ascii_digits(digits) and _checksum(digits) == 0


def fold_digits(text: str) -> str:
    """Any script's decimal digits (`४८`, `۴۸`) as ASCII digits; everything else unchanged."""
    return "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() else ch for ch in text)


def _compact(raw: str) -> str:
    return fold_digits((raw or "").strip().translate(_SEPARATORS))


# ---- references ----


def make_ref(nine_random_digits: str) -> str:
    """A reference from 9 random digits: the first folded into 1-5, then the check digit."""
    if len(nine_random_digits) != REF_DIGITS - 1 or not _ascii_digits(nine_random_digits):
        raise ValueError("make_ref() takes exactly 9 digits")
    # (d - 1) % 5 + 1 keeps 1-5 and maps 6-9 and 0 onto 1-4 and 5: two to one, still uniform.
    first = (int(nine_random_digits[0]) - 1) % 5 + 1
    body = str(first) + nine_random_digits[1:]
    return body + check_digit(body)


def parse_ref(raw: str) -> str | None:
    """The 10-digit ref in `raw` (spaces and dashes allowed inside), or None."""
    digits = _compact(raw)
    return digits if _ref_shaped(digits) and is_valid(digits) else None


def ref_problem(raw: str) -> str:
    """"" for a valid ref, "check_digit" for a mistyped one, "not_a_ref" for anything else."""
    digits = _compact(raw)
    if not _ref_shaped(digits):
        return "not_a_ref"
    return "" if is_valid(digits) else "check_digit"


def format_ref(ref: str) -> str:
    """`4821390575` -> `48213 90575` (anything else is returned unchanged)."""
    digits = _compact(ref)
    return f"{digits[:5]} {digits[5:]}" if _ref_shaped(digits) else ref


def target_kind(target: str) -> str:
    """How to read a `V` target: "ref", "mobile" (try it as a phone number) or "invalid".

    A ref-shaped target (10 digits starting 1-5) with a wrong check digit is "invalid", never
    a mobile: the vaccinator mistyped a ref.
    """
    digits = _compact(target)
    if _ref_shaped(digits):
        return "ref" if is_valid(digits) else "invalid"
    bare = digits[1:] if digits.startswith("+") else digits
    return "mobile" if 7 <= len(bare) <= 15 and _ascii_digits(bare) else "invalid"


def _ref_shaped(digits: str) -> bool:
    return len(digits) == REF_DIGITS and _ascii_digits(digits) and digits[0] in REF_FIRST_DIGITS


# ---- certificate ids ----


def make_cert(eleven_random_digits: str) -> str:
    """A certificate id: the 11 random digits and their check digit."""
    if len(eleven_random_digits) != CERT_DIGITS - 1 or not _ascii_digits(eleven_random_digits):
        raise ValueError("make_cert() takes exactly 11 digits")
    return eleven_random_digits + check_digit(eleven_random_digits)


def parse_cert(raw: str) -> str | None:
    """The 12-digit certificate id in `raw` (spaces and dashes allowed inside), or None."""
    digits = _compact(raw)
    return digits if len(digits) == CERT_DIGITS and is_valid(digits) else None


def format_cert(cert_id: str) -> str:
    """`482139057610` -> `4821 3905 7610`: groups of four, easy to read out and type back."""
    digits = _compact(cert_id)
    if len(digits) != CERT_DIGITS or not _ascii_digits(digits):
        return cert_id
    return " ".join(digits[i : i + 4] for i in range(0, CERT_DIGITS, 4))
