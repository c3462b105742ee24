"""Load shedding on launch days: `python -m gateway shed <percent>` answers that share of NEW
USSD sessions "busy, please try again in 15 minutes", while sessions under way continue. The
running web processes follow a change within about a second, without a restart."""
from __future__ import annotations

import subprocess
import sys
import time
import urllib.parse

import pytest
import requests

from gateway import create_app, keys, metrics, shedding
from tests.conftest import gateway_env
from tests.fakes.fake_at import FORM
from tests.fakes.network import Phone, option
from tests.faults.invariants import check
from tests.faults.test_races import ROOT, WebProcesses, code_violations, figures, load_world
from tests.gateway.test_metrics import sample, scrape

pytestmark = pytest.mark.slow  # against `python -m gateway web` processes
SHED_TEXT = "Service busy, please try again in 15 minutes."
NEW_SESSIONS = 200


def shed(redis_url: str, *args: str) -> str:
    """`python -m gateway shed ...` as an operator types it; returns what it printed."""
    env = gateway_env(redis_url)
    done = subprocess.run([sys.executable, "-m", "gateway", "shed", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


HOPS = {"sent": 0}  # USSD requests this module sent, for its figures


def first_hop(url: str, session_id: str, number: str = "+919876570001") -> str:
    form = {"sessionId": session_id, "serviceCode": "*384*123#", "phoneNumber": number, "text": ""}
    HOPS["sent"] += 1
    answer = requests.post(url + "/ussd", data=urllib.parse.urlencode(form),
                           headers={"Content-Type": FORM}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.text


def settle(url: str, shed_now: bool, timeout: float = 5.0) -> float:
    """Dial new sessions until every web process follows the new share; seconds it took."""
    started = time.monotonic()
    n = 0
    while True:
        # ten sessions in a row, spread over the processes, all answered the new way
        answers = [first_hop(url, f"ATUid_settle_{time.time_ns()}_{n}_{i}") for i in range(10)]
        n += 1
        if all((a == f"END {SHED_TEXT}") == shed_now for a in answers):
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, answers[:2]
        time.sleep(0.1)


@pytest.fixture
def web(app_config, rdb):
    services = create_app(app_config).extensions["teeka"]
    load_world(services)
    with WebProcesses(app_config.redis_url, processes=2, threads=8) as running:
        yield running, services, app_config.redis_url
    services.redis.close()
    services.queue_redis.close()


def test_shedding_turns_on_and_off_without_a_restart_and_spares_sessions_under_way(web):
    server, services, redis_url = web
    url, r = server.url, services.redis
    pid = server.proc.pid
    assert "0%" in shed(redis_url)

    under_way = Phone(url, "+919876570002")
    assert "English" in under_way.dial()

    printed = shed(redis_url, "100")
    assert "0% -> 100%" in printed and "15 minutes" in printed
    took_on = settle(url, shed_now=True)
    ids = [f"ATUid_full_{i}" for i in range(20)]
    answers = [first_hop(url, sid, f"+9198765{71000 + i:05d}") for i, sid in enumerate(ids)]
    assert answers == [f"END {SHED_TEXT}"] * len(ids)
    assert first_hop(url, ids[0], "+919876571000") == f"END {SHED_TEXT}"  # a repeated first hop
    assert not any(r.exists(keys.ussd_session(f"+9198765{71000 + i:05d}", sid))
                   for i, sid in enumerate(ids))  # nothing kept of them
    # the session begun before the change goes on, into a booking
    under_way.answer(option(under_way.screen, "English"))
    assert "1 Book vaccination" in under_way.screen and not under_way.ended
    under_way.answer("1")
    assert "full name" in under_way.screen and not under_way.ended
    assert "100%" in shed(redis_url)

    printed = shed(redis_url, "0")
    assert "100% -> 0%" in printed
    took_off = settle(url, shed_now=False)
    assert all(first_hop(url, f"ATUid_open_{i}").startswith("CON ") for i in range(20))

    shed(redis_url, "50")
    time.sleep(shedding.CACHE_SECONDS + 0.5)  # every process has read the new share
    counted_before = shed_count(r)
    ids = [f"ATUid_half_{i}" for i in range(NEW_SESSIONS)]
    answers = [first_hop(url, sid, f"+9198765{72000 + i:05d}") for i, sid in enumerate(ids)]
    was_shed = [a == f"END {SHED_TEXT}" for a in answers]
    assert all(a.startswith("CON ") for a, s in zip(answers, was_shed) if not s)
    assert was_shed == [shedding.falls_in(sid, 0.5) for sid in ids]  # the same answer anywhere
    assert 0.4 * NEW_SESSIONS <= sum(was_shed) <= 0.6 * NEW_SESSIONS, sum(was_shed)

    assert server.proc.poll() is None and server.proc.pid == pid  # never restarted
    assert shed_count(r) - counted_before == sum(was_shed)
    assert sample(scrape(url), "teeka_ussd_sessions_shed_total") == shed_count(r)
    violations = check(r).violations + code_violations(r)
    sent = HOPS["sent"] + len(under_way.inputs) + 1
    figures("shedding", faults=3, requests_sent=sent, messages=sent,
            violations=violations, shed_at_50_percent=sum(was_shed),
            ms_to_turn_on=int(took_on * 1000), ms_to_turn_off=int(took_off * 1000))
    assert violations == []


def shed_count(r) -> int:
    return metrics.counters(r)[metrics.SHED].get("shed", 0)


def test_a_shed_screen_is_in_the_citizens_language_and_follows_the_configured_default(app_config, rdb):
    app = create_app(app_config.with_overrides(ussd_shed_share=1.0))
    client = app.test_client()
    rdb.hset(keys.citizen("+919876570009"), "lang", "hi")

    def hop(session_id, number):
        return client.post("/ussd", data={"sessionId": session_id, "serviceCode": "*384*123#",
                                          "phoneNumber": number, "text": ""}).get_data(as_text=True)

    assert hop("ATUid_a", "+919876570008") == f"END {SHED_TEXT}"  # GATEWAY_USSD_SHED_SHARE=1
    assert hop("ATUid_b", "+919876570009").startswith("END सेवा व्यस्त है")
    shedding.set_share(rdb, 0.0)  # the operator's setting wins over the configured one
    time.sleep(shedding.CACHE_SECONDS + 0.1)
    assert hop("ATUid_c", "+919876570008").startswith("CON ")
    services = app.extensions["teeka"]
    services.redis.close()
    services.queue_redis.close()
