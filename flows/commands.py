"""SMS commands (DESIGN 4.3): a text and the keyword table -> a Command.

Keywords are case-insensitive and may have several words or any script; the longest keyword
at the start of the text wins. Extra spaces are ignored and digits of any script (`४८२१३`,
`۴۸۲۱۳`) are read as ASCII digits. The English keywords are always understood, whatever
the configured languages, so a vaccinator's `V` and `DONE` work on every phone.

Arguments, by command:
- `V <ref or mobile> <code>` (also `VERIFY`): the code is the last word; everything between
  the keyword and the code is the target, its spaces and dashes removed. A last word longer
  than 4 characters cannot be a code, so it stays part of the target and `code` is "" (the
  vaccinator forgot the code: `V 48213 90575`).
- `DONE <ref> [batch]`: the ref is the shortest run of leading digit-and-dash words that holds
  exactly 10 digits (`48213 90575`, `48213-90575`, `4821390575`); the words after it are the
  batch, as typed. Without such a run the target is the leading digit words (or the first
  word) and will not read as a ref.
- any other command: `target` is all the arguments with spaces and dashes removed
  (`CHECK 4821 3905 7610` -> `482139057610`, `NOTME 48213 90575` -> `4821390575`).
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Mapping

from .ids import fold_digits

NAMES = ("book", "status", "code", "cancel", "cert", "notme", "lang", "stop", "start", "help",
         "check", "verify", "done", "today", "yes")
# Keywords understood in every language, on top of the configured aliases.
ENGLISH = {**{name: name for name in NAMES}, "v": "verify"}

MAX_CODE_CHARS = 4
REF_DIGITS = 10
_SEPARATORS = str.maketrans("", "", " -")
_TRAILING = ".,:;!?"  # "HELP?" and "V:" still name the command
_DIGIT_WORD = re.compile(r"[0-9-]+")
_USSD = re.compile(r"[*#][0-9*#]*[0-9][0-9*#]*")
# Arabic-keyboard letters that Urdu keyboards type differently; folded so either one matches.
_URDU_FORMS = str.maketrans({"\u0643": "\u06a9", "\u064a": "\u06cc", "\u0649": "\u06cc",
                             "\u0647": "\u06c1"})


@dataclass(frozen=True)
class Command:
    """One SMS read as a command: the canonical name ("" when unknown) and its arguments."""

    name: str
    args: tuple[str, ...]
    raw: str
    target: str = ""  # the ref, mobile or certificate id, spaces and dashes removed
    code: str = ""  # V only: the security code as typed
    batch: str = ""  # DONE only: the vaccine batch, as typed


def fold(word: str) -> str:
    """How a typed keyword is compared: NFC, case-folded, Arabic letter variants unified."""
    return unicodedata.normalize("NFC", word.strip()).casefold().translate(_URDU_FORMS)


def parse(text: str, aliases: Mapping[str, str]) -> Command:
    """Read `text` with `aliases` (keyword -> canonical name, any case) plus English."""
    words = fold_digits(unicodedata.normalize("NFC", text or "")).split()
    table = _table(aliases)
    longest = max((len(k.split()) for k in table), default=1)
    for size in range(min(longest, len(words)), 0, -1):
        name = table.get(fold(" ".join(words[:size])).rstrip(_TRAILING))
        if name:
            return _with_args(name, tuple(words[size:]), text)
    return Command("", tuple(words), text)


def looks_like_ussd(text: str) -> bool:
    """True for texts like `*384*123#` (someone typed a USSD code into an SMS)."""
    return bool(_USSD.fullmatch("".join((text or "").split())))


def _table(aliases: Mapping[str, str]) -> dict[str, str]:
    """Folded keyword -> canonical name; `V` and `VERIFY` (any case) both mean verify."""
    table = dict(ENGLISH)
    for keyword, name in aliases.items():
        canonical = fold(name)
        table[" ".join(fold(keyword).split())] = ENGLISH.get(canonical, canonical)
    return table


def _with_args(name: str, args: tuple[str, ...], raw: str) -> Command:
    if name == "verify":
        has_code = len(args) >= 2 and len(args[-1]) <= MAX_CODE_CHARS
        words = args[:-1] if has_code else args
        return Command(name, args, raw, target=_compact(words),
                       code=args[-1] if has_code else "")
    if name == "done":
        ref_words, batch = _split_done(args)
        return Command(name, args, raw, target=_compact(ref_words), batch=" ".join(batch))
    return Command(name, args, raw, target=_compact(args))


def _split_done(args: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(ref words, batch words) of `DONE <ref> [batch]`."""
    digits = 0
    for count, word in enumerate(args, start=1):
        if not _DIGIT_WORD.fullmatch(word):
            break
        digits += sum(ch.isdigit() for ch in word)
        if digits == REF_DIGITS:
            return args[:count], args[count:]
        if digits > REF_DIGITS:
            break
    run = 0
    while run < len(args) and _DIGIT_WORD.fullmatch(args[run]):
        run += 1
    run = max(run, min(len(args), 1))
    return args[:run], args[run:]


def _compact(words: tuple[str, ...]) -> str:
    return "".join(words).translate(_SEPARATORS)
