"""A citizen books and manages appointments by plain SMS, over real HTTP with a real Redis,
RQ worker and SDK against the fake provider; reminders the day before."""
from __future__ import annotations

import dataclasses
import io
from datetime import timedelta

import pytest

from gateway import create_app, demo, importer, keys, operations, outbox, worker
from gateway.conversation import now_in
from gateway.services import QUEUE_DEFAULT
from tests.fakes.fake_at import fake_at  # noqa: F401 (fixture)
from tests.fakes.network import CERT_RE, CODE_RE, REF_RE, LiveServer, Phone, option

CITIZEN = "+919876500001"
OTHER = "+919876500002"
VACCINATOR_101 = "+919810000101"  # demo: Sunita Rao, Connaught Place UPHC (101)
ALL_DAY = "00:00-23:59"


def _gateway(config, fake):
    app = create_app(config)
    services = app.extensions["teeka"]
    today = now_in(services).date()
    demo.load(services, today)
    # a slot that is open whenever the test runs, so "today" can always be booked
    rows = ("centre_id,date,vaccine,min_age,dose,slot,capacity\n"
            f"101,{today},Covishield,18,1|2,{ALL_DAY},5\n")
    report = importer.import_csv(services.redis, "sessions", io.StringIO(rows))
    assert report.ok, report.bad
    return app, services


@pytest.fixture
def gateway(app_config, rdb, fake_at):  # noqa: F811
    config = fake_at.configure(app_config, quiet_hours=(0, 0))
    app, services = _gateway(config, fake_at)
    with LiveServer(app) as server:
        yield server, services, fake_at


def deliver(services) -> None:
    """Run the RQ worker until the queues are empty (burst)."""
    worker.work(services.config, burst=True, services=services)


class Texter:
    """A phone that sends an SMS and reads what came back once the worker has run."""

    def __init__(self, server, services, fake, number: str):
        self.phone, self.services, self.fake = Phone(server.url, number), services, fake
        self.number = number

    def received(self) -> list[str]:
        return [s.message for s in self.fake.sent_to(self.number)]

    def send(self, text: str) -> list[str]:
        """Send one SMS; the messages it brought, oldest first."""
        before = len(self.received())
        response = self.phone.sms(text)
        assert response.status_code == 200, response.text
        deliver(self.services)
        return self.received()[before:]

    def ask(self, text: str) -> str:
        """Send one SMS that gets exactly one reply; that reply."""
        replies = self.send(text)
        assert len(replies) == 1, replies
        return replies[0]


def book_by_sms(texter: Texter, name: str = "Asha Devi") -> str:
    """BOOK 110001 for a new person, today's all-day slot at centre 101; the slip SMS."""
    texter.ask("BOOK 110001")
    texter.ask(name)
    texter.ask("1990")
    centres = texter.ask("1")  # Female; the area code answers the area step
    texter.ask(option(centres, "Connaught"))
    slots = texter.ask("1")  # the first date: today
    texter.ask(option(slots, ALL_DAY))
    slip = texter.ask("1")
    assert REF_RE.search(slip), slip
    return slip


def test_book_by_sms_ends_with_the_slip_and_ussd_shows_the_same_appointment(gateway):
    server, services, fake = gateway
    citizen = Texter(server, services, fake, CITIZEN)

    assert "full name" in citizen.ask("BOOK 110001")
    assert "year of birth" in citizen.ask("Asha Devi")
    assert "Female" in citizen.ask("1990")
    centres = citizen.ask("1")
    assert "Choose a centre" in centres and "1 Connaught Place UPHC" in centres
    dates = citizen.ask(option(centres, "Connaught"))
    assert "Connaught Place UPHC\nChoose a date" in dates
    slots = citizen.ask("1")
    assert ALL_DAY in slots
    confirm = citizen.ask(option(slots, ALL_DAY))
    assert "A.D. dose 1 Covishield" in confirm and "Reply 1 to book" in confirm
    slip = citizen.ask("1")
    ref, code = REF_RE.search(slip).group(1), CODE_RE.search(slip).group(1)
    assert "Teeka booked A.D.: Connaught Place UPHC" in slip

    dialler = Phone(server.url, CITIZEN)
    screen = dialler.dial()
    if "English" in screen:  # an English keyword saves no language
        dialler.answer(option(screen, "English"))
    dialler.answer("2")  # My appointments
    assert dialler.ended and f"Ref {ref}" in dialler.screen and f"Code {code}" in dialler.screen


def test_a_booking_step_answered_wrongly_repeats_with_a_hint_and_0_goes_back(gateway):
    server, services, fake = gateway
    citizen = Texter(server, services, fake, CITIZEN)
    citizen.ask("BOOK")
    citizen.ask("Asha Devi")
    citizen.ask("1990")
    assert "PIN/area code" in citizen.ask("2")
    centres = citizen.ask("110001")
    assert "Invalid choice." in citizen.ask("9") and "Connaught" in centres
    assert "PIN/area code" in citizen.ask("0")
    assert "Booking stopped" in citizen.ask("00")
    assert "Teeka SMS" in citizen.ask("1")  # the conversation is over: a number is no command


