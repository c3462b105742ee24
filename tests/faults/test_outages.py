"""Outages on the running gateway: Redis down or hung, the SMS provider failing for a minute.

Redis down: a USSD hop still answers within a second with a polite END, the provider's other
callbacks get 503 so it retries them, /readyz says not ready. Provider down for a minute
(TEEKA_FAULT_OUTAGE_SECONDS, default 60): every message goes out once it is back, each within
its attempt budget, none twice.
"""
from __future__ import annotations

import os
import secrets
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from gateway import jobs, outbox
from tests.fakes.fake_at import FORM
from tests.faults.conftest import BUSY, answering_after, book, ussd, wait_until
from tests.faults.invariants import check

OUTAGE = float(os.environ.get("TEEKA_FAULT_OUTAGE_SECONDS", "60"))
HOP_BUDGET = 1.0  # seconds: DESIGN 4.1, a USSD hop answers within one second when Redis is down
PROBES = 5
BOOKINGS = 20  # slips: messages carrying a security code
COMMANDS = 80  # HELP commands: plain replies

pytestmark = pytest.mark.slow


def timed(call):
    started = time.monotonic()
    answer = call()
    return answer, time.monotonic() - started


def post(url: str, path: str, fields: dict) -> requests.Response:
    return requests.post(url + path, data=urllib.parse.urlencode(fields), headers={"Content-Type": FORM},
                         timeout=10)


def callbacks(url: str) -> dict[str, requests.Response]:
    """One of each provider callback other than USSD, as Africa's Talking posts them."""
    return {
        "/sms/incoming": post(url, "/sms/incoming", {"from": "+919876511111", "to": "12345", "text": "HELP",
                                                     "id": "ATPid_" + secrets.token_hex(8)}),
        "/sms/delivery": post(url, "/sms/delivery", {"id": "ATXid_" + secrets.token_hex(8), "status": "Success",
                                                     "phoneNumber": "+919876511111"}),
        "/ussd/events": post(url, "/ussd/events", {"sessionId": "ATUid_" + secrets.token_hex(8),
                                                   "status": "Incomplete", "phoneNumber": "+919876511111"}),
    }


def probe_down(gw, how: str) -> dict:
    """What the gateway answers while Redis is `how` (killed / frozen); returns the figures."""
    slowest = 0.0
    for n in range(PROBES):
        number = f"+9198765{n:05d}"
        session = "ATUid_" + secrets.token_hex(8)
        for inputs in ([], ["1"]):  # a first dial, and a hop in the middle of a session
            answer, took = timed(lambda: ussd(gw.url, session, number, inputs))
            assert answer.status_code == 200, answer.text
            assert answer.text.startswith("END ") and BUSY in answer.text, answer.text
            assert took < HOP_BUDGET, f"redis {how}: USSD answered in {took:.2f}s"
            slowest = max(slowest, took)
    ready = requests.get(gw.url + "/readyz", timeout=10)
    assert ready.status_code == 503 and ready.json()["ready"] is False, ready.text
    for path, answer in callbacks(gw.url).items():
        assert answer.status_code == 503, f"redis {how}: {path} answered {answer.status_code}"
    return {"slowest hop": slowest, "requests": 2 * PROBES + 4}


def test_redis_down_ussd_apologises_within_a_second_and_callbacks_get_503(gateway):
    gw = gateway
    gw.load_data()
    gw.start_web()
    gw.start_worker(processes=1)
    wait_until(gw.ready, 30, what="/readyz to say ready")
    before = book(gw.url, "+919876510001")
    assert before.outcome == "booked"

    gw.redis.kill()
    killed = probe_down(gw, "killed")
    back = answering_after(gw, gw.redis.start())

    gw.redis.freeze()
    try:
        frozen = probe_down(gw, "frozen")
    finally:
        gw.redis.thaw()
    thawed = answering_after(gw, time.monotonic())
    wait_until(gw.ready, 30, what="/readyz to say ready again")
    after = book(gw.url, "+919876510002")
    assert after.outcome == "booked"

    found = check(gw.r, gw.fake.snapshot())
    print(f"\n[redis down] faults injected: 2 (SIGKILL, SIGSTOP), requests sent: "
          f"{killed['requests'] + frozen['requests'] + before.hops + after.hops}, slowest USSD answer: killed "
          f"{killed['slowest hop'] * 1000:.0f} ms, hung {frozen['slowest hop'] * 1000:.0f} ms; "
          f"answering again {back:.2f}s / {thawed:.2f}s after Redis returned; "
          f"messages checked: {found.figures['messages checked']}, violations found: {len(found.violations)}")
    assert found.violations == []


def test_provider_down_for_a_minute_every_message_goes_out_afterwards_within_its_attempts(gateway):
    gw = gateway
    gw.load_data()
    gw.start_web()
    gw.start_worker()
    wait_until(gw.ready, 30, what="/readyz to say ready")

    gw.fake.outage(OUTAGE)
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        bookings = list(pool.map(lambda n: book(gw.url, f"+91987652{n:04d}"), range(BOOKINGS)))
        replies = list(pool.map(lambda n: gw.sms_in(f"+91987653{n:04d}", "HELP"), range(COMMANDS)))
    assert [b.outcome for b in bookings] == ["booked"] * BOOKINGS, [b.screen for b in bookings if not b.ref]
    assert [a.status_code for a in replies] == [200] * COMMANDS
    expected = BOOKINGS + COMMANDS

    # Attempt 1 now, attempt 2 after SHORT[0], attempt 3 after SHORT[1] more (each +-10%).
    budget = OUTAGE + 1.1 * (jobs.SHORT[0] + jobs.SHORT[1]) + 30
    settled = wait_until(lambda: _all_sent(gw, expected), budget, 0.5, "every message to be accepted")
    recovered = time.monotonic() - began
    reported = gw.report_deliveries()
    wait_until(lambda: set(gw.message_statuses().values()) == {outbox.DELIVERED}, 30, 0.2,
               "every message to be delivered")

    sent = gw.fake.snapshot()
    failed = sum(1 for req in sent if req.status == 500)
    records = [outbox.get(gw.services, mid) for mid in gw.message_statuses()]
    attempts = Counter(int(rec["attempts"]) for rec in records)
    found = check(gw.r, sent)
    print(f"\n[provider outage {OUTAGE:.0f}s] faults injected: {failed} HTTP 500 answers, requests sent: "
          f"{sum(b.hops for b in bookings) + COMMANDS} webhooks + {len(sent)} provider requests; "
          f"all {settled} messages accepted {recovered:.0f}s after the outage began, {reported} delivery reports; "
          f"attempts per message: {dict(sorted(attempts.items()))} (max {outbox.MAX_ATTEMPTS}); "
          f"duplicate sends: {found.figures['duplicate sends']}; messages checked: "
          f"{found.figures['messages checked']}, violations found: {len(found.violations)}")
    assert found.violations == []
    assert found.figures["duplicate sends"] == 0
    assert all(int(rec["attempts"]) <= int(rec["max_attempts"]) for rec in records)
    assert max(attempts) > 1, "the outage should have cost every message at least one attempt"


def _all_sent(gw, expected: int) -> int:
    statuses = gw.message_statuses()
    done = len(statuses) >= expected and all(s in (outbox.SENT, outbox.DELIVERED) for s in statuses.values())
    assert not any(s in (outbox.FAILED, outbox.DENIED) for s in statuses.values()), statuses
    return len(statuses) if done else 0
