"""Translated texts: SMS bodies, USSD screens and command keywords from templates_sms/<lang>/."""
from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from string import Formatter
from typing import Any, Iterable, Mapping

from flows.base import Reply, T

from . import gsm

ROOT = Path(__file__).resolve().parent.parent / "templates_sms"
FALLBACK = "en"
KEYWORDS_FILE = "keywords.txt"

# The canonical (English) keywords; every language's aliases point at one of these.
COMMANDS = ("BOOK", "STATUS", "CODE", "CANCEL", "CERT", "NOTME", "LANG", "STOP", "START",
            "HELP", "CHECK", "V", "VERIFY", "DONE", "TODAY", "YES")

USSD_GSM7_BUDGET = 160  # characters on an all-GSM-7-basic screen (182 septets less a margin)
USSD_UCS2_BUDGET = 80  # UTF-16 code units on any other screen
PAGE_SIZE_GSM7 = 5
PAGE_SIZE_UCS2 = 3  # a UCS-2 screen has half the room
MORE, BACK, MAIN = "98", "0", "00"  # navigation keys (DESIGN 4.2)
NAV_TEMPLATES = ("nav/more", "nav/back", "nav/main")
MIN_LABEL = 6  # a shortened data label keeps at least this many characters, the mark included
CUT_MARK = "."

# Arabic-keyboard letters that Urdu keyboards type differently; folded so either one matches.
_URDU_FORMS = str.maketrans({"\u0643": "\u06a9", "\u064a": "\u06cc", "\u0649": "\u06cc",
                             "\u0647": "\u06c1"})


class TemplateError(Exception):
    """A template is missing, malformed, or lacks a parameter."""


class ScreenTooLong(TemplateError):
    """A USSD screen exceeds its budget even with its data labels shortened."""


def fold(word: str) -> str:
    """How a typed keyword is compared: NFC, case-folded, Arabic letter variants unified."""
    return unicodedata.normalize("NFC", word.strip()).casefold().translate(_URDU_FORMS)


@dataclass(frozen=True, repr=False)
class Templates:
    """Every template of the configured languages, read once at start-up."""

    _languages: tuple[str, ...]
    _texts: Mapping[str, Mapping[str, str]]  # lang -> template id -> text
    _aliases: Mapping[str, Mapping[str, str]]  # lang -> folded keyword -> canonical keyword
    _page_sizes: dict = field(default_factory=dict, compare=False)  # lang -> items per page

    @classmethod
    def load(cls, languages: Iterable[str], root: Path | str = ROOT) -> "Templates":
        """Read templates_sms/<lang>/**/*.txt and <lang>/keywords.txt; raise on any defect."""
        root = Path(root)
        languages = tuple(languages)
        texts, aliases = {}, {}
        for lang in dict.fromkeys((*languages, FALLBACK)):
            folder = root / lang
            if not folder.is_dir():
                if lang == FALLBACK and lang not in languages:
                    continue
                raise TemplateError(f"no templates for language {lang!r} in {folder}")
            texts[lang] = _read_folder(folder)
            aliases[lang] = _read_keywords(folder / KEYWORDS_FILE)
        _check_shared_aliases({lang: aliases[lang] for lang in languages})
        return cls(languages, texts, aliases)

    @property
    def languages(self) -> tuple[str, ...]:
        return self._languages

    def ids(self, lang: str) -> list[str]:
        """The template ids the language itself defines (no fallback), sorted."""
        return sorted(self._texts.get(lang, {}))

    def fields(self, template_id: str, lang: str) -> frozenset[str]:
        """The parameter names a template uses."""
        return _fields(self._text(template_id, lang), template_id)

    def render(self, template_id: str, lang: str, params: Mapping[str, Any] | None = None) -> str:
        """The template in `lang` (or English when `lang` lacks it) with its {named} params."""
        params = params or {}
        text = self._text(template_id, lang)
        try:
            missing = _names(text) - params.keys()
        except TemplateError:  # malformed: say which template
            missing = _fields(text, template_id) - params.keys()
        if missing:
            missing = sorted(missing)
            raise TemplateError(f"template {template_id!r} ({lang}) needs parameter(s) "
                                f"{', '.join(missing)}")
        return text.format_map(params)

    def sms(self, template_id: str, lang: str,
            params: Mapping[str, Any] | None = None) -> tuple[str, str, int]:
        """(body, "gsm7" or "ucs2", number of SMS parts)."""
        body = self.render(template_id, lang, params)
        return body, gsm.encoding(body), gsm.segments(body)

    def page_size(self, lang: str) -> int:
        """Items per USSD page: 5 when the language's navigation words are GSM-7, else 3."""
        size = self._page_sizes.get(lang)
        if size is None:  # worked out once per language: every screen asks
            nav = "".join(self._text(t, lang) for t in NAV_TEMPLATES)
            size = self._page_sizes[lang] = (PAGE_SIZE_GSM7 if gsm.is_gsm7_basic(nav)
                                             else PAGE_SIZE_UCS2)
        return size

    def screen(self, reply: Reply, lang: str) -> str:
        """A USSD screen (without CON/END) within budget; long data labels are shortened."""
        head = [self.render(reply.hint, lang, reply.params)] if reply.hint else []
        text = self.render(reply.template, lang, reply.params)
        head += [text] if text else []
        size = self.page_size(lang)
        last_page = max(len(reply.items) - 1, 0) // size
        first = min(max(reply.page, 0), last_page) * size
        labels = [(self.render(i.template, lang, i.params), False) if isinstance(i, T)
                  else (" ".join(str(i).split()), True) for i in reply.items[first:first + size]]
        tail = []
        if first + size < len(reply.items):  # shown even without nav: a list is never cut
            tail.append(f"{MORE} {self.render('nav/more', lang)}")
        if reply.nav:
            tail.append(f"{BACK} {self.render('nav/back', lang)}  "
                        f"{MAIN} {self.render('nav/main', lang)}")
        data = [label for label, is_data in labels if is_data]
        longest, alike = max(map(len, data), default=0), _shared_start(data)
        for cap in (longest, *range(longest - 1, MIN_LABEL - 1, -1)):
            items = [f"{first + n} {_cut(label, cap, alike) if is_data else label}"
                     for n, (label, is_data) in enumerate(labels, start=1)]
            body = "\n".join(head + items + tail)
            if _fits(body):
                return body
        raise ScreenTooLong(f"USSD screen {reply.template!r} ({lang}) is {_size(body)} "
                            f"characters, budget {_budget(body)}, even with short labels")

    def aliases(self, lang: str) -> dict[str, str]:
        """Folded keyword -> canonical keyword: the English keywords plus `lang`'s aliases."""
        table = {fold(c): c for c in COMMANDS}
        table.update(self._aliases.get(lang, {}))
        return table

    def keywords(self) -> dict[str, str]:
        """Aliases of every configured language together (load() proved they agree)."""
        table = {}
        for lang in self._languages:
            table.update(self.aliases(lang))
        return table

    def _text(self, template_id: str, lang: str) -> str:
        for source in (lang, FALLBACK):
            text = self._texts.get(source, {}).get(template_id)
            if text is not None:
                return text
        raise TemplateError(f"no template {template_id!r} for {lang!r} or {FALLBACK!r}")


