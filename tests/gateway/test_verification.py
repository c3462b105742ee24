"""A vaccinator's V, DONE and TODAY, and the citizen's NOTME, end to end over the webhooks.

Each test books over USSD on a real HTTP server, reads the slip SMS the real worker sent
through the SDK to the fake Africa's Talking, and answers as a vaccinator or citizen would.
"""
from __future__ import annotations

import io
import logging
import re
from datetime import date, timedelta

import pytest

from flows.ids import format_ref, make_ref
from flows.text import day_label
from gateway import create_app, demo, importer, keys, operations, worker
from gateway.conversation import now_in
from gateway.effects import hour_of
from tests.fakes.fake_at import fake_at  # noqa: F401 (fixture)
from tests.fakes.network import CERT_RE, CODE_RE, REF_RE, LiveServer, Phone, option

CITIZEN = "+919876500001"
NEIGHBOUR = "+919876500002"
VACCINATOR_101 = "+919810000101"  # demo: Sunita Rao, Connaught Place UPHC (101)
VACCINATOR_102 = "+919810000102"  # demo: Imran Qureshi, Gole Market (102)
ALL_DAY = "00:00-23:59"
TOMORROWS_SLOT = "09:00-11:00"  # a demo slot at every centre, every day


class Gateway:
    """The served app, its services and the fake provider, with what a test does with them."""

    def __init__(self, server, services, fake):
        self.server, self.services, self.fake = server, services, fake
        self.worker_log_level = "WARNING"

    @property
    def today(self) -> date:
        return now_in(self.services).date()

    def phone(self, number: str) -> Phone:
        return Phone(self.server.url, number)

    def deliver(self) -> None:
        """Run the RQ worker until the queues are empty (burst)."""
        # Few sends in flight: a burst worker's job threads outlive it, and tests run it often.
        worker.work(self.services.config, concurrency=2, burst=True, services=self.services,
                    logging_level=self.worker_log_level)

    def sms(self, number: str, text: str) -> str:
        """Send one SMS as `number`, let the worker run, and return the last SMS it got back."""
        self.phone(number).sms(text)
        self.deliver()
        return self.last_text(number)

    def last_text(self, number: str) -> str:
        sent = self.fake.sent_to(number)
        assert sent, f"nothing was sent to {number}"
        return sent[-1].message

    def texts(self, number: str) -> list[str]:
        return [s.message for s in self.fake.sent_to(number)]

    def book(self, number: str = CITIZEN, name: str = "Asha Devi", day: date | None = None,
             slot: str = ALL_DAY) -> tuple[str, str]:
        """Book at centre 101 over USSD on `day` (default today); returns (ref, code) from the slip."""
        day = day or self.today
        phone = self.phone(number)
        screen = phone.dial()
        if "English" in screen:
            phone.answer(option(phone.screen, "English"))
        phone.answer("1")  # Book vaccination
        if "Add" in phone.screen:  # people are already registered on this number
            phone.answer(option(phone.screen, "Add"))
        phone.answer(name)
        phone.answer("1990")
        phone.answer("1")
        phone.answer("110001")
        phone.answer(option(phone.screen, "Connaught"))
        phone.answer(option(phone.screen, day_label(day)))
        phone.answer(option(phone.screen, slot))
        phone.answer("1")  # confirm
        assert phone.ended, phone.screen
        ref = re.search(r"(\d{5} \d{5})", phone.screen).group(1)
        self.deliver()
        slips = [t for t in self.texts(number) if REF_RE.search(t) and REF_RE.search(t).group(1) == ref]
        assert len(slips) == 1, self.texts(number)
        return ref, CODE_RE.search(slips[0]).group(1)

    def status(self, ref: str) -> str:
        compact = ref.replace(" ", "")
        owner = self.services.redis.get(keys.ref_owner(compact))
        return self.services.redis.hget(keys.appointment(owner, compact), "s")


