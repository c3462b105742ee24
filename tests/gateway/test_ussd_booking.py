"""Citizens book over USSD: the webhook over real HTTP, a real Redis, RQ and the fake provider.

Each test dials as a handset would (text accumulating, joined by `*`) and checks what the
citizen sees on the screen and in the SMS the provider was asked to send.
"""
from __future__ import annotations

import io
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests

from bench.ussd_bot import Citizens
from flows.text import day_label
from gateway import create_app, demo, importer, keys, outbox, store, worker
from gateway.conversation import now_in
from gateway.services import QUEUE_HIGH
from tests.fakes.fake_at import FORM, fake_at, free_port  # noqa: F401 (fixture)
from tests.fakes.network import CODE_RE, REF_RE, LiveServer, Phone, option

CITIZEN = "+919876510001"
RACE_AREA = "560099"  # one centre, one session tomorrow, one slot of 10 seats
RACE_CENTRE = "901"
RACE_SLOT = "10:00-12:00"
RACE_SEATS = 10
SPARE_SLOT = "14:00-16:00"  # the same day, plenty of seats: where a loser of the race goes


@pytest.fixture
def gateway(app_config, rdb, fake_at):  # noqa: F811
    config = fake_at.configure(app_config)
    app = create_app(config)
    services = app.extensions["teeka"]
    today = now_in(services).date()
    demo.load(services, today)
    tomorrow = today + timedelta(days=1)
    for kind, rows in (
        ("centres", f"centre_id,name,district,area_code,address\n"
                    f"{RACE_CENTRE},Race Test Clinic,Test District,{RACE_AREA},Main Road\n"),
        ("sessions", f"centre_id,date,vaccine,min_age,dose,slot,capacity\n"
                     f"{RACE_CENTRE},{tomorrow},Covishield,18,1|2,{RACE_SLOT},{RACE_SEATS}\n"
                     f"{RACE_CENTRE},{tomorrow},Covishield,18,1|2,{SPARE_SLOT},100\n"),
    ):
        report = importer.import_csv(services.redis, kind, io.StringIO(rows))
        assert report.ok, report.bad
    with LiveServer(app) as server:
        yield server, services, fake_at


def deliver(services) -> None:
    """Run the RQ worker until the queues are empty (burst)."""
    worker.work(services.config, burst=True, services=services)


def free_seats(services, centre_id: str, day, slot: str) -> int:
    """Free seats of one slot, as the booking menu counts them."""
    catalog = store.StoreCatalog(services.redis)
    for session in catalog.sessions([centre_id], [day]):
        for s in session.slots:
            if s.name == slot:
                return s.free
    raise AssertionError(f"no slot {slot} at centre {centre_id} on {day}")


def tomorrow_of(services):
    return now_in(services).date() + timedelta(days=1)


def to_main_menu(phone: Phone) -> None:
    """Dial; pick English on a first dial, decline an offer to continue; the main menu."""
    phone.dial()
    if "Choose language" in phone.screen:
        phone.answer(option(phone.screen, "English"))
    if "Continue booking" in phone.screen:
        phone.answer(option(phone.screen, "Main menu"))
    assert "1 Book vaccination" in phone.screen, phone.screen


def walk_to_confirm(phone: Phone, services, *, name: str = "Asha Devi", area: str = RACE_AREA,
                    centre: str = "Race Test Clinic", slot: str = RACE_SLOT) -> None:
    """Main menu -> Book -> (a new person) -> area -> centre -> tomorrow -> slot: the summary."""
    to_main_menu(phone)
    phone.answer("1")
    if "Book for whom?" in phone.screen:
        phone.answer(option(phone.screen, "Add a person"))
    assert "full name" in phone.screen, phone.screen
    phone.answer(name)
    phone.answer("1990")
    assert "1 Female" in phone.screen, phone.screen
    phone.answer("1")
    assert "PIN/area code" in phone.screen, phone.screen
    phone.answer(area)
    phone.answer(option(phone.screen, centre))
    phone.answer(option(phone.screen, day_label(tomorrow_of(services))))
    phone.answer(option(phone.screen, slot))
    assert "1 Confirm" in phone.screen and not phone.ended, phone.screen


def ref_on(screen: str) -> str:
    found = REF_RE.search(screen)
    assert found, screen
    return found.group(1)


def codes_sent(fake, number: str) -> list[tuple[str, str]]:
    """(ref, code) of every SMS the provider was asked to send to `number`."""
    found = []
    for sent in fake.sent_to(number):
        ref, code = REF_RE.search(sent.message), CODE_RE.search(sent.message)
        if ref and code:
            found.append((ref.group(1), code.group(1)))
    return found


