"""`python -m gateway demo`: a data set a newcomer can book against right away."""
from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

from gateway import keys, store
from gateway.config import Config
from gateway.conversation import now_in
from gateway.services import build
from tests import conftest
from tests.conftest import data_keys, gateway_env

ROOT = Path(__file__).resolve().parents[2]


def gateway_demo(redis_url: str) -> subprocess.CompletedProcess:
    env = gateway_env(redis_url, GATEWAY_CODE_SECRET="t")
    return subprocess.run([sys.executable, "-m", "gateway", "demo"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def today(redis_url: str) -> date:
    services = build(Config(redis_url=redis_url, queue_redis_url=conftest.TEST_QUEUE_REDIS_URL))
    try:
        return now_in(services).date()
    finally:
        services.redis.close()
        services.queue_redis.close()


def test_demo_loads_several_areas_with_sessions_for_a_week_and_vaccinators(redis_url, rdb):
    result = gateway_demo(redis_url)
    assert result.returncode == 0, result.stderr
    catalog = store.StoreCatalog(rdb)
    areas = ("110001", "110005", "400005", "500002")
    centres = {area: catalog.centres_in_area(area) for area in areas}
    assert all(centres.values()), centres
    assert len(centres["110001"]) >= 2
    assert len({c.district for found in centres.values() for c in found}) >= 3
    first = today(redis_url)
    days = [first + timedelta(days=n) for n in range(8)]  # today and the next 7 days
    for found in centres.values():
        for centre in found:
            sessions = catalog.sessions([centre.centre_id], days)
            assert {s.day for s in sessions} == set(days), centre
            assert all(slot.free > 0 for s in sessions for slot in s.slots)
    vaccinators = [store.load_vaccinator(rdb, phone) for phone in rdb.smembers(keys.vaccinators())]
    assert len(vaccinators) >= 3 and all(v.active for v in vaccinators)
    assert all(catalog.centre(v.centre_id) is not None for v in vaccinators)


def test_demo_says_what_to_dial_and_which_vaccinator_numbers_exist(redis_url, rdb):
    out = gateway_demo(redis_url).stdout
    assert "*384*123#" in out and "110001" in out
    for phone in rdb.smembers(keys.vaccinators()):
        assert phone in out
    assert "V <ref> <code>" in out


def test_running_demo_twice_changes_nothing_and_keeps_bookings(redis_url, rdb):
    assert gateway_demo(redis_url).returncode == 0
    first = today(redis_url)
    session = store.StoreCatalog(rdb).sessions(["101"], [first + timedelta(days=1)])[0]
    slot = session.slots[0].name
    rdb.hincrby(keys.session(session.session_id), "t:" + slot, 3)  # three seats booked
    before = {k: rdb.type(k) for k in data_keys(rdb)}

    result = gateway_demo(redis_url)
    assert result.returncode == 0, result.stderr
    assert {k: rdb.type(k) for k in data_keys(rdb)} == before
    again = store.StoreCatalog(rdb).sessions(["101"], [first + timedelta(days=1)])[0]
    assert next(s for s in again.slots if s.name == slot).taken == 3
