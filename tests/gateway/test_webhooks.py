"""The webhook contract (DESIGN 4.1) over HTTP: keys, validation, answers, Redis outages."""
from __future__ import annotations

import json
import logging
import os
import signal
import time

import pytest

from gateway import create_app
from tests.conftest import data_keys, free_port, start_redis_server

PHONE = "+919812345210"

VALID = {
    "/ussd": {"sessionId": "ATUid_1", "serviceCode": "*384*123#", "phoneNumber": PHONE, "text": "",
              "networkCode": "40410"},
    "/ussd/events": {"sessionId": "ATUid_1", "status": "Success", "phoneNumber": PHONE, "hopsCount": "3"},
    "/sms/incoming": {"from": PHONE, "id": "msg-1", "text": "HELP", "to": "12345"},
    "/sms/delivery": {"id": "ATXid_1", "status": "Success", "phoneNumber": PHONE},
}
REQUIRED = [
    ("/ussd", "sessionId"), ("/ussd", "serviceCode"), ("/ussd", "phoneNumber"), ("/ussd", "text"),
    ("/ussd/events", "sessionId"), ("/ussd/events", "status"),
    ("/sms/incoming", "from"), ("/sms/incoming", "id"), ("/sms/incoming", "text"),
    ("/sms/delivery", "id"), ("/sms/delivery", "status"),
]
PHONES = [("/ussd", "phoneNumber"), ("/ussd/events", "phoneNumber"), ("/sms/incoming", "from"),
          ("/sms/delivery", "phoneNumber")]


def without(form: dict, field: str) -> dict:
    return {k: v for k, v in form.items() if k != field}


# ---- answers ----

def test_ussd_answers_a_screen_as_plain_text(client):
    response = client.post("/ussd", data=VALID["/ussd"])
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.text[:4] in ("CON ", "END ")
    assert len(response.text) > 4