# ---------------------------------------------------------------- the whole journey
def test_a_new_number_books_sees_its_code_gets_it_again_and_cancels(gateway):
    server, services, fake = gateway
    tomorrow = tomorrow_of(services)
    seats_before = free_seats(services, "101", tomorrow, "09:00-11:00")
    phone = Phone(server.url, CITIZEN)

    assert "1 English" in phone.dial()
    phone.answer(option(phone.screen, "English"))
    assert "1 Book vaccination" in phone.screen
    phone.answer("1")
    assert "full name" in phone.screen  # nobody on the number yet: straight to the name
    phone.answer("Asha Devi")
    phone.answer("1990")
    phone.answer(option(phone.screen, "Female"))
    phone.answer("110001")
    assert "Connaught Place UPHC" in phone.screen
    phone.answer(option(phone.screen, "Connaught"))
    phone.answer(option(phone.screen, day_label(tomorrow)))
    phone.answer(option(phone.screen, "09:00-11:00"))
    assert "A.D." in phone.screen and day_label(tomorrow) in phone.screen
    phone.answer("1")
    assert phone.ended and "Booked" in phone.screen, phone.screen
    ref = ref_on(phone.screen)
    assert free_seats(services, "101", tomorrow, "09:00-11:00") == seats_before - 1

    deliver(services)
    slips = codes_sent(fake, CITIZEN)
    assert len(fake.sent_to(CITIZEN)) == 1 and len(slips) == 1
    slip_ref, code = slips[0]
    assert slip_ref == ref and len(code) == 4

    # 2 My appointments, on a new session: the same ref and the code itself
    to_main_menu(phone)
    phone.answer("2")
    assert phone.ended and ref in phone.screen and f"Code {code}" in phone.screen, phone.screen

    # 3 Send my code again: a second SMS with the same ref and code
    to_main_menu(phone)
    phone.answer("3")
    assert phone.ended and ref in phone.screen
    deliver(services)
    assert codes_sent(fake, CITIZEN) == [(ref, code), (ref, code)]

    # 4 Cancel: asked first, then the seat is free again
    to_main_menu(phone)
    phone.answer("4")
    assert "1 Yes, cancel" in phone.screen and not phone.ended, phone.screen
    phone.answer("1")
    assert phone.ended and "Cancelled" in phone.screen and ref in phone.screen
    assert free_seats(services, "101", tomorrow, "09:00-11:00") == seats_before

    to_main_menu(phone)
    phone.answer("2")
    assert "no appointments" in phone.screen and ref not in phone.screen


# ---------------------------------------------------------------- the slip after the screen
def confirm_form(phone: Phone) -> dict:
    """The webhook form of "1" on the phone's confirm screen."""
    return {"sessionId": phone.session_id, "serviceCode": "*384*123#", "phoneNumber": phone.number,
            "networkCode": "99999", "text": "*".join([*phone.inputs, "1"])}


def test_the_slip_is_queued_once_the_booked_screen_has_been_sent(gateway):
    server, services, fake = gateway
    phone = Phone(server.url, CITIZEN)
    walk_to_confirm(phone, services)
    # Flask's own test client leaves the response open, as a server does while sending it
    response = create_app(services.config).test_client().post("/ussd", data=confirm_form(phone),
                                                              content_type=FORM)
    screen = response.get_data(as_text=True)
    assert screen.startswith("END Booked"), screen
    assert services.queue(QUEUE_HIGH).count == 0  # the citizen did not wait for the queue
    response.close()  # sent: the server closes it
    assert services.queue(QUEUE_HIGH).count == 1
    deliver(services)
    assert [ref for ref, _ in codes_sent(fake, CITIZEN)] == [ref_on(screen)]


def test_a_slip_whose_job_cannot_be_made_after_the_screen_is_sent_by_the_sweep(gateway):
    server, services, fake = gateway
    phone = Phone(server.url, CITIZEN)
    walk_to_confirm(phone, services)
    records: list[logging.LogRecord] = []
    collect = logging.Handler()
    collect.emit = records.append
    logging.getLogger("teeka").addHandler(collect)
    try:  # the queue's Redis is gone by the time the screen has been sent
        cut_off = create_app(services.config.with_overrides(
            queue_redis_url=f"redis://127.0.0.1:{free_port()}/0"))
        response = cut_off.test_client().post("/ussd", data=confirm_form(phone), content_type=FORM)
        screen = response.get_data(as_text=True)
        response.close()
    finally:
        logging.getLogger("teeka").removeHandler(collect)
    assert screen.startswith("END Booked"), screen
    (failed,) = [r for r in records if r.getMessage() == "sms.enqueue_failed"]
    assert failed.levelno == logging.WARNING and len(failed.teeka_fields["messages"]) == 1
    assert CITIZEN not in str(failed.teeka_fields)
    deliver(services)
    assert fake.sent_to(CITIZEN) == []
    assert outbox.requeue_stuck(services, older_than=0) == 1  # the worker runs it every 30 s
    deliver(services)
    assert [ref for ref, _ in codes_sent(fake, CITIZEN)] == [ref_on(screen)]


