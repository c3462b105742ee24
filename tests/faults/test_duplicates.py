"""Duplicates on the running gateway: Africa's Talking retries callbacks, and a retry can arrive
while the first is still being handled. Every webhook below is posted three times at once
(to `python -m gateway web` in several processes) and must have its effect once."""
from __future__ import annotations

import secrets
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from rq.registry import ScheduledJobRegistry

from gateway import keys, metrics, outbox
from gateway.conversation import now_in
from gateway.effects import hour_of
from gateway.services import QUEUE_HIGH
from tests.fakes.fake_at import FORM, delivery_report_body, fake_at  # noqa: F401 (fixture)
from tests.fakes.network import CERT_RE, REF_RE, option
from tests.faults.test_races import (CITIZEN, VACCINATORS_101, book_today, figures,  # noqa: F401
                                     ledger_violations, world)
from tests.gateway.test_ussd_booking import walk_to_confirm

pytestmark = pytest.mark.slow  # against `python -m gateway web` processes
COPIES = 3
VACCINATOR = VACCINATORS_101[0]


def at_once(post, copies: int = COPIES) -> list[requests.Response]:
    """The same request `copies` times, released together."""
    start = threading.Barrier(copies)

    def one(_):
        start.wait()
        return post()

    with ThreadPoolExecutor(max_workers=copies) as pool:
        return list(pool.map(one, range(copies)))


def form_post(url: str, fields: dict):
    body = urllib.parse.urlencode(fields)
    return lambda: requests.post(url, data=body, headers={"Content-Type": FORM}, timeout=10)


def sms_post(world, number: str, text: str):
    """One inbound SMS as the provider posts it; every copy carries the same message id."""
    return form_post(world.url + "/sms/incoming", {
        "from": number, "to": "12345", "text": text, "id": "ATPid_" + secrets.token_hex(12),
        "networkCode": "99999", "date": "2026-11-26 10:00:00"})


def messages_to(world, number: str) -> list[dict]:
    return outbox.list_for(world.services, number)


# ---------------------------------------------------------------- USSD hops
def test_a_hop_posted_three_times_at_once_books_once_and_answers_the_same(world):
    phone = world.phone(CITIZEN)
    first = form_post(world.url + "/ussd", {"sessionId": "ATUid_" + secrets.token_hex(16),
                                            "serviceCode": "*384*123#", "phoneNumber": CITIZEN,
                                            "networkCode": "99999", "text": ""})
    openings = at_once(first)
    assert len({r.text for r in openings}) == 1 and openings[0].text.startswith("CON ")

    walk_to_confirm(phone, world.services, slot="14:00-16:00")
    confirm = form_post(world.url + "/ussd", {
        "sessionId": phone.session_id, "serviceCode": "*384*123#", "phoneNumber": CITIZEN,
        "networkCode": "99999", "text": "*".join(phone.inputs + ["1"])})
    answers = at_once(confirm)
    answers.append(confirm())  # and once more after the others
    screens = {r.text for r in answers}
    assert len(screens) == 1 and REF_RE.search(answers[0].text), screens
    ref = REF_RE.search(answers[0].text).group(1).replace(" ", "")

    world.deliver()
    assert world.r.smembers(keys.citizen_appointments(CITIZEN)) == {ref}
    slips = world.fake.sent_to(CITIZEN)
    assert len(slips) == 1 and REF_RE.search(slips[0].message), [s.message for s in slips]
    assert [e["status"] for _, e in world.r.xrange(keys.audit())] == ["booked"]
    violations = ledger_violations(world)
    figures("duplicates/ussd", faults=2 * (COPIES - 1) + 1,
            requests_sent=2 * COPIES + 1 + len(phone.inputs) + 1,
            messages=len(answers) + len(openings) + len(slips), violations=violations)
    assert violations == []