@pytest.fixture
def gateway(app_config, rdb, fake_at):  # noqa: F811
    # Quiet hours off: a low-priority SMS (the no-show notice) goes out whenever the test runs.
    config = fake_at.configure(app_config, quiet_hours=(0, 0))
    app = create_app(config)
    services = app.extensions["teeka"]
    today = now_in(services).date()
    demo.load(services, today)
    # a slot that is open whenever the test runs, so "today" can always be booked
    rows = f"centre_id,date,vaccine,min_age,dose,slot,capacity\n101,{today},Covishield,18,1|2,{ALL_DAY},20\n"
    report = importer.import_csv(services.redis, "sessions", io.StringIO(rows))
    assert report.ok, report.bad
    with LiveServer(app) as server:
        yield Gateway(server, services, fake_at)
    services.redis.close()
    services.queue_redis.close()


def wrong(code: str) -> str:
    """A code that is not `code`."""
    return f"{(int(code) + 1) % 10000:04d}"


def unknown_ref(n: int) -> str:
    """A well-formed ref (valid check digit) that nobody booked."""
    return format_ref(make_ref(f"{n:09d}"))


# ---- other day ----


def test_a_code_for_tomorrow_is_told_other_day_and_the_dose_cannot_be_recorded(gateway):
    tomorrow = gateway.today + timedelta(days=1)
    ref, code = gateway.book(day=tomorrow, slot=TOMORROWS_SLOT)

    reply = gateway.sms(VACCINATOR_101, f"V {ref} {code}")
    assert "not today" in reply and day_label(tomorrow) in reply, reply
    assert "Asha" not in reply
    assert gateway.status(ref) == "booked"

    reply = gateway.sms(VACCINATOR_101, f"DONE {ref}")
    assert "not today" in reply
    assert not any(CERT_RE.search(t) for t in gateway.texts(CITIZEN))


# ---- V <citizen mobile> <code> ----


@pytest.mark.parametrize("typed", ["+91 98765 00001", "98765-00001", "09876500001"])
def test_v_with_the_citizens_mobile_finds_their_appointment_here_today(gateway, typed):
    ref, code = gateway.book()

    reply = gateway.sms(VACCINATOR_101, f"V {typed} {code}")
    assert "code OK" in reply and "Asha Devi" in reply and "1990" in reply, reply
    assert gateway.status(ref) == "verified"

    gateway.sms(VACCINATOR_101, f"DONE {ref}")
    assert CERT_RE.search(gateway.last_text(CITIZEN))


def test_v_with_a_mobile_that_holds_two_bookings_picks_the_one_whose_code_was_given(gateway):
    asha_ref, asha_code = gateway.book(name="Asha Devi")
    ravi_ref, ravi_code = gateway.book(name="Ravi Kumar")

    reply = gateway.sms(VACCINATOR_101, f"V 9876500001 {ravi_code}")
    assert "Ravi Kumar" in reply, reply
    assert gateway.status(ravi_ref) == "verified"
    assert gateway.status(asha_ref) == "booked"


def test_v_with_a_mobile_that_has_no_booking_here_today(gateway):
    gateway.book()
    reply = gateway.sms(VACCINATOR_101, "V 9876500077 1234")
    assert "no booking for that mobile" in reply

    # the same number's booking at another centre is not found from there either
    reply = gateway.sms(VACCINATOR_102, "V 9876500001 1234")
    assert "no booking for that mobile" in reply


# ---- NOTME ----


def test_notme_from_the_booking_number_freezes_the_certificate(gateway):
    ref, code = gateway.book()
    gateway.sms(VACCINATOR_101, f"V {ref} {code}")
    gateway.sms(VACCINATOR_101, f"DONE {ref}")
    cert = CERT_RE.search(gateway.last_text(CITIZEN)).group(1)

    reply = gateway.sms(NEIGHBOUR, f"NOTME {ref}")
    assert "Send NOTME from the number that booked" in reply
    assert "genuine" in gateway.sms(NEIGHBOUR, f"CHECK {cert}")

    reply = gateway.sms(CITIZEN, f"NOTME {ref}")
    assert "frozen" in reply
    assert "under review" in gateway.sms(NEIGHBOUR, f"CHECK {cert}")
    assert "already under review" in gateway.sms(CITIZEN, f"NOTME {ref}")
    alerts = gateway.services.redis.xrange(keys.alerts())
    assert [(a["kind"], a["ref"]) for _, a in alerts] == [("dispute", ref.replace(" ", ""))]
    assert "disputed" in gateway.sms(VACCINATOR_101, f"DONE {ref}")
    assert [row["ref"] for row in operations.disputes(gateway.services)] == [ref.replace(" ", "")]