def test_a_wrong_choice_repeats_the_screen_with_a_hint_and_keeps_the_session(gateway):
    server, services, _ = gateway
    phone = Phone(server.url, CITIZEN)
    to_main_menu(phone)
    phone.answer("7")
    assert not phone.ended and "Invalid choice" in phone.screen and "1 Book" in phone.screen
    phone.answer("1")
    phone.answer("Asha Devi")
    phone.answer("20")
    assert not phone.ended and "4 digits" in phone.screen
    phone.answer("1990")
    phone.answer("1")
    phone.answer("999999")  # no centre there
    assert not phone.ended and "No free seats" in phone.screen


# ---------------------------------------------------------------- seats under contention
def test_fifty_concurrent_confirms_for_ten_seats_book_exactly_ten(gateway):
    server, services, fake = gateway
    tomorrow = tomorrow_of(services)
    phones = [Phone(server.url, f"+9198765{20000 + i:05d}") for i in range(50)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(lambda p: walk_to_confirm(p, services), phones))

    start = threading.Barrier(len(phones))

    def confirm(phone: Phone) -> str:
        start.wait()
        return phone.answer("1")

    with ThreadPoolExecutor(max_workers=len(phones)) as pool:
        screens = list(pool.map(confirm, phones))

    booked = [s for s in screens if s.startswith("END ") and "Booked" in s]
    lost = [s for s in screens if s not in booked]
    assert len(booked) == RACE_SEATS
    assert len({ref_on(s) for s in booked}) == RACE_SEATS
    # the losers are told the slot filled and shown the slots left, never an END
    assert all(s.startswith("CON ") and "filled" in s and SPARE_SLOT in s and RACE_SLOT not in s
               for s in lost), lost[:3]
    assert free_seats(services, RACE_CENTRE, tomorrow, RACE_SLOT) == 0
    deliver(services)
    assert sum(len(codes_sent(fake, p.number)) for p in phones) == RACE_SEATS


def test_the_last_seat_of_the_area_taken_while_confirming_asks_for_another_area(gateway):
    server, services, _ = gateway
    tomorrow = tomorrow_of(services)
    rows = (f"centre_id,date,vaccine,min_age,dose,slot,capacity\n"
            f"{RACE_CENTRE},{tomorrow},Covishield,18,1|2,{SPARE_SLOT},0\n")
    assert importer.import_csv(services.redis, "sessions", io.StringIO(rows)).ok
    late = Phone(server.url, CITIZEN)
    walk_to_confirm(late, services)
    for i in range(RACE_SEATS):
        other = Phone(server.url, f"+9198765{30000 + i:05d}")
        walk_to_confirm(other, services)
        other.answer("1")
        assert other.ended and "Booked" in other.screen
    late.answer("1")
    assert not late.ended and "No free seats" in late.screen, late.screen
    late.answer("110001")  # the choices made so far are kept: straight to the centres
    assert "Connaught Place UPHC" in late.screen, late.screen


def test_a_repeated_hop_answers_the_same_screen_and_books_once(gateway):
    server, services, fake = gateway
    tomorrow = tomorrow_of(services)
    phone = Phone(server.url, CITIZEN)
    walk_to_confirm(phone, services)
    phone.inputs.append("1")
    form = {"sessionId": phone.session_id, "serviceCode": "*384*123#", "phoneNumber": CITIZEN,
            "networkCode": "99999", "text": "*".join(phone.inputs)}

    def post(_):
        return requests.post(server.url + "/ussd", data=form, timeout=10,
                             headers={"Content-Type": FORM}).text

    with ThreadPoolExecutor(max_workers=5) as pool:
        screens = list(pool.map(post, range(5)))
    screens.append(post(None))  # and once more, after the others
    assert len(set(screens)) == 1 and screens[0].startswith("END Booked"), screens
    assert free_seats(services, RACE_CENTRE, tomorrow, RACE_SLOT) == RACE_SEATS - 1
    deliver(services)
    assert len(fake.sent_to(CITIZEN)) == 1


# ---------------------------------------------------------------- people per number
def test_at_four_people_a_fifth_cannot_be_added(gateway):
    server, services, _ = gateway
    phone = Phone(server.url, CITIZEN)
    names = ["Asha Devi", "Ravi Kumar", "Meena Devi", "Arjun Singh"]
    for name in names:
        walk_to_confirm(phone, services, name=name)
        phone.answer("1")
        assert phone.ended and "Booked" in phone.screen, phone.screen

    to_main_menu(phone)
    phone.answer("1")
    assert all(name in phone.screen for name in names)
    assert "Add a person" not in phone.screen, phone.screen
    phone.answer("5")  # where "Add a person" would be
    assert not phone.ended and "No more people can be added" in phone.screen
    assert "full name" not in phone.screen
    # each of the four already has an appointment: picking one says so
    phone.answer("1")
    assert not phone.ended and "already has an appointment" in phone.screen
    assert len(store.load_citizen(services.redis, CITIZEN).beneficiaries) == 4