# ---------------------------------------------------------------- inbound SMS
def test_an_inbound_sms_posted_three_times_at_once_is_answered_once(world):
    ref, code = book_today(world)
    sent = 0

    help_ = sms_post(world, CITIZEN, "HELP")
    assert {r.status_code for r in at_once(help_)} == {200}
    verify = sms_post(world, VACCINATOR, f"V {ref} {code}")
    assert {r.status_code for r in at_once(verify)} == {200}
    world.deliver()
    done = sms_post(world, VACCINATOR, f"DONE {ref}")
    assert {r.status_code for r in at_once(done)} == {200}
    sent += 3 * COPIES
    world.deliver()

    to_citizen = [m.message for m in world.fake.sent_to(CITIZEN)]
    assert len(to_citizen) == 3, to_citizen  # the slip, one HELP answer, one completion
    assert sum("Teeka SMS: BOOK" in m for m in to_citizen) == 1
    assert sum(bool(CERT_RE.search(m)) for m in to_citizen) == 1
    to_vaccinator = [m.message for m in world.fake.sent_to(VACCINATOR)]
    assert len(to_vaccinator) == 2 and "code OK" in to_vaccinator[0], to_vaccinator
    assert "recorded for Asha Devi" in to_vaccinator[1]
    events = [e["status"] for _, e in world.r.xrange(keys.audit())]
    assert events == ["booked", "verified", "vaccinated"], events
    # a duplicate does not count toward the citizen's flood limit either
    hour = hour_of(now_in(world.services))
    assert world.r.get(keys.flood(CITIZEN, hour)) == "1"
    assert world.r.get(keys.flood(VACCINATOR, hour)) == "2"
    violations = ledger_violations(world)
    figures("duplicates/sms-incoming", faults=3 * (COPIES - 1), requests_sent=sent,
            messages=len(to_citizen) + len(to_vaccinator), violations=violations)
    assert violations == []


# ---------------------------------------------------------------- delivery reports
def dlr_post(world, provider_id: str, status: str, reason: str = ""):
    body = delivery_report_body(provider_id, status, CITIZEN, failure_reason=reason)
    return lambda: requests.post(world.url + "/sms/delivery", data=body,
                                 headers={"Content-Type": FORM}, timeout=10)


def test_a_delivery_report_posted_three_times_at_once_moves_the_message_once(world):
    book_today(world)
    world.phone(CITIZEN).sms("HELP")
    world.deliver()
    slip, answer = messages_to(world, CITIZEN)
    slip_pid, answer_pid = world.fake.message_ids(CITIZEN)
    assert (slip["provider_id"], answer["provider_id"]) == (slip_pid, answer_pid)

    # the slip failed on the network: one resend is scheduled, not three
    assert {r.status_code for r in at_once(dlr_post(world, slip_pid, "Failed", "DeliveryFailure"))} == {200}
    # the HELP answer arrived: delivered once
    assert {r.status_code for r in at_once(dlr_post(world, answer_pid, "Success"))} == {200}

    slip, answer = messages_to(world, CITIZEN)
    assert slip["status"] == outbox.RETRYING and slip["resends"] == "1", slip
    assert answer["status"] == outbox.DELIVERED, answer
    scheduled = ScheduledJobRegistry(QUEUE_HIGH, connection=world.services.queue_redis).get_job_ids()
    assert scheduled == [outbox.job_id(slip["id"], 2)], scheduled
    counted = metrics.counters(world.r)[metrics.MESSAGES]
    assert counted.get("booking|retrying") == 1 and counted.get("reply|delivered") == 1, counted
    violations = ledger_violations(world)
    figures("duplicates/sms-delivery", faults=2 * (COPIES - 1), requests_sent=2 * COPIES,
            messages=2, violations=violations)
    assert violations == []


# ---------------------------------------------------------------- session-end notices
def test_a_session_end_notice_posted_three_times_at_once_sends_one_continue_sms(world):
    phone = world.phone(CITIZEN)
    phone.dial()
    phone.answer(option(phone.screen, "English"))
    phone.answer("1")
    phone.answer("Asha Devi")  # the network drops the session here
    notice = form_post(world.url + "/ussd/events", {
        "sessionId": phone.session_id, "phoneNumber": CITIZEN, "serviceCode": "*384*123#",
        "networkCode": "99999", "status": "Incomplete", "hopsCount": "4",
        "durationInMillis": "41000", "input": "*".join(phone.inputs),
        "lastAppResponse": phone.screen, "errorMessage": "", "cost": "0.0",
        "date": "2026-11-26 10:00:00"})
    assert {r.status_code for r in at_once(notice)} == {200}
    world.deliver()

    texts = [m.message for m in world.fake.sent_to(CITIZEN)]
    assert len(texts) == 1 and "continue" in texts[0], texts
    ended = metrics.counters(world.r)[metrics.SESSIONS]
    assert ended == {"Incomplete|99999": 1}, ended
    violations = ledger_violations(world)
    figures("duplicates/ussd-events", faults=COPIES - 1, requests_sent=COPIES + 4,
            messages=len(texts), violations=violations)
    assert violations == []
