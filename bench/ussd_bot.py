"""The citizens of bench/ussd.py: a population of handsets with a realistic mix of sessions.

Each session has a goal and answers the screen it was shown (English screens), so the hops
are the ones the real menu asks for:

- book, first dial from a new number: language, Book, name, year, gender, area code, centre,
  date, slot, confirm (11 hops);
- book again from a number with people on it: "Add a person", then the same;
- a booking dropped half way (the network ends it), and the number dialling again later and
  continuing where it stopped;
- My appointments, Send my code again, Cancel (2-4 hops);
- now and then a wrong choice (the screen again, with a hint), and now and then a hop the
  network repeats (same session, same text).

`Citizens.next_hop()` picks a session ready for its next hop (a random one, like people
typing at their own pace) or starts a new one while fewer than `active` are in progress.
"""
from __future__ import annotations

import random
import re
import urllib.parse
from collections import Counter, deque
from dataclasses import dataclass, field

SERVICE_CODE = "*384*123#"
NAMES = ("Asha Devi", "Ravi Kumar", "Meena Iyer", "Arjun Singh", "Farah Ali", "Kiran Bala",
         "Imran Qureshi", "Sunita Rao", "Rahul Patil", "Lakshmi Nair")
GOALS = (("book", 0.45), ("book_again", 0.12), ("view", 0.2), ("code", 0.13), ("cancel", 0.1))
DROP_SHARE = 0.15  # booking sessions the network drops half way
WRONG_SHARE = 0.1  # sessions with one wrong choice on the main menu
REPEAT_SHARE = 0.02  # hops the network sends twice
RESUME_WITHIN = 540.0  # seconds: a dropped number dials again well inside the 10 minutes
_ADD = re.compile(r"^(\d+) Add a person$", re.M)


@dataclass
class Number:
    phone: str
    persons: int = 0
    live: int = 0
    busy: bool = False


@dataclass
class Session:
    number: Number
    goal: str
    sid: str
    drop_at: int | None
    wrong: bool
    inputs: list[str] = field(default_factory=list)
    screen: str = ""
    hops: int = 0
    repeat: bool = False
    repeating: bool = False


