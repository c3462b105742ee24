"""The fake Africa's Talking server answers like the real one (shapes from recorded traffic)."""
from __future__ import annotations

import http.client
import json
import re
import threading
import time
import urllib.parse

import requests

from tests.fakes.fake_at import (
    AUTH_FAILED,
    FakeAT,
    delivery_report_body,
    fake_at,  # noqa: F401 (fixture)
    incoming_sms_body,
)


def post(fake, key=None, **form):
    form.setdefault("username", "sandbox")
    form.setdefault("bulkSMSMode", "1")
    return requests.post(fake.url + "/version1/messaging", data=form,
                         headers={"apiKey": fake.api_key if key is None else key, "Accept": "application/json"},
                         timeout=5)


def test_send_is_answered_201_with_the_provider_body_shape(fake_at):
    answer = post(fake_at, to="+254711000001", message="Hello Ref 12345", **{"from": "TEEKA"})

    assert answer.status_code == 201
    assert answer.headers["Content-Type"] == "application/json"
    data = answer.json()["SMSMessageData"]
    assert data["Message"] == "Sent to 1/1 Total Cost: KES 0.8000"
    [row] = data["Recipients"]
    assert row["statusCode"] == 101 and row["status"] == "Success" and row["number"] == "+254711000001"
    assert re.fullmatch(r"ATXid_[0-9a-f]{32}", row["messageId"])
    assert row["cost"] == "KES 0.8000" and row["messageParts"] == 1


def test_every_request_is_recorded_with_its_form_and_key(fake_at):
    post(fake_at, to="+254711000001,+254711000002", message="two", enqueue="1")

    [request] = fake_at.requests
    assert request.form == {"username": "sandbox", "to": "+254711000001,+254711000002", "message": "two",
                            "bulkSMSMode": "1", "enqueue": "1"}
    assert request.api_key == "test-api-key"
    assert fake_at.sent_to("+254711000002") == [request]
    rows = json.loads(request.answer)["SMSMessageData"]["Recipients"]
    assert [r["statusCode"] for r in rows] == [102, 102]  # enqueue=1 answers Queued


def test_wrong_api_key_gets_the_plain_text_401(fake_at):
    answer = post(fake_at, key="wrong", to="+254711000001", message="x")

    assert answer.status_code == 401
    assert answer.headers["Content-Type"] == "text/plain; charset=UTF-8"
    assert answer.text == AUTH_FAILED


def test_scripted_recipients_fail_with_their_status_code(fake_at):
    fake_at.script("+254711000003", "invalid_phone")
    fake_at.script("+254711000004", "blacklist")

    rows = post(fake_at, to="+254711000001,+254711000003,+254711000004", message="x").json()
    codes = [(r["statusCode"], r["status"], r["messageId"]) for r in rows["SMSMessageData"]["Recipients"]]
    assert codes == [(101, "Success", codes[0][2]), (403, "InvalidPhoneNumber", "None"), (406, "UserInBlacklist", "None")]
    assert rows["SMSMessageData"]["Message"].startswith("Sent to 1/3")


def test_script_can_change_while_running_and_fail_first_n(fake_at):
    number = "+254711000005"
    fake_at.fail_first(number, 2, "insufficient_balance")

    first = [post(fake_at, to=number, message="x").json()["SMSMessageData"]["Recipients"][0]["statusCode"]
             for _ in range(3)]
    fake_at.script(number, "http_500")
    failed = post(fake_at, to=number, message="x")

    assert first == [405, 405, 101]
    assert failed.status_code == 500 and failed.headers["Content-Type"].startswith("text/plain")


def test_timeout_behaviour_answers_after_the_client_gave_up(fake_at):
    fake_at.timeout_sleep = 1.0
    fake_at.script("+254711000006", "timeout")

    started = time.monotonic()
    try:
        post_timeout = requests.post(fake_at.url + "/version1/messaging", timeout=0.3,
                                     data={"username": "sandbox", "to": "+254711000006", "message": "x"},
                                     headers={"apiKey": fake_at.api_key})
    except requests.exceptions.ReadTimeout:
        post_timeout = None
    assert post_timeout is None and time.monotonic() - started < 0.9


def test_no_recipients_answer_is_a_2xx_with_an_empty_list(fake_at):
    fake_at.script("+254711000007", "no_recipients")

    answer = post(fake_at, to="+254711000007", message="x")

    assert answer.status_code == 201
    assert answer.json() == {"SMSMessageData": {"Message": "InvalidSenderId", "Recipients": []}}


def test_delay_applies_to_every_answer(fake_at):
    fake_at.delay = 0.2

    started = time.monotonic()
    post(fake_at, to="+254711000008", message="x")

    assert time.monotonic() - started >= 0.2


def test_sustains_600_concurrent_slow_requests():
    fake = FakeAT(delay=1.0).start()
    host, port = fake.url.removeprefix("http://").split(":")
    body = urllib.parse.urlencode({"username": "sandbox", "to": "+254711000009", "message": "x"})
    statuses = []

    def one():
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("POST", "/version1/messaging", body=body,
                     headers={"apiKey": fake.api_key, "Content-Type": "application/x-www-form-urlencoded"})
        statuses.append(conn.getresponse().status)
        conn.close()

    threads = [threading.Thread(target=one) for _ in range(600)]
    started = time.monotonic()
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        fake.stop()
    assert statuses.count(201) == 600
    assert time.monotonic() - started < 10  # one at a time would take 600 s
    assert fake.max_in_flight() >= 300


def test_callback_bodies_encode_plus_as_2B():
    dlr = delivery_report_body("ATXid_1", "Failed", "+919812345678", failure_reason="UserInBlackList")
    sms = incoming_sms_body("+919812345678", "V 48213 90576 1234", message_id="abc")

    assert "phoneNumber=%2B919812345678" in dlr and "+" not in dlr
    assert urllib.parse.parse_qs(dlr)["failureReason"] == ["UserInBlackList"]
    assert "from=%2B919812345678" in sms
    assert urllib.parse.parse_qs(sms)["text"] == ["V 48213 90576 1234"]