def test_a_hindi_keyword_books_with_replies_in_hindi(gateway):
    server, services, fake = gateway
    citizen = Texter(server, services, fake, CITIZEN)
    assert "पूरा नाम भेजें" in citizen.ask("बुक 110001")
    assert "जन्म का साल" in citizen.ask("आशा देवी")
    assert "1 महिला" in citizen.ask("१९९०")
    centres = citizen.ask("1")
    assert "केंद्र चुनें" in centres
    assert "तारीख चुनें" in citizen.ask(option(centres, "Connaught"))
    slots = citizen.ask("1")
    assert "बुक: 1" in citizen.ask(option(slots, ALL_DAY))
    slip = citizen.ask("हाँ")
    assert slip.startswith("टीका: आ.द. का टीका") and REF_RE.search(slip) and "कोड" in slip
    assert "टीका SMS" in citizen.ask("HELP")  # the Hindi keyword saved Hindi


def test_an_urdu_keyword_books_with_replies_in_urdu(gateway):
    server, services, fake = gateway
    citizen = Texter(server, services, fake, CITIZEN)
    assert "پورا نام بھیجیں" in citizen.ask("بک 110001")
    assert "پیدائش کا سال" in citizen.ask("Asha Devi")


def test_status_code_cancel_yes(gateway):
    server, services, fake = gateway
    citizen = Texter(server, services, fake, CITIZEN)
    slip = book_by_sms(citizen)
    ref, code = REF_RE.search(slip).group(1), CODE_RE.search(slip).group(1)

    status = citizen.ask("STATUS")
    assert f"Ref {ref}" in status and ALL_DAY in status and code not in status
    resent = citizen.ask("CODE")
    assert f"Ref {ref} Code {code}" in resent
    assert f"Ref {ref} Code {code}" in citizen.ask(f"code {ref.replace(' ', '-')}")

    assert "Reply YES to cancel" in citizen.ask(f"CANCEL {ref}")
    assert "Not cancelled" in citizen.ask("no")
    citizen.ask(f"CANCEL {ref}")
    assert f"Cancelled Ref {ref}" in citizen.ask("YES")
    assert "no appointments" in citizen.ask("STATUS")
    session_id = f"101:{now_in(services).date()}:Covishield"
    assert services.redis.hget(keys.session(session_id), "t:" + ALL_DAY) == "0"

    dialler = Phone(server.url, CITIZEN)
    screen = dialler.dial()
    if "English" in screen:
        dialler.answer(option(screen, "English"))
    assert "no appointments" in dialler.answer("2")


def test_code_and_cancel_of_another_numbers_ref_say_not_found(gateway):
    server, services, fake = gateway
    ref = REF_RE.search(book_by_sms(Texter(server, services, fake, CITIZEN))).group(1)
    other = Texter(server, services, fake, OTHER)
    assert f"No live appointment with Ref {ref}" in other.ask(f"CODE {ref}")
    assert f"No live appointment with Ref {ref}" in other.ask(f"CANCEL {ref}")
    mistyped = ref[:-1] + str((int(ref[-1]) + 1) % 10)
    assert "looks mistyped" in other.ask(f"CANCEL {mistyped}")


def test_cert_gives_the_certificate_of_the_recorded_dose(gateway):
    server, services, fake = gateway
    citizen = Texter(server, services, fake, CITIZEN)
    assert "No dose is recorded" in citizen.ask("CERT")
    slip = book_by_sms(citizen)
    ref, code = REF_RE.search(slip).group(1), CODE_RE.search(slip).group(1)
    vaccinator = Texter(server, services, fake, VACCINATOR_101)
    assert "Asha Devi" in vaccinator.ask(f"V {ref} {code}")
    vaccinator.ask(f"DONE {ref}")
    completion = citizen.received()[-1]
    cert = CERT_RE.search(completion).group(1)

    reply = citizen.ask("CERT")
    assert f"Cert {cert}" in reply and "A.D. dose 1 Covishield" in reply
    assert f"Cert {cert}" in citizen.ask(f"CERT {ref}")


def test_lang_changes_the_language_of_every_later_reply(gateway):
    server, services, fake = gateway
    citizen = Texter(server, services, fake, CITIZEN)
    assert "हिन्दी" in citizen.ask("LANG hi")
    assert "टीका SMS" in citizen.ask("HELP")
    assert "कोई बुकिंग नहीं" in citizen.ask("STATUS")
    assert "en, hi, ur" in citizen.ask("LANG xx")
    assert "English" in citizen.ask("lang EN")
    assert services.redis.hget(keys.citizen(CITIZEN), "lang") == "en"


def test_a_ussd_code_by_sms_is_to_be_dialled_and_anything_unknown_gets_the_help(gateway):
    server, services, fake = gateway
    citizen = Texter(server, services, fake, CITIZEN)
    assert "Please dial *384*123#" in citizen.ask("*384*123#")
    assert "Teeka SMS: BOOK, STATUS" in citizen.ask("hello, what is this?")
    assert "Teeka SMS: BOOK, STATUS" in citizen.ask("HELP")
    assert "not registered as a vaccinator" in citizen.ask("TODAY")