class Citizens:
    """Handsets and their sessions; a hop source for `bench.ussd_load`."""

    def __init__(self, areas: list[str], *, seed: int = 7, active: int = 40, first: int = 0,
                 clock=None):
        self.rng = random.Random(seed)
        self.areas = areas
        self.active = active
        self.clock = clock
        self.next_number = first
        self.ready: list[Session] = []
        self.running = 0
        self.numbers: list[Number] = []
        self.dropped: deque[tuple[float, Number]] = deque()
        self.kinds: Counter = Counter()
        self.confused: list[str] = []
        self.outcomes: Counter = Counter()

    # ---- the source interface ----
    def next_hop(self):
        if self.ready and (self.running >= self.active or self.rng.random() < 0.9):
            session = self.ready.pop(self.rng.randrange(len(self.ready)))
        else:
            session = self._new_session()
        self.running += 1
        kind = self._advance(session)
        self.kinds[kind] += 1
        form = {"sessionId": session.sid, "serviceCode": SERVICE_CODE,
                "phoneNumber": session.number.phone, "networkCode": "40410",
                "text": "*".join(session.inputs)}
        body = urllib.parse.urlencode(form).encode()
        return body, lambda status, text: self._answered(session, status, text)

    # ---- sessions ----
    def _new_session(self) -> Session:
        goal, number = self._pick_goal()
        number.busy = True
        drop_at = None
        if goal == "book" and self.rng.random() < DROP_SHARE:
            drop_at = self.rng.randrange(4, 9)
        sid = f"ATUid_{self.rng.getrandbits(128):032x}"  # as Africa's Talking makes them
        return Session(number, goal, sid, drop_at, self.rng.random() < WRONG_SHARE)

    def _pick_goal(self) -> tuple[str, Number]:
        now = self._now()
        while self.dropped and now - self.dropped[0][0] > RESUME_WITHIN:
            self.dropped.popleft()
        if self.dropped and self.rng.random() < 0.5:
            _, number = self.dropped.popleft()
            if not number.busy:
                return "resume", number
        r, goal = self.rng.random(), "book"
        for name, share in GOALS:
            if r < share:
                goal = name
                break
            r -= share
        if goal != "book":
            want = (lambda n: n.persons < 4) if goal == "book_again" else (lambda n: n.live > 0)
            for _ in range(8):
                if not self.numbers:
                    break
                number = self.numbers[self.rng.randrange(len(self.numbers))]
                if not number.busy and want(number):
                    return ("book" if goal == "book_again" else goal), number
        return "book", self._fresh_number()

    def _fresh_number(self) -> Number:
        self.next_number += 1
        number = Number(f"+9197{self.next_number:08d}")
        self.numbers.append(number)
        return number

    def _advance(self, s: Session) -> str:
        """Put the session's next input in place; the kind of hop, for the mix."""
        if s.hops == 0:
            return "new session"
        if s.repeat:
            s.repeat, s.repeating = False, True
            return "repeated by the network"
        answer, kind = self._answer(s)
        s.inputs.append(answer)
        return kind

    def _answer(self, s: Session) -> tuple[str, str]:
        body = s.screen[4:]
        rng = self.rng
        if "Choose language" in body:
            return "1", "menu choice"
        if "booking is not finished" in body:
            return ("1" if s.goal == "resume" else "2"), "menu choice"
        if "1 Book vaccination" in body:
            if s.wrong:
                s.wrong = False
                return "7", "wrong choice"
            return {"book": "1", "resume": "1", "view": "2", "code": "3",
                    "cancel": "4"}[s.goal], "menu choice"
        if "Book for whom?" in body:
            return _ADD.search(body).group(1), "menu choice"
        if "full name" in body:
            return rng.choice(NAMES), "typed entry"
        if "year of birth" in body:
            return str(rng.randrange(1950, 2006)), "typed entry"
        if "Gender:" in body:
            return rng.choice("12"), "menu choice"
        if "PIN/area code" in body:
            return rng.choice(self.areas), "search (area code)"
        if "1 Confirm" in body:
            return "1", "confirm"
        if any(t in body for t in ("Choose a centre", "Choose a date", "Choose a time",
                                   "Your appointments", "Send the code for",
                                   "Cancel which appointment")):
            return "1", "pick from a list"
        if "1 Yes, cancel" in body:
            return "1", "confirm"
        raise AssertionError(f"no answer for screen {s.screen!r}")

    def _answered(self, s: Session, status: int, text: str) -> bool:
        """Read the answer; False when it is not a well-formed USSD screen."""
        self.running -= 1
        previous, s.screen = s.screen, text
        s.hops += 1
        if status != 200 or not text.startswith(("CON ", "END ")):
            self.outcomes[f"HTTP {status}"] += 1
            self._finish(s)
            return False
        if s.repeating:
            s.repeating = False
            if text != previous:  # a repeated hop must answer the same screen
                self.outcomes["repeat answered differently"] += 1
                self._finish(s)
                return False
        if text.startswith("END "):
            if "Booked" in text:
                s.number.persons += 1
                s.number.live += 1
                self.outcomes["booked"] += 1
            elif "Cancelled" in text:
                s.number.live -= 1
                self.outcomes["cancelled"] += 1
            else:
                self.outcomes["ended"] += 1
            self._finish(s)
            return True
        if s.drop_at is not None and s.hops >= s.drop_at:
            self.outcomes["dropped"] += 1
            self.dropped.append((self._now(), s.number))
            self._finish(s)
            return True
        if "no appointments" in text or "No free seats" in text or (
                "Book for whom?" in text and not _ADD.search(text)):
            self.outcomes["nothing to do"] += 1
            self._finish(s)
            return True
        try:
            self._answer(Session(s.number, s.goal, s.sid, None, s.wrong, screen=text))
        except AssertionError:
            self.confused.append(text)
            self._finish(s)
            return False
        s.repeat = self.rng.random() < REPEAT_SHARE
        self.ready.append(s)
        return True

    def _finish(self, s: Session) -> None:
        s.number.busy = False

    def _now(self) -> float:
        return self.clock() if self.clock else 0.0


class FloorHops:
    """Hops for the floor app: the same form fields and sizes, sessions of a few hops."""

    def __init__(self, seed: int = 7):
        self.rng = random.Random(seed)
        self.n = 0

    def next_hop(self):
        self.n += 1
        sid = f"ATUid_floor{self.rng.randrange(2000):08d}"
        text = "*".join(self.rng.choice(("1", "2", "110001", "Asha Devi", "1990"))
                        for _ in range(self.rng.randrange(0, 8)))
        form = {"sessionId": sid, "serviceCode": SERVICE_CODE,
                "phoneNumber": f"+9197{self.n % 100000:08d}", "networkCode": "40410", "text": text}
        return urllib.parse.urlencode(form).encode(), _floor_ok


def _floor_ok(status: int, text: str) -> bool:
    return status == 200 and text.startswith("CON ")
