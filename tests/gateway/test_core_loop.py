"""The loop the product exists for, over real HTTP with a real Redis, RQ worker and SDK:
book by USSD -> slip SMS with ref and code -> V with the code -> DONE -> completion SMS."""
from __future__ import annotations

import io
import re

import pytest

from gateway import create_app, demo, importer, outbox, worker
from gateway.conversation import now_in
from tests.fakes.fake_at import delivery_report_body, fake_at, post_form  # noqa: F401
from tests.fakes.network import CERT_RE, CODE_RE, REF_RE, LiveServer, Phone, option

CITIZEN = "+919876500001"
VACCINATOR_101 = "+919810000101"  # demo: Sunita Rao, Connaught Place UPHC (101)
VACCINATOR_102 = "+919810000102"  # demo: Imran Qureshi, Gole Market (102)
ALL_DAY = "00:00-23:59"


@pytest.fixture
def gateway(app_config, rdb, fake_at):  # noqa: F811
    config = fake_at.configure(app_config)
    app = create_app(config)
    services = app.extensions["teeka"]
    today = now_in(services).date()
    demo.load(services, today)
    # a slot that is open whenever the test runs, so "today" can always be booked
    rows = f"centre_id,date,vaccine,min_age,dose,slot,capacity\n101,{today},Covishield,18,1|2,{ALL_DAY},5\n"
    report = importer.import_csv(services.redis, "sessions", io.StringIO(rows))
    assert report.ok, report.bad
    with LiveServer(app) as server:
        yield server, services, fake_at


def deliver(services) -> None:
    """Run the RQ worker until the queues are empty (burst)."""
    worker.work(services.config, burst=True, services=services)


def book_today(phone: Phone, name: str = "Asha Devi") -> str:
    """Dial, pick English, add a person, book today's all-day slot at centre 101."""
    assert "English" in phone.dial()
    phone.answer(option(phone.screen, "English"))
    assert "Book" in phone.screen
    phone.answer("1")
    phone.answer(name)
    phone.answer("1990")
    phone.answer("1")
    phone.answer("110001")
    phone.answer(option(phone.screen, "Connaught"))
    phone.answer("1")  # the first date: today
    phone.answer(option(phone.screen, ALL_DAY))
    assert "1" in phone.screen and not phone.ended, phone.screen
    phone.answer("1")  # confirm
    assert phone.ended, phone.screen
    ref = REF_RE.search(phone.screen) or re.search(r"(\d{5} \d{5})", phone.screen)
    assert ref, phone.screen
    return ref.group(1)


def last_text(fake, number: str) -> str:
    sent = fake.sent_to(number)
    assert sent, f"nothing was sent to {number}"
    return sent[-1].message


def test_book_verify_done_sends_exactly_one_completion_sms(gateway):
    server, services, fake = gateway
    citizen = Phone(server.url, CITIZEN)
    vaccinator = Phone(server.url, VACCINATOR_101)

    ref = book_today(citizen)
    deliver(services)
    slips = fake.sent_to(CITIZEN)
    assert len(slips) == 1
    assert REF_RE.search(slips[0].message).group(1) == ref
    code = CODE_RE.search(slips[0].message).group(1)

    wrong = f"{(int(code) + 1) % 10000:04d}"
    vaccinator.sms(f"V {ref} {wrong}")
    deliver(services)
    reply = last_text(fake, VACCINATOR_101)
    assert "4" in reply and code not in reply

    vaccinator.sms(f"V {ref} {code}")
    deliver(services)
    reply = last_text(fake, VACCINATOR_101)
    assert "Asha Devi" in reply and "1990" in reply and code not in reply

    vaccinator.sms(f"DONE {ref}")
    vaccinator.sms(f"DONE {ref}")
    deliver(services)
    to_citizen = fake.sent_to(CITIZEN)
    completions = [s for s in to_citizen if CERT_RE.search(s.message)]
    assert len(completions) == 1, [s.message for s in to_citizen]
    cert = CERT_RE.search(completions[0].message).group(1)
    assert f"NOTME {ref}" in completions[0].message

    anyone = Phone(server.url, "+919876500099")
    anyone.sms(f"CHECK {cert}")
    deliver(services)
    assert "genuine" in last_text(fake, "+919876500099").lower()


def test_done_without_a_verified_code_is_refused_and_sends_nothing_to_the_citizen(gateway):
    server, services, fake = gateway
    ref = book_today(Phone(server.url, CITIZEN))
    deliver(services)
    before = len(fake.sent_to(CITIZEN))

    Phone(server.url, VACCINATOR_101).sms(f"DONE {ref}")
    deliver(services)
    assert len(fake.sent_to(CITIZEN)) == before
    assert "V " in last_text(fake, VACCINATOR_101) or "verif" in last_text(fake, VACCINATOR_101).lower()


def test_a_vaccinator_of_another_centre_is_told_other_centre(gateway):
    server, services, fake = gateway
    ref = book_today(Phone(server.url, CITIZEN))
    deliver(services)
    code = CODE_RE.search(fake.sent_to(CITIZEN)[0].message).group(1)

    Phone(server.url, VACCINATOR_102).sms(f"V {ref} {code}")
    deliver(services)
    assert "centre" in last_text(fake, VACCINATOR_102).lower()


def test_an_unregistered_number_cannot_verify(gateway):
    server, services, fake = gateway
    ref = book_today(Phone(server.url, CITIZEN))
    deliver(services)
    code = CODE_RE.search(fake.sent_to(CITIZEN)[0].message).group(1)

    Phone(server.url, "+919876500077").sms(f"V {ref} {code}")
    deliver(services)
    assert "not registered as a vaccinator" in last_text(fake, "+919876500077")


def test_five_wrong_codes_lock_the_appointment_even_the_right_code_then_fails(gateway):
    server, services, fake = gateway
    ref = book_today(Phone(server.url, CITIZEN))
    deliver(services)
    code = CODE_RE.search(fake.sent_to(CITIZEN)[0].message).group(1)
    vaccinator = Phone(server.url, VACCINATOR_101)
    wrong = f"{(int(code) + 1) % 10000:04d}"
    for _ in range(5):
        vaccinator.sms(f"V {ref} {wrong}")
    deliver(services)
    vaccinator.sms(f"V {ref} {code}")
    deliver(services)
    assert "lock" in last_text(fake, VACCINATOR_101).lower()  # even the right code is refused


def test_help_by_sms_is_sent_once_and_delivered_after_the_report(gateway):
    server, services, fake = gateway
    phone = Phone(server.url, CITIZEN)
    for _ in range(2):  # the provider retried the callback: same id
        assert phone.sms("HELP", message_id="ATXid_help_1").status_code == 200
    deliver(services)

    sent = fake.sent_to(CITIZEN)
    assert len(sent) == 1 and "BOOK" in sent[0].message
    [record] = outbox.list_for(services, CITIZEN)
    assert record["status"] == "sent" and record["provider_id"]

    report = delivery_report_body(record["provider_id"], "Success", CITIZEN)
    assert post_form(server.url + "/sms/delivery", report).status_code == 200
    assert outbox.get(services, record["id"])["status"] == "delivered"