def test_notme_before_any_dose_changes_nothing(gateway):
    ref, _ = gateway.book()
    assert "nothing to dispute" in gateway.sms(CITIZEN, f"NOTME {ref}")
    assert gateway.status(ref) == "booked"


# ---- wrong codes, locks and the hourly limit ----


def test_a_lock_alerts_the_operator_and_unlock_gives_five_fresh_tries(gateway):
    ref, code = gateway.book()
    for _ in range(5):
        gateway.phone(VACCINATOR_101).sms(f"V {ref} {wrong(code)}")
    gateway.deliver()
    assert any("now locked" in text for text in gateway.texts(VACCINATOR_101))  # replies go out in parallel
    alerts = gateway.services.redis.xrange(keys.alerts())
    assert [(a["kind"], a["ref"]) for _, a in alerts] == [("locked", ref.replace(" ", ""))]
    assert "locked" in gateway.sms(VACCINATOR_101, f"V {ref} {code}")

    assert operations.unlock(gateway.services, ref.replace(" ", "")).startswith("Unlocked")
    assert "Tries left: 4" in gateway.sms(VACCINATOR_101, f"V {ref} {wrong(code)}")
    assert "Asha Devi" in gateway.sms(VACCINATOR_101, f"V {ref} {code}")


def test_only_wrong_codes_count_toward_the_appointments_five_tries(gateway):
    ref, code = gateway.book()
    # failures that are not this appointment's wrong code: another centre, unknown refs
    for _ in range(3):
        assert "another centre" in gateway.sms(VACCINATOR_102, f"V {ref} {code}")
    for n in range(3):
        assert "no booking" in gateway.sms(VACCINATOR_101, f"V {unknown_ref(n)} {code}")
    for left in (4, 3, 2, 1):
        assert f"Tries left: {left}" in gateway.sms(VACCINATOR_101, f"V {ref} {wrong(code)}")
    assert "Asha Devi" in gateway.sms(VACCINATOR_101, f"V {ref} {code}")


def test_the_21st_failed_v_in_an_hour_is_refused_without_checking_the_code(gateway):
    ref, code = gateway.book()
    tomorrow_ref, tomorrow_code = gateway.book(number=NEIGHBOUR, day=gateway.today + timedelta(days=1),
                                               slot=TOMORROWS_SLOT)
    hour = hour_of(now_in(gateway.services))  # the vaccinator's count is kept per clock hour
    vaccinator = gateway.phone(VACCINATOR_101)
    # every kind of failure counts: wrong code, other day, unknown ref, a mistyped ref
    failures = [f"V {ref} {wrong(code)}"] * 2 + [f"V {tomorrow_ref} {tomorrow_code}"] * 6 \
        + [f"V {unknown_ref(n)} 1234" for n in range(6)] + ["V 48213 90574 1234"] * 6
    for text in failures:
        vaccinator.sms(text)
    gateway.deliver()
    replies = gateway.texts(VACCINATOR_101)
    assert len(replies) == 20 and not any("too many" in r for r in replies), replies
    if hour_of(now_in(gateway.services)) != hour:
        pytest.skip("the clock hour turned during the test; the count started again")

    reply = gateway.sms(VACCINATOR_101, f"V {ref} {code}")
    assert "too many failed attempts" in reply
    assert gateway.status(ref) == "booked"
    assert gateway.services.redis.hget(
        keys.appointment(CITIZEN, ref.replace(" ", "")), "w") == "2"  # the refusal checked nothing
    assert "no checked code" in gateway.sms(VACCINATOR_101, f"DONE {ref}")

    # another vaccinator is not held back by this one's failures
    assert "another centre" in gateway.sms(VACCINATOR_102, f"V {ref} {code}")