def test_ussd_accepts_a_plus_that_form_encoding_turned_into_a_space(client):
    body = "sessionId=ATUid_2&serviceCode=*384*123%23&phoneNumber=+919812345210&text="
    response = client.post("/ussd", data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert response.text[:4] in ("CON ", "END ")


def test_ussd_events_and_incoming_sms_are_acknowledged(client):
    assert client.post("/ussd/events", data=VALID["/ussd/events"]).status_code == 200
    assert client.post("/sms/incoming", data=VALID["/sms/incoming"]).status_code == 200


def test_incoming_sms_may_be_empty_and_to_is_not_validated(client):
    form = dict(VALID["/sms/incoming"], text="", to="not a number")
    assert client.post("/sms/incoming", data=form).status_code == 200


def test_unknown_fields_are_ignored(client):
    form = dict(VALID["/ussd/events"], somethingNew="x" * 5000)
    assert client.post("/ussd/events", data=form).status_code == 200


def test_a_field_of_exactly_1000_characters_is_accepted(client):
    form = dict(VALID["/ussd/events"], input="1" * 1000)
    assert client.post("/ussd/events", data=form).status_code == 200


# ---- malformed requests: 400 naming the field, nothing changes ----

@pytest.mark.parametrize("path, field", REQUIRED)
def test_missing_field_is_refused_naming_it(client, rdb, path, field):
    response = client.post(path, data=without(VALID[path], field))
    assert response.status_code == 400
    assert response.text == f"field '{field}' required"
    assert data_keys(rdb) == []


@pytest.mark.parametrize("path", list(VALID))
def test_empty_request_is_refused_naming_the_first_field(client, path):
    response = client.post(path)
    assert response.status_code == 400
    assert "required" in response.text and "\n" not in response.text


@pytest.mark.parametrize("path, field", [("/ussd", "text"), ("/ussd", "sessionId"), ("/ussd/events", "input"),
                                         ("/sms/incoming", "text"), ("/sms/incoming", "to"),
                                         ("/sms/delivery", "failureReason")])
def test_field_over_1000_characters_is_refused_naming_it(client, rdb, path, field):
    response = client.post(path, data=dict(VALID[path], **{field: "1" * 1001}))
    assert response.status_code == 400
    assert response.text == f"field '{field}' longer than 1000 characters"
    assert data_keys(rdb) == []


@pytest.mark.parametrize("path, field", PHONES)
@pytest.mark.parametrize("bad", ["hello", "12", "+91981234521099999"])
def test_unparseable_phone_number_is_refused_naming_the_field(client, rdb, path, field, bad):
    response = client.post(path, data=dict(VALID[path], **{field: bad}))
    assert response.status_code == 400
    assert response.text == f"field '{field}' is not a phone number"
    assert data_keys(rdb) == []


# ---- the webhook key ----

@pytest.fixture
def keyed_client(app_config, rdb):
    app = create_app(app_config.with_overrides(webhook_key="s3cret-key"))
    return app.test_client()


@pytest.mark.parametrize("path", list(VALID))
@pytest.mark.parametrize("how", ["missing", "wrong query", "wrong header", "empty"])
def test_webhook_without_the_right_key_is_forbidden_and_changes_nothing(keyed_client, rdb, path, how):
    url, headers = path, {}
    if how == "wrong query":
        url = path + "?key=s3cret-kez"
    elif how == "wrong header":
        headers = {"X-Webhook-Key": "s3cret"}
    elif how == "empty":
        url = path + "?key="
    response = keyed_client.post(url, data=VALID[path], headers=headers)
    assert response.status_code == 403
    assert data_keys(rdb) == []


def test_webhook_key_is_accepted_in_the_query(keyed_client):
    response = keyed_client.post("/ussd?key=s3cret-key", data=VALID["/ussd"])
    assert response.status_code == 200


def test_webhook_key_is_accepted_in_a_header(keyed_client):
    response = keyed_client.post("/sms/incoming", data=VALID["/sms/incoming"],
                                 headers={"X-Webhook-Key": "s3cret-key"})
    assert response.status_code == 200


def test_health_needs_no_webhook_key(keyed_client):
    assert keyed_client.get("/healthz").status_code == 200


# ---- logging ----

@pytest.fixture
def log_lines():
    """Teeka's log records as dicts, whatever the logging setup of the process."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record)

    logger = logging.getLogger("teeka")
    handler, level = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lambda: [dict(event=r.getMessage(), **r.teeka_fields) for r in records]
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_each_webhook_request_logs_one_line_with_the_phone_masked(client, log_lines):
    client.post("/sms/incoming", data=dict(VALID["/sms/incoming"], text="V 4821390576 7305"))
    lines = [line for line in log_lines() if line["event"] == "webhook"]
    assert len(lines) == 1
    assert lines[0]["path"] == "/sms/incoming" and lines[0]["status"] == 200
    assert lines[0]["phone"] == "+9198*****210"
    everything = json.dumps(log_lines())
    assert "7305" not in everything and "9812345210" not in everything


def test_a_refused_request_logs_its_reason(client, log_lines):
    client.post("/ussd", data=without(VALID["/ussd"], "sessionId"))
    (line,) = [line for line in log_lines() if line["event"] == "webhook"]
    assert line["status"] == 400 and line["reason"] == "field 'sessionId' required"


# ---- Redis down ----

@pytest.fixture
def down_client(app_config):
    """An app whose Redis port has nobody listening."""
    app = create_app(app_config.with_overrides(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    return app.test_client()


@pytest.fixture
def hung_client(app_config):
    """An app whose Redis accepts connections but never answers (the process is stopped)."""
    port = free_port()
    server = start_redis_server(port)
    os.kill(server.pid, signal.SIGSTOP)
    try:
        yield create_app(app_config.with_overrides(redis_url=f"redis://127.0.0.1:{port}/0")).test_client()
    finally:
        os.kill(server.pid, signal.SIGCONT)
        server.terminate()
        server.wait(timeout=10)


def test_ussd_apologises_quickly_when_redis_is_down(down_client, log_lines):
    started = time.monotonic()
    response = down_client.post("/ussd", data=VALID["/ussd"])
    assert time.monotonic() - started < 1.0
    assert response.status_code == 200
    assert response.text == "END Service busy, please try again later."
    assert any(line["event"] == "redis_unavailable" for line in log_lines())


def test_ussd_apologises_within_a_second_when_redis_hangs(hung_client):
    started = time.monotonic()
    response = hung_client.post("/ussd", data=VALID["/ussd"])
    assert time.monotonic() - started < 1.0
    assert response.status_code == 200
    assert response.text == "END Service busy, please try again later."


@pytest.mark.parametrize("path", ["/sms/incoming", "/ussd/events", "/sms/delivery"])
def test_other_webhooks_ask_for_a_retry_when_redis_is_down(down_client, path):
    assert down_client.post(path, data=VALID[path]).status_code == 503


def test_incoming_sms_asks_for_a_retry_when_redis_hangs(hung_client):
    started = time.monotonic()
    assert hung_client.post("/sms/incoming", data=VALID["/sms/incoming"]).status_code == 503
    assert time.monotonic() - started < 1.5


def test_malformed_request_is_still_a_400_when_redis_is_down(down_client):
    response = down_client.post("/sms/delivery", data=without(VALID["/sms/delivery"], "status"))
    assert response.status_code == 400
    assert response.text == "field 'status' required"


def test_delivery_report_for_an_unknown_message_is_acknowledged(client):
    assert client.post("/sms/delivery", data=VALID["/sms/delivery"]).status_code == 200


def test_an_oversized_request_is_refused(client, rdb):
    response = client.post("/sms/incoming", data=dict(VALID["/sms/incoming"], linkId="x" * 100_000))
    assert response.status_code == 413
    assert data_keys(rdb) == []
