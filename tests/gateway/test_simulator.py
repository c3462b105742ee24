"""The simulator's page and inbox API: served only with the switch on; the inbox shows what the
handset receives (the real code, where delivery stands) while Redis keeps only the mask."""
from __future__ import annotations

import io
import json
import re

import pytest

from gateway import create_app, demo, importer, keys, outbox, store, worker
from gateway.conversation import now_in
from tests.fakes.network import CODE_RE, REF_RE, LiveServer, Phone, option

CITIZEN = "+919876500001"
ALL_DAY = "00:00-23:59"
SETUP_RE = re.compile(r'<script id="setup" type="application/json">(.*?)</script>', re.S)


@pytest.fixture
def simulator_app(app_config, rdb):
    app = create_app(app_config.with_overrides(simulator=True, webhook_key="sim-key", sms_backend="outbox"))
    services = app.extensions["teeka"]
    today = now_in(services).date()
    demo.load(services, today)
    rows = f"centre_id,date,vaccine,min_age,dose,slot,capacity\n101,{today},Covishield,18,1|2,{ALL_DAY},5\n"
    assert importer.import_csv(services.redis, "sessions", io.StringIO(rows)).ok
    yield app
    services.redis.close()
    services.queue_redis.close()


def page_setup(html: str) -> dict:
    return json.loads(SETUP_RE.search(html).group(1))


def book(phone: Phone) -> str:
    """Book today's all-day slot at centre 101 for a new person; returns the ref."""
    phone.dial()
    phone.answer(option(phone.screen, "English"))
    for answer in ("1", "Asha Devi", "1990", "1", "110001"):
        phone.answer(answer)
    phone.answer(option(phone.screen, "Connaught"))
    phone.answer("1")
    phone.answer(option(phone.screen, ALL_DAY))
    phone.answer("1")
    assert phone.ended, phone.screen
    return re.search(r"(\d{5} \d{5})", phone.screen).group(1)


def test_without_the_switch_there_is_no_simulator(client):
    for path in ("/simulator", "/simulator/api/inbox?phone=%2B919876500001", "/simulator/assets/simulator.js",
                 "/static/simulator.js"):
        assert client.get(path).status_code == 404, path


def test_the_page_shows_two_phones_and_carries_what_its_script_needs(simulator_app):
    response = simulator_app.test_client().get("/simulator")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True)
    assert 'id="citizen"' in html and 'id="vaccinator"' in html
    setup = page_setup(html)
    assert setup["key"] == "sim-key"
    assert setup["ussdCode"] == "*384*123#"
    assert setup["urls"] == {"ussd": "/ussd", "ussdEvents": "/ussd/events", "smsIncoming": "/sms/incoming",
                             "inbox": "/simulator/api/inbox"}
    assert {"phone": "+919810000101", "name": "Sunita Rao", "centre": "101"} in setup["vaccinators"]
    for asset in ("simulator.js", "simulator.css"):
        assert simulator_app.test_client().get(f"/simulator/assets/{asset}").status_code == 200


def test_the_inbox_refuses_what_is_not_a_phone_number(simulator_app):
    response = simulator_app.test_client().get("/simulator/api/inbox?phone=call-me")
    assert response.status_code == 400
    assert response.get_json() == {"error": "not a phone number"}


def test_the_inbox_reads_a_national_number_and_starts_empty(simulator_app):
    response = simulator_app.test_client().get("/simulator/api/inbox?phone=98765%2000001")
    assert response.get_json() == {"phone": CITIZEN, "messages": []}


def test_the_inbox_shows_the_real_code_and_the_delivery_status(simulator_app):
    services = simulator_app.extensions["teeka"]
    with LiveServer(simulator_app) as server:
        ref = book(Phone(server.url, CITIZEN, key="sim-key"))
    inbox = simulator_app.test_client()

    [slip] = inbox.get(f"/simulator/api/inbox?phone={CITIZEN}").get_json()["messages"]
    assert slip["status"] == "queued" and slip["purpose"] == "booking"
    assert REF_RE.search(slip["text"]).group(1) == ref
    code = CODE_RE.search(slip["text"]).group(1)
    assert code == store.code_for(services, ref.replace(" ", ""))
    stored = services.redis.hget(keys.message(slip["id"]), "body")
    assert "Code ####" in stored and code not in stored

    worker.work(services.config, burst=True, services=services)
    [slip] = inbox.get(f"/simulator/api/inbox?phone={CITIZEN}").get_json()["messages"]
    assert slip["status"] == outbox.SENT and slip["sent"] > 0
    assert f"Code {code}" in slip["text"]
