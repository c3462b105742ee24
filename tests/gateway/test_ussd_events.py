"""USSD session-end notices (`POST /ussd/events`) over real HTTP: a booking left unfinished gets
one SMS inviting the citizen to dial again; every notice is counted by status and network."""
from __future__ import annotations

import urllib.parse

import requests

from gateway.services import QUEUE_HIGH
from tests.fakes.fake_at import FORM, fake_at  # noqa: F401 (fixture)
from tests.fakes.network import Phone, option
from tests.gateway.test_core_loop import book_today
from tests.gateway.test_metrics import sample, scrape
from tests.gateway.test_verification import CITIZEN, gateway  # noqa: F401 (fixture)

USSD_CODE = "*384*123#"


def session_ended(gw, phone: Phone, status: str = "Incomplete", *, network: str = "99999",
                  with_phone: bool = True) -> requests.Response:
    """Africa's Talking's end-of-session notice for the phone's current session."""
    fields = {"sessionId": phone.session_id, "serviceCode": USSD_CODE, "networkCode": network,
              "status": status, "hopsCount": str(len(phone.inputs) + 1), "durationInMillis": "41000",
              "input": "*".join(phone.inputs), "lastAppResponse": phone.screen, "errorMessage": "",
              "cost": "0.0", "date": "2026-11-26 10:00:00"}
    if with_phone:
        fields["phoneNumber"] = phone.number
    return requests.post(gw.server.url + "/ussd/events", data=urllib.parse.urlencode(fields),
                         headers={"Content-Type": FORM}, timeout=10)


def start_booking(phone: Phone, language: str = "English") -> None:
    """Dial, pick a language, choose Book and type a name: the booking is now unfinished."""
    phone.dial()
    phone.answer(option(phone.screen, language))
    phone.answer("1")
    phone.answer("Asha Devi")
    assert not phone.ended, phone.screen


def test_a_session_dropped_mid_booking_gets_one_sms_inviting_to_dial_again(gateway):
    phone = gateway.phone(CITIZEN)
    start_booking(phone)

    assert session_ended(gateway, phone).status_code == 200
    assert session_ended(gateway, phone).status_code == 200  # the provider retried the notice
    gateway.deliver()

    texts = gateway.texts(CITIZEN)
    assert len(texts) == 1, texts
    assert USSD_CODE in texts[0] and "continue" in texts[0]

    assert "Continue" in phone.dial()
    phone.answer("1")
    assert "year" in phone.screen.lower(), phone.screen  # back where it stopped, name kept


def test_a_failed_session_mid_booking_also_gets_the_sms(gateway):
    phone = gateway.phone(CITIZEN)
    start_booking(phone)
    session_ended(gateway, phone, "Failed")
    gateway.deliver()
    assert len(gateway.texts(CITIZEN)) == 1


def test_the_continue_sms_is_in_the_language_of_the_session(gateway):
    phone = gateway.phone(CITIZEN)
    start_booking(phone, "हिन्दी")
    session_ended(gateway, phone)
    gateway.deliver()
    (text,) = gateway.texts(CITIZEN)
    assert "डायल" in text and USSD_CODE in text


def test_dropping_again_on_the_continue_offer_sends_no_second_sms(gateway):
    phone = gateway.phone(CITIZEN)
    start_booking(phone)
    session_ended(gateway, phone)
    assert "Continue" in phone.dial()
    session_ended(gateway, phone)  # a second session, dropped on the offer itself
    gateway.deliver()
    assert len(gateway.texts(CITIZEN)) == 1


def test_a_finished_booking_gets_only_its_slip(gateway):
    phone = gateway.phone(CITIZEN)
    book_today(phone)
    session_ended(gateway, phone, "Incomplete")  # even a notice that says otherwise
    gateway.deliver()
    texts = gateway.texts(CITIZEN)
    assert len(texts) == 1 and "Ref" in texts[0], texts


def test_leaving_the_booking_for_the_main_menu_sends_nothing(gateway):
    phone = gateway.phone(CITIZEN)
    start_booking(phone)
    phone.answer("00")
    session_ended(gateway, phone)
    gateway.deliver()
    assert gateway.texts(CITIZEN) == []


def test_a_session_that_ended_normally_sends_nothing(gateway):
    phone = gateway.phone(CITIZEN)
    start_booking(phone)
    session_ended(gateway, phone, "Success")
    gateway.deliver()
    assert gateway.texts(CITIZEN) == []


def test_a_booking_continued_in_a_new_session_gets_no_sms_for_the_old_one(gateway):
    first = gateway.phone(CITIZEN)
    start_booking(first)
    second = gateway.phone(CITIZEN)
    assert "Continue" in second.dial()
    second.answer("2")  # Main menu: the unfinished booking is given up
    session_ended(gateway, first)  # the first session's notice arrives late
    gateway.deliver()
    assert gateway.texts(CITIZEN) == []


def test_a_booking_resumed_in_a_new_session_is_invited_once_for_the_session_that_dropped_last(
        gateway):
    first = gateway.phone(CITIZEN)
    start_booking(first)
    second = gateway.phone(CITIZEN)
    assert "Continue" in second.dial()
    second.answer("1")  # continues: the year of birth is asked
    session_ended(gateway, first)  # the first session's notice arrives late: it is not the one
    gateway.deliver()
    assert gateway.texts(CITIZEN) == []
    session_ended(gateway, second)
    gateway.deliver()
    assert len(gateway.texts(CITIZEN)) == 1


def test_a_notice_without_a_phone_number_is_counted_and_sends_nothing(gateway):
    phone = gateway.phone(CITIZEN)
    start_booking(phone)
    assert session_ended(gateway, phone, with_phone=False).status_code == 200
    assert gateway.services.queue(QUEUE_HIGH).count == 0
    text = scrape(gateway.server.url, lambda t: sample(
        t, "teeka_ussd_sessions_ended_total", status="Incomplete", network="99999") == 1)
    assert sample(text, "teeka_messages_total", purpose="continue", status="queued") == 0


def test_session_ends_are_counted_by_status_and_network_once_per_session(gateway):
    for network, status in (("62120", "Incomplete"), ("62120", "Success"), ("99999", "Success"),
                            ("40410", "Failed"), ("not-a-code", "Odd")):
        phone = gateway.phone(CITIZEN)
        phone.dial()
        session_ended(gateway, phone, status, network=network)
        session_ended(gateway, phone, status, network=network)  # a retried notice
    text = scrape(gateway.server.url, lambda t: sample(
        t, "teeka_ussd_sessions_ended_total", status="other", network="other") == 1)
    assert sample(text, "teeka_ussd_sessions_ended_total", status="Incomplete", network="62120") == 1
    assert sample(text, "teeka_ussd_sessions_ended_total", status="Success", network="62120") == 1
    assert sample(text, "teeka_ussd_sessions_ended_total", status="Success", network="99999") == 1
    assert sample(text, "teeka_ussd_sessions_ended_total", status="Failed", network="40410") == 1


def test_a_malformed_notice_is_refused_and_counts_nothing(gateway):
    answer = requests.post(gateway.server.url + "/ussd/events", data={"status": "Incomplete"},
                           timeout=10)
    assert answer.status_code == 400 and "sessionId" in answer.text
    text = scrape(gateway.server.url, lambda t: sample(
        t, "teeka_webhook_requests_total", endpoint="/ussd/events", status="400") == 1)
    assert "teeka_ussd_sessions_ended_total{" not in text