def test_a_repeated_provider_id_is_answered_once(gateway):
    server, services, fake = gateway
    phone = Phone(server.url, CITIZEN)
    assert phone.sms("HELP", message_id="ATXid_same").status_code == 200
    assert phone.sms("HELP", message_id="ATXid_same").status_code == 200
    deliver(services)
    assert len(fake.sent_to(CITIZEN)) == 1


# ---- reminders ----


def test_the_day_before_a_reminder_with_the_code_goes_out_once(gateway):
    server, services, fake = gateway
    citizen = Texter(server, services, fake, CITIZEN)
    slip = book_by_sms(citizen)
    code = CODE_RE.search(slip).group(1)
    eve = now_in(services).date() - timedelta(days=1)

    assert operations.send_reminders(services, today=eve) == 1
    assert operations.send_reminders(services, today=eve) == 0  # marked on the appointment
    assert operations.send_reminders(services) == 0  # not the day before
    deliver(services)
    reminder = citizen.received()[-1]
    assert reminder.startswith("Teeka reminder") and f"Code {code}" in reminder
    assert "Connaught Place UPHC" in reminder and ALL_DAY in reminder
    record = outbox.list_for(services, CITIZEN)[-1]
    assert (record["purpose"], record["priority"]) == ("reminder", "low")
    assert code not in record["body"]  # filled in at send time only


def test_stop_stops_the_reminder_but_a_code_request_is_still_answered(gateway):
    server, services, fake = gateway
    citizen = Texter(server, services, fake, CITIZEN)
    slip = book_by_sms(citizen)
    code = CODE_RE.search(slip).group(1)
    eve = now_in(services).date() - timedelta(days=1)

    assert "Reminders stopped" in citizen.ask("STOP")
    assert operations.send_reminders(services, today=eve) == 0
    assert f"Code {code}" in citizen.ask("CODE")
    assert "Reminders are on again" in citizen.ask("START")
    assert operations.send_reminders(services, today=eve) == 1


def test_the_worker_runs_the_reminders_as_a_job(gateway):
    server, services, fake = gateway
    citizen = Texter(server, services, fake, CITIZEN)
    citizen.ask("BOOK 110001")
    citizen.ask("Asha Devi")
    citizen.ask("1990")
    citizen.ask("1")  # Female; the area code answers the area step
    citizen.ask("1")  # the first centre
    citizen.ask("2")  # tomorrow
    citizen.ask("1")  # its first time
    slip = citizen.ask("1")
    code = CODE_RE.search(slip).group(1)

    job = services.queue(QUEUE_DEFAULT).enqueue("gateway.operations.reminders_job")
    deliver(services)
    assert job.get_status() == "finished" and job.return_value() == 1
    assert citizen.received()[-1].startswith("Teeka reminder")
    assert f"Code {code}" in citizen.received()[-1]


def test_a_reminder_waits_out_the_quiet_hours(gateway):
    server, services, fake = gateway
    citizen = Texter(server, services, fake, CITIZEN)
    book_by_sms(citizen)
    hour = now_in(services).hour
    quiet = dataclasses.replace(services, config=services.config.with_overrides(
        quiet_hours=(hour, (hour + 2) % 24)), _queues={})
    before = len(citizen.received())

    assert operations.send_reminders(quiet, today=now_in(services).date() - timedelta(days=1)) == 1
    deliver(services)
    assert len(citizen.received()) == before
    record = outbox.list_for(services, CITIZEN)[-1]
    assert record["status"] == "queued" and float(record["due"]) > float(record["created"])


# ---- the hourly flood limit ----


@pytest.fixture
def tight_gateway(app_config, rdb, fake_at):  # noqa: F811
    config = fake_at.configure(app_config, sms_flood_limit=5)
    app, services = _gateway(config, fake_at)
    with LiveServer(app) as server:
        yield server, services, fake_at


def test_an_auto_responder_talking_to_the_gateway_stops_within_the_hourly_limit(tight_gateway):
    server, services, fake = tight_gateway
    bot = Texter(server, services, fake, CITIZEN)
    replies = bot.send("I am away. This is an automatic reply.")
    rounds = 0
    while replies and rounds < 50:  # the bot answers every message it gets
        replies = bot.send("I am away. This is an automatic reply.")
        rounds += 1
    received = bot.received()
    assert len(received) == 6, received  # five answers, then one warning, then nothing
    assert "too many messages" in received[-1]
    assert all("Teeka SMS" in text for text in received[:-1])


def test_a_registered_vaccinator_is_not_flood_limited(tight_gateway):
    server, services, fake = tight_gateway
    vaccinator = Texter(server, services, fake, VACCINATOR_101)
    for _ in range(8):
        assert "booked" in vaccinator.ask("TODAY")
    assert len(vaccinator.received()) == 8