def _read_folder(folder: Path) -> dict[str, str]:
    texts = {}
    for path in sorted(folder.rglob("*.txt")):
        template_id = path.relative_to(folder).with_suffix("").as_posix()
        if template_id == Path(KEYWORDS_FILE).stem:
            continue
        text = path.read_text(encoding="utf-8-sig").replace("\r\n", "\n")
        text = text[:-1] if text.endswith("\n") else text
        _fields(text, f"{folder.name}/{template_id}")  # malformed braces fail at start-up
        texts[template_id] = text
    return texts


def _fields(text: str, where: str) -> frozenset[str]:
    names = set()
    try:
        for _, name, _, _ in Formatter().parse(text):
            if name is None:
                continue
            base = name.split(".")[0].split("[")[0]
            if not base.isidentifier():
                raise ValueError(f"use a {{name}}, not {{{name}}}")
            names.add(base)
    except ValueError as exc:
        raise TemplateError(f"template {where!r}: {exc} "
                            f"(write {{{{ and }}}} for braces)") from None
    return frozenset(names)


@lru_cache(maxsize=4096)
def _names(text: str) -> frozenset[str]:
    """The parameter names of a template already checked at load (`_fields`), parsed once."""
    return _fields(text, "")


def _read_keywords(path: Path) -> dict[str, str]:
    """Lines `COMMAND: alias, alias`; `#` starts a comment; inner spaces are collapsed."""
    table: dict[str, str] = {}
    if not path.exists():
        return table
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{path.parent.name}/{path.name} line {number}"
        command, sep, words = line.partition(":")
        command = command.strip().upper()
        if not sep or command not in COMMANDS:
            raise TemplateError(f"{where}: expected `COMMAND: alias, alias` with a command "
                                f"from {', '.join(COMMANDS)}")
        for word in filter(None, (" ".join(fold(w).split()) for w in words.split(","))):
            claimed = table.get(word) or next((c for c in COMMANDS if fold(c) == word), command)
            if claimed != command:
                raise TemplateError(f"{where}: alias {word!r} already means {claimed}")
            table[word] = command
    return table


def _check_shared_aliases(aliases: Mapping[str, Mapping[str, str]]) -> None:
    """SMS commands are read in every language at once, so no alias may mean two things."""
    seen: dict[str, tuple[str, str]] = {}
    for lang, table in aliases.items():
        for word, command in table.items():
            other = seen.setdefault(word, (lang, command))
            if other[1] != command:
                raise TemplateError(f"keyword {word!r} means {other[1]} in {other[0]} "
                                    f"but {command} in {lang}")


def _shared_start(labels: list[str]) -> bool:
    """True when the labels begin with the same word(s), as in "Primary Health Centre X"."""
    return len(labels) > 1 and " " in os.path.commonprefix(labels)


def _cut(label: str, cap: int, alike: bool) -> str:
    """At most `cap` characters ending in the mark; alike labels keep their distinct end."""
    if len(label) <= cap:
        return label
    keep = cap - len(CUT_MARK)
    head = keep * 2 // 5 if alike else keep
    while head > 1 and _is_mark(label[head]):  # never strand a vowel sign
        head -= 1
    if not alike:
        return label[:head].rstrip() + CUT_MARK
    start = len(label) - (keep - head)
    while start < len(label) and _is_mark(label[start]):
        start += 1
    space = label.find(" ", start, start + (len(label) - start) // 2)
    if space != -1:  # begin the end part at a word
        start = space + 1
    return label[:head].rstrip() + CUT_MARK + label[start:]


def _is_mark(ch: str) -> bool:
    return unicodedata.category(ch) in ("Mn", "Mc")


def _size(body: str) -> int:
    return len(body) if gsm.is_gsm7_basic(body) else gsm.units(body)


def _budget(body: str) -> int:
    return USSD_GSM7_BUDGET if gsm.is_gsm7_basic(body) else USSD_UCS2_BUDGET


def _fits(body: str) -> bool:
    if gsm.is_gsm7_basic(body):
        return len(body) <= USSD_GSM7_BUDGET
    return gsm.units(body) <= USSD_UCS2_BUDGET
