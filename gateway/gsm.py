"""GSM 03.38 alphabet: which encoding a text needs and how many SMS parts it costs."""
from __future__ import annotations

# The basic table in code-point order (3GPP TS 23.038 6.2.1); 0x1B is ESC, not a character.
_BASIC_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
assert len(_BASIC_TABLE) == 128

BASIC = frozenset(_BASIC_TABLE) - {"\x1b"}
# Each costs two septets (ESC + code); handsets and some telcos' USSD gateways mangle them.
EXTENSION = frozenset("\x0c^{}\\[~]|€")
_GSM7_ALL = BASIC | EXTENSION

GSM7 = "gsm7"
UCS2 = "ucs2"

GSM7_SINGLE, GSM7_PART = 160, 153  # septets: one message, one part of a concatenated one
UCS2_SINGLE, UCS2_PART = 70, 67  # UTF-16 code units, likewise


def encoding(text: str) -> str:
    """"gsm7" when every character is in the basic or extension table, else "ucs2"."""
    return GSM7 if _GSM7_ALL.issuperset(text) else UCS2


def is_gsm7_basic(text: str) -> bool:
    """True when every character is in the basic table (what a USSD screen may use)."""
    return BASIC.issuperset(text)


def septets(text: str) -> int:
    """GSM-7 length: extension characters count 2; raises ValueError for non-GSM text."""
    return sum(_septet_costs(text))


def units(text: str) -> int:
    """UCS-2 length in UTF-16 code units (a character outside the BMP counts 2)."""
    return sum(_unit_costs(text))


def length(text: str) -> int:
    """The length that counts against the budget of the text's encoding."""
    return septets(text) if encoding(text) == GSM7 else units(text)


def segments(text: str) -> int:
    """Number of SMS parts; an escape pair or a surrogate pair is never split across parts."""
    if encoding(text) == GSM7:
        return _parts(_septet_costs(text), GSM7_SINGLE, GSM7_PART)
    return _parts(_unit_costs(text), UCS2_SINGLE, UCS2_PART)


def _septet_costs(text: str) -> list[int]:
    costs = []
    for ch in text:
        if ch in BASIC:
            costs.append(1)
        elif ch in EXTENSION:
            costs.append(2)
        else:
            raise ValueError(f"{ch!r} is not in the GSM 03.38 alphabet")
    return costs


def _unit_costs(text: str) -> list[int]:
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def _parts(costs: list[int], single: int, part: int) -> int:
    """Greedy packing of indivisible characters into parts of `part` units."""
    if sum(costs) <= single:
        return 1
    count, used = 1, 0
    for cost in costs:
        if used + cost > part:
            count, used = count + 1, 0
        used += cost
    return count