def test_two_sessions_adding_people_at_once_never_pass_four(gateway):
    """Three people on the number, two handsets each add one more at the same moment."""
    server, services, _ = gateway
    phone = Phone(server.url, CITIZEN)
    for name in ["Asha Devi", "Ravi Kumar", "Meena Devi"]:
        walk_to_confirm(phone, services, name=name)
        phone.answer("1")
        assert phone.ended
    first, second = Phone(server.url, CITIZEN), Phone(server.url, CITIZEN)
    walk_to_confirm(first, services, name="Arjun Singh")
    walk_to_confirm(second, services, name="Kiran Bala")
    first.answer("1")
    second.answer("1")
    assert first.ended and "Booked" in first.screen
    assert not second.ended, second.screen  # refused, with a screen to go on from
    assert "No more people" in second.screen
    assert len(store.load_citizen(services.redis, CITIZEN).beneficiaries) == 4


# ---------------------------------------------------------------- resume
def test_dialling_again_after_a_drop_offers_to_continue_where_it_stopped(gateway):
    server, services, fake = gateway
    tomorrow = tomorrow_of(services)
    phone = Phone(server.url, CITIZEN)
    to_main_menu(phone)
    phone.answer("1")
    phone.answer("Asha Devi")
    phone.answer("1990")
    phone.answer("1")
    phone.answer(RACE_AREA)
    phone.answer(option(phone.screen, "Race Test Clinic"))
    dropped_on = phone.screen
    assert "Choose a date" in dropped_on
    # the network drops the session here; the citizen dials again
    # the offer lasts 10 minutes from the drop (Redis expires it; the test cannot wait)
    assert 0 < services.redis.ttl(keys.ussd_resume(CITIZEN)) <= 600
    phone.dial()
    assert "1 Continue booking" in phone.screen and "2 Main menu" in phone.screen
    assert not phone.ended
    phone.answer("1")
    assert phone.screen == dropped_on
    phone.answer(option(phone.screen, day_label(tomorrow)))
    phone.answer(option(phone.screen, RACE_SLOT))
    assert "A.D." in phone.screen  # the person typed before the drop
    phone.answer("1")
    assert phone.ended and "Booked" in phone.screen
    deliver(services)
    assert codes_sent(fake, CITIZEN)[0][0] == ref_on(phone.screen)

    phone.dial()  # nothing unfinished any more
    assert "1 Book vaccination" in phone.screen and "Continue" not in phone.screen


def test_choosing_main_menu_on_the_resume_offer_forgets_the_unfinished_booking(gateway):
    server, services, _ = gateway
    phone = Phone(server.url, CITIZEN)
    to_main_menu(phone)
    phone.answer("1")
    phone.answer("Asha Devi")
    phone.dial()
    assert "1 Continue booking" in phone.screen
    phone.answer("2")
    assert "1 Book vaccination" in phone.screen
    phone.dial()
    assert "1 Book vaccination" in phone.screen and "Continue" not in phone.screen


def test_a_finished_session_does_not_offer_to_continue(gateway):
    server, services, _ = gateway
    phone = Phone(server.url, CITIZEN)
    to_main_menu(phone)
    phone.answer("2")  # My appointments: none, the session goes on on that screen
    phone.dial()
    assert "1 Book vaccination" in phone.screen and "Continue" not in phone.screen


# ---------------------------------------------------------------- many citizens at once
def test_a_realistic_mix_of_citizens_always_gets_a_screen_they_can_answer(app_config, rdb):
    """The handsets of bench/ussd.py, in-process: every hop answers 200 with a screen the
    citizen recognises, repeated hops answer the same screen, and bookings add up."""
    app = create_app(app_config)
    services = app.extensions["teeka"]
    demo.load(services, now_in(services).date())
    citizens = Citizens(["110001", "110005", "400005", "500002"], clock=time.monotonic)
    client = app.test_client()
    for _ in range(600):
        body, answered = citizens.next_hop()
        response = client.post("/ussd", data=body, content_type=FORM)
        assert answered(response.status_code, response.get_data(as_text=True)), \
            (response.status_code, response.get_data(as_text=True), citizens.outcomes)
    assert not citizens.confused
    assert citizens.outcomes["booked"] > 10 and citizens.outcomes["dropped"] > 0
    booked = sum(len(rdb.smembers(keys.citizen_appointments(n.phone))) for n in citizens.numbers)
    assert booked == citizens.outcomes["booked"]
