"""`/metrics` in Prometheus text format, over real HTTP: the counters move as a citizen books,
is verified and vaccinated, and two separate web processes add to the same totals."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
import requests

from gateway import create_app
from tests.conftest import free_port, gateway_env
from tests.fakes.fake_at import FORM, delivery_report_body, fake_at  # noqa: F401 (fixture)
from tests.fakes.network import CERT_RE, LiveServer, Phone
from tests.gateway.test_verification import (CITIZEN, VACCINATOR_101, gateway,  # noqa: F401
                                             wrong)

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? '
                    r'(-?[0-9.e+]+|\+Inf|NaN)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


# ---- reading the exposition ----
def samples(text: str) -> list[tuple[str, dict, float]]:
    """Every sample line as (name, labels, value); fails on a line Prometheus would reject."""
    found = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a Prometheus sample line: {line!r}"
        found.append((match.group(1), dict(LABEL.findall(match.group(2) or "")), float(match.group(3))))
    return found


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one series (0 when it is absent: a counter not yet incremented)."""
    for found, have, value in samples(text):
        if found == name and have == labels:
            return value
    return 0.0


def scrape(base_url: str, until=None, timeout: float = 5.0) -> str:
    """GET /metrics; with `until`, again until it holds (a request is counted just after its answer)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = requests.get(base_url + "/metrics", timeout=5)
        assert answer.status_code == 200
        if until is None or until(answer.text) or time.monotonic() > deadline:
            return answer.text
        time.sleep(0.02)


def hops(phone: Phone) -> int:
    return len(phone.inputs) + 1


# ---- a booking, verification and dose move the counters ----
def test_counters_move_through_a_booking_a_verification_and_a_dose(gateway):
    url = gateway.server.url
    before = scrape(url)
    assert sample(before, "teeka_appointment_events_total", event="booked") == 0

    phone = gateway.phone(CITIZEN)
    from tests.gateway.test_core_loop import book_today

    ref = book_today(phone)
    booked = scrape(url, lambda t: sample(t, "teeka_webhook_requests_total", endpoint="/ussd",
                                          status="200") == hops(phone))
    assert sample(booked, "teeka_appointment_events_total", event="booked") == 1
    assert sample(booked, "teeka_messages_total", purpose="booking", status="queued") == 1
    assert sample(booked, "teeka_messages_total", purpose="booking", status="sent") == 0
    assert sample(booked, "teeka_queue_jobs", queue="sms-high", state="queued") == 1
    assert sample(booked, "teeka_webhook_duration_seconds_count", endpoint="/ussd") == hops(phone)
    assert sample(booked, "teeka_webhook_duration_seconds_sum", endpoint="/ussd") > 0

    gateway.deliver()
    slip = gateway.fake.sent_to(CITIZEN)[0]
    provider_id = json.loads(slip.answer)["SMSMessageData"]["Recipients"][0]["messageId"]
    report = requests.post(url + "/sms/delivery", data=delivery_report_body(provider_id, "Success", CITIZEN),
                           headers={"Content-Type": FORM}, timeout=10)
    assert report.status_code == 200
    code = re.search(r"Code (\d{4})", slip.message).group(1)
    vaccinator = gateway.phone(VACCINATOR_101)
    vaccinator.sms(f"V {ref} {wrong(code)}")
    vaccinator.sms(f"V {ref} {code}")
    vaccinator.sms(f"DONE {ref}")
    gateway.deliver()
    phone.sms(f"NOTME {ref}")
    gateway.deliver()
    assert any(CERT_RE.search(t) for t in gateway.texts(CITIZEN))

    after = scrape(url, lambda t: sample(t, "teeka_webhook_requests_total", endpoint="/sms/incoming",
                                         status="200") == 4)
    assert sample(after, "teeka_webhook_requests_total", endpoint="/sms/delivery", status="200") == 1
    for event in ("booked", "wrong_code", "verified", "vaccinated", "disputed"):
        assert sample(after, "teeka_appointment_events_total", event=event) == 1, event
    assert sample(after, "teeka_appointment_events_total", event="locked") == 0
    assert sample(after, "teeka_messages_total", purpose="booking", status="sending") == 1
    assert sample(after, "teeka_messages_total", purpose="booking", status="sent") == 1
    assert sample(after, "teeka_messages_total", purpose="booking", status="delivered") == 1
    assert sample(after, "teeka_messages_total", purpose="completion", status="sent") == 1
    assert sample(after, "teeka_messages_total", purpose="reply", status="sent") >= 4
    assert sample(after, "teeka_queue_jobs", queue="sms-high", state="queued") == 0


def test_five_wrong_codes_count_one_lockout(gateway):
    ref, code = gateway.book()
    vaccinator = gateway.phone(VACCINATOR_101)
    for _ in range(5):
        vaccinator.sms(f"V {ref} {wrong(code)}")
    text = scrape(gateway.server.url, lambda t: sample(
        t, "teeka_webhook_requests_total", endpoint="/sms/incoming", status="200") == 5)
    assert sample(text, "teeka_appointment_events_total", event="wrong_code") == 5
    assert sample(text, "teeka_appointment_events_total", event="locked") == 1


def test_a_refused_message_is_counted_as_failed(gateway):
    gateway.fake.script(CITIZEN, "invalid_phone")
    phone = gateway.phone(CITIZEN)
    from tests.gateway.test_core_loop import book_today

    book_today(phone)
    gateway.deliver()
    text = scrape(gateway.server.url)
    assert sample(text, "teeka_messages_total", purpose="booking", status="failed") == 1
    assert sample(text, "teeka_messages_total", purpose="booking", status="sent") == 0


def test_bad_requests_and_wrong_keys_are_counted_by_status(app_config, rdb):
    app = create_app(app_config.with_overrides(webhook_key="s3cret"))
    with LiveServer(app) as server:
        form = {"sessionId": "ATUid_1", "serviceCode": "*384*123#", "phoneNumber": CITIZEN, "text": ""}
        assert requests.post(server.url + "/ussd", data=form, timeout=5).status_code == 403
        assert requests.post(server.url + "/ussd?key=s3cret", data=form, timeout=5).status_code == 200
        bad = dict(form, phoneNumber="12")
        assert requests.post(server.url + "/ussd?key=s3cret", data=bad, timeout=5).status_code == 400
        text = scrape(server.url, lambda t: sample(t, "teeka_webhook_duration_seconds_count",
                                                   endpoint="/ussd") == 3)
    for status in ("200", "400", "403"):
        assert sample(text, "teeka_webhook_requests_total", endpoint="/ussd", status=status) == 1
    app.extensions["teeka"].redis.close()


def test_the_exposition_is_well_formed_prometheus_text(gateway):
    phone = gateway.phone(CITIZEN)
    phone.dial()
    text = scrape(gateway.server.url, lambda t: sample(t, "teeka_webhook_duration_seconds_count",
                                                       endpoint="/ussd") == 1)
    answer = requests.get(gateway.server.url + "/metrics", timeout=5)
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    names = {name for name, _, _ in samples(text)}
    declared = set(re.findall(r"^# TYPE (\S+) (?:counter|gauge|histogram)$", text, re.M))
    for name in names:
        assert name in declared or re.sub(r"_(bucket|sum|count)$", "", name) in declared, name
    buckets = [(labels["le"], value) for name, labels, value in samples(text)
               if name == "teeka_webhook_duration_seconds_bucket" and labels["endpoint"] == "/ussd"]
    assert buckets[-1][0] == "+Inf" and buckets[-1][1] == 1
    values = [v for _, v in buckets]
    assert values == sorted(values), "buckets are cumulative"
    for queue in ("sms-high", "sms-low", "default"):
        assert f'teeka_queue_jobs{{queue="{queue}",state="queued"}}' in text


# ---- several processes, one set of counters ----
@pytest.fixture
def two_web_processes(redis_url, rdb):
    """Two separate `python -m gateway web` servers on the same Redis; yields their base URLs."""
    env = gateway_env(redis_url, GATEWAY_CODE_SECRET="test-secret")
    ports = [free_port(), free_port()]
    procs = [subprocess.Popen([sys.executable, "-m", "gateway", "web", "--port", str(port),
                               "--processes", "1", "--threads", "2"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for port in ports]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        deadline = time.monotonic() + 30
        for url, proc in zip(urls, procs):
            while True:
                assert proc.poll() is None, "web process exited"
                try:
                    requests.get(url + "/healthz", timeout=1)
                    break
                except requests.ConnectionError:
                    assert time.monotonic() < deadline, "web process did not start"
                    time.sleep(0.1)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_two_web_processes_add_to_the_same_counters(two_web_processes):
    first, second = two_web_processes
    for i, url in enumerate([first, first, first, second, second]):
        screen = Phone(url, f"+91987650{i:04d}").dial()
        assert "English" in screen
    bad = urllib.parse.urlencode({"sessionId": "ATUid_x", "serviceCode": "*384*123#", "text": ""})
    assert requests.post(second + "/ussd", data=bad, headers={"Content-Type": FORM},
                         timeout=5).status_code == 400

    def complete(text: str) -> bool:
        return sample(text, "teeka_webhook_duration_seconds_count", endpoint="/ussd") == 6

    texts = [scrape(first, complete), scrape(second, complete)]
    for text in texts:
        assert sample(text, "teeka_webhook_requests_total", endpoint="/ussd", status="200") == 5
        assert sample(text, "teeka_webhook_requests_total", endpoint="/ussd", status="400") == 1
        assert sample(text, "teeka_webhook_duration_seconds_bucket", endpoint="/ussd", le="+Inf") == 6
    assert texts[0] == texts[1]
