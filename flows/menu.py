"""What every USSD screen shares: screen names, navigation keys, the main menu, paging."""
from __future__ import annotations

from enum import StrEnum

from .base import Context, Outcome, Reply
from .ids import fold_digits
from .text import clip, initials

BACK, MAIN, MORE = "0", "00", "98"  # navigation keys (DESIGN 4.2, contract)
DEFAULT_PAGE_SIZE = 5
CENTRE_WIDTH = 40  # characters of a centre's name inside a screen's text
INITIALS_WIDTH = 12  # "V.N.L.N.R.K.": a long name's initials, cut beyond that
VACCINE_WIDTH = 20

HINT_INVALID = "ussd/hint_invalid"


class Screen(StrEnum):
    """Where a USSD conversation stands; stored in the state under "s" as is."""

    LANGUAGE = "lang"
    RESUME = "resume"
    MENU = "menu"
    # booking
    PERSON = "person"
    NAME = "name"
    YEAR = "year"
    GENDER = "gender"
    AREA = "area"
    CENTRES = "centres"
    DATES = "dates"
    SLOTS = "slots"
    CONFIRM = "confirm"
    # my appointments, send my code, cancel
    NO_APPOINTMENTS = "none"
    APPOINTMENTS = "appts"
    CANCEL = "cancel"


def main_menu(lang: str, hint: str = "") -> Outcome:
    return Outcome({"s": Screen.MENU, "l": lang}, Reply("ussd/main_menu", hint=hint, nav=False))


def keyed(text: str) -> str:
    """The input as typed, trimmed, with any script's digits read as ASCII digits."""
    return fold_digits(text.strip())


def choice(text: str, count: int) -> int | None:
    """The 1-based item number `text` picks among `count` items, or None."""
    if not (text.isascii() and text.isdigit()) or text.startswith("0") or text == MORE:
        return None
    number = int(text)
    return number if number <= count else None


def page_size(ctx: Context, lang: str) -> int:
    return ctx.page_size.get(lang, DEFAULT_PAGE_SIZE)


def short_initials(name: str) -> str:
    return clip(initials(name), INITIALS_WIDTH)


def centre_width(ctx: Context, lang: str) -> int:
    """Room for a centre's name in a screen's text: half in a UCS-2 language (smaller pages)."""
    return CENTRE_WIDTH if page_size(ctx, lang) >= DEFAULT_PAGE_SIZE else CENTRE_WIDTH // 2


def on_page(state: dict, page: int) -> dict:
    """The state showing `page` of its list (page 0 is not stored)."""
    moved = {k: v for k, v in state.items() if k != "g"}
    if page > 0:
        moved["g"] = page
    return moved


def turn_page(state: dict, text: str, count: int, size: int) -> dict | None:
    """The state after `98` (next page) or `0` (previous page) on a list, else None."""
    page = state.get("g", 0)
    if text == MORE and (page + 1) * size < count:
        return on_page(state, page + 1)
    if text == BACK and page > 0:
        return on_page(state, page - 1)
    return None


def clamp_page(state: dict, count: int, size: int) -> dict:
    """Keep the stored page inside a list that may have shrunk since it was shown."""
    last = max(count - 1, 0) // size
    return on_page(state, min(state.get("g", 0), last))