# ---- end-of-day sweep ----


def test_the_sweep_marks_unrecorded_past_appointments_no_show(gateway):
    today = gateway.today
    missed_ref, missed_code = gateway.book(name="Asha Devi")
    done_ref, done_code = gateway.book(name="Ravi Kumar")
    verified_ref, verified_code = gateway.book(number=NEIGHBOUR, name="Meena Lal")
    later_ref, _ = gateway.book(number=NEIGHBOUR, name="Kiran Lal", day=today + timedelta(days=1),
                                slot=TOMORROWS_SLOT)
    gateway.sms(VACCINATOR_101, f"V {done_ref} {done_code}")
    gateway.sms(VACCINATOR_101, f"DONE {done_ref}")
    gateway.sms(VACCINATOR_101, f"V {verified_ref} {verified_code}")  # verified, never DONE
    assert "stopped" in gateway.sms(NEIGHBOUR, "STOP")  # no reminders, so no no-show notice
    sent_to_neighbour = len(gateway.texts(NEIGHBOUR))

    # run as the day after today: today's appointments are now in the past
    assert operations.sweep_no_shows(gateway.services, today=today + timedelta(days=1)) == 2
    gateway.deliver()
    assert gateway.status(missed_ref) == "no_show"
    assert gateway.status(verified_ref) == "no_show"
    assert gateway.status(done_ref) == "vaccinated"
    assert gateway.status(later_ref) == "booked"

    notice = gateway.last_text(CITIZEN)
    assert "missed" in notice and day_label(today) in notice and "Connaught" in notice, notice
    records = [gateway.services.redis.hgetall(keys.message(m))
               for m in gateway.services.redis.lrange(keys.outbox(CITIZEN), 0, -1)]
    assert [r["priority"] for r in records if r["purpose"] == "no_show"] == ["low"]
    assert len(gateway.texts(NEIGHBOUR)) == sent_to_neighbour

    assert "no-show" in gateway.sms(VACCINATOR_101, f"V {missed_ref} {missed_code}")
    assert "no-show" in gateway.sms(VACCINATOR_101, f"DONE {verified_ref}")
    assert "no-show 2" in gateway.sms(VACCINATOR_101, "TODAY")

    # a second sweep finds nothing more and sends nothing more
    sent = gateway.fake.count()
    assert operations.sweep_no_shows(gateway.services, today=today + timedelta(days=1)) == 0
    gateway.deliver()
    assert gateway.fake.count() == sent


def test_the_sweep_leaves_todays_appointments_alone_until_the_day_is_over(gateway):
    ref, _ = gateway.book()
    assert operations.sweep_no_shows(gateway.services) == 0
    assert gateway.status(ref) == "booked"


def test_the_sweep_runs_as_a_worker_job(gateway):
    ref, _ = gateway.book()
    job = gateway.services.queue("default").enqueue("gateway.operations.sweep_job")
    gateway.deliver()
    assert job.get_status() == "finished" and job.return_value() == 0
    assert gateway.status(ref) == "booked"


# ---- TODAY ----


def test_today_counts_booked_verified_and_vaccinated_at_the_vaccinators_centre(gateway):
    refs = [gateway.book(name=name) for name in ("Asha Devi", "Ravi Kumar", "Meena Lal")]
    gateway.book(number=NEIGHBOUR, day=gateway.today + timedelta(days=1), slot=TOMORROWS_SLOT)
    (done_ref, done_code), (verified_ref, verified_code), _ = refs
    gateway.sms(VACCINATOR_101, f"V {done_ref} {done_code}")
    gateway.sms(VACCINATOR_101, f"DONE {done_ref}")
    gateway.sms(VACCINATOR_101, f"V {verified_ref} {verified_code}")

    reply = gateway.sms(VACCINATOR_101, "TODAY")
    assert f"today {day_label(gateway.today)}" in reply
    assert "booked 1, verified 1, vaccinated 1, no-show 0" in reply, reply
    assert "booked 0, verified 0, vaccinated 0, no-show 0" in gateway.sms(VACCINATOR_102, "TODAY")
    assert "not registered as a vaccinator" in gateway.sms(CITIZEN, "TODAY")


# ---- the code stays between the citizen and the vaccinator's eyes ----


# Incidental numbers in log lines that a 4-digit code could happen to equal.
_INCIDENTAL = re.compile(r"\d{4}-\d\d-\d\d[T ][\d:.+-]*"  # ISO timestamps (a year)
                         r"|\[\d\d/\w{3}/\d{4} [\d:]+\]"  # werkzeug's access-log time
                         r"|\d+\.\d+\.\d+\.\d+:\d+")  # host:port
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _mentions(text: str, code: str) -> bool:
    """True when `code` stands alone in `text` (not inside a longer number, id or timestamp)."""
    text = _INCIDENTAL.sub(" ", text)
    return re.search(rf"(?<![0-9A-Za-z]){code}(?![0-9A-Za-z])", text) is not None


class _Everything(logging.Handler):
    """Keeps every record of every logger: its message and any extra fields it carries."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        error = logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
        self.lines.append(f"{record.name} {record.getMessage()} {extra} {error}")


@pytest.fixture
def all_logs():
    """Every logger at DEBUG, captured once per record (at the root, and where propagation stops)."""
    handler = _Everything()
    root = logging.getLogger()
    loggers = [root] + [logging.getLogger(name) for name, lg in list(root.manager.loggerDict.items())
                        if isinstance(lg, logging.Logger)]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    for lg in [root] + [lg for lg in loggers if not lg.propagate]:
        lg.addHandler(handler)
    yield handler.lines
    for lg, level in saved:
        lg.setLevel(level)
        lg.removeHandler(handler)


def test_the_code_is_in_no_log_line_no_vaccinator_sms_and_no_stored_message(gateway, all_logs):
    gateway.worker_log_level = "DEBUG"
    ref, code = gateway.book()
    gateway.sms(VACCINATOR_101, f"V {ref} {wrong(code)}")
    gateway.sms(VACCINATOR_101, f"V 9876500001 {code}")
    gateway.sms(VACCINATOR_101, f"V {ref} {code}")
    gateway.sms(VACCINATOR_101, f"DONE {ref} B-4471")
    gateway.sms(VACCINATOR_101, "TODAY")
    gateway.sms(VACCINATOR_102, f"V {ref} {code}")
    gateway.sms(CITIZEN, f"NOTME {ref}")
    cert = CERT_RE.search(gateway.texts(CITIZEN)[-2]).group(1)

    # the capture sees our events, the worker's and the HTTP server's, and would see a code
    for source in ("teeka sms.in", "rq.worker", "werkzeug"):
        assert any(line.startswith(source) for line in all_logs), source
    assert _mentions(f"teeka sms.in {{'text': 'V {ref} {code}'}}", code)
    leaks = [line for line in all_logs if _mentions(line, code)]
    assert not leaks, leaks

    for number in (VACCINATOR_101, VACCINATOR_102):
        for text in gateway.texts(number):
            # what a reply legitimately carries may happen to contain the same 4 digits
            text = text.replace(ref, "").replace(cert, "").replace("1990", "")
            assert not _mentions(text, code), text

    r = gateway.services.redis
    bodies = {m: r.hget(keys.message(m), "body") for m in r.zrange(keys.messages_index(), 0, -1)}
    slip = next(b for b in bodies.values() if "Ref" in b and "Code" in b)
    assert "Code ####" in slip
    for body in bodies.values():
        assert not _mentions(body.replace(ref, "").replace(cert, "").replace("1990", ""), code), body
