"""Races on the running gateway: `python -m gateway web` in several processes, a real Redis,
real RQ workers and the fake provider.

200 numbers walk a USSD booking to the confirm screen of one 10-seat slot and press 1 at the
same moment: exactly 10 are booked, the others are told the slot filled and shown the slots
again. Twenty DONEs for one verified appointment, at once: one completion SMS.
"""
from __future__ import annotations

import io
import secrets
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from gateway import create_app, demo, importer, keys, worker
from gateway.conversation import now_in
from tests.conftest import free_port, gateway_env
from tests.fakes.fake_at import fake_at  # noqa: F401 (fixture)
from tests.fakes.network import CERT_RE, CODE_RE, REF_RE, Phone, option
from tests.faults.invariants import check
from tests.gateway.test_ussd_booking import (RACE_AREA, RACE_CENTRE, RACE_SEATS, RACE_SLOT,
                                             SPARE_SLOT, free_seats, tomorrow_of, walk_to_confirm)

pytestmark = pytest.mark.slow  # against `python -m gateway web` processes
ROOT = Path(__file__).resolve().parents[2]
RACERS = 200
ALL_DAY = "00:00-23:59"
CITIZEN = "+919876540001"
VACCINATORS_101 = ["+919810000101", "+919810000111"]  # demo's Sunita Rao, and one more


def figures(case: str, *, faults: int, requests_sent: int, messages: int, violations: list,
            **more: int) -> None:
    """The line each fault case prints (run pytest with -s to see it)."""
    extra = "".join(f", {name.replace('_', ' ')}: {value}" for name, value in more.items())
    print(f"\n[{case}] faults injected: {faults}, requests sent: {requests_sent}, "
          f"messages checked: {messages}{extra}, violations found: {len(violations)}")


# ---------------------------------------------------------------- the running gateway
class WebProcesses:
    """`python -m gateway web` with several processes and threads on the test database."""

    def __init__(self, redis_url: str, processes: int = 4, threads: int = 16, **settings: str):
        env = gateway_env(redis_url, GATEWAY_CODE_SECRET="test-secret", **settings)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "web", "--port", str(port),
             "--processes", str(processes), "--threads", str(threads)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def __enter__(self) -> "WebProcesses":
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, "web exited at start-up"
            try:
                if requests.get(self.url + "/healthz", timeout=5).status_code == 200:
                    return self
            except requests.RequestException:  # not listening yet, or still starting its workers
                pass
            assert time.monotonic() < deadline, "web did not start"
            time.sleep(0.1)

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class World:
    """The served gateway, the test's own services on the same Redis, the fake provider."""

    def __init__(self, url, services, fake, key: str = ""):
        self.url, self.services, self.fake, self.key = url, services, fake, key

    @property
    def r(self):
        return self.services.redis

    def phone(self, number: str) -> Phone:
        return Phone(self.url, number, key=self.key)

    def deliver(self) -> None:
        """Real RQ workers, until the queues are empty."""
        worker.work(self.services.config, concurrency=8, burst=True, services=self.services)


def load_world(services) -> None:
    """The demo data, a 10-seat race slot tomorrow, an all-day slot today, a second vaccinator."""
    today = now_in(services).date()
    tomorrow = tomorrow_of(services)
    demo.load(services, today)
    for kind, rows in (
        ("centres", "centre_id,name,district,area_code,address\n"
                    f"{RACE_CENTRE},Race Test Clinic,Test District,{RACE_AREA},Main Road\n"),
        ("sessions", "centre_id,date,vaccine,min_age,dose,slot,capacity\n"
                     f"{RACE_CENTRE},{tomorrow},Covishield,18,1|2,{RACE_SLOT},{RACE_SEATS}\n"
                     f"{RACE_CENTRE},{tomorrow},Covishield,18,1|2,{SPARE_SLOT},1000\n"
                     f"101,{today},Covishield,18,1|2,{ALL_DAY},50\n"),
        ("vaccinators", f"phone,name,centre_id\n{VACCINATORS_101[1]},Deepa Nair,101\n"),
    ):
        report = importer.import_csv(services.redis, kind, io.StringIO(rows))
        assert report.ok, report.bad


@pytest.fixture
def world(app_config, rdb, fake_at):  # noqa: F811
    config = fake_at.configure(app_config, quiet_hours=(0, 0))
    services = create_app(config).extensions["teeka"]
    load_world(services)
    with WebProcesses(config.redis_url) as web:
        yield World(web.url, services, fake_at)
    services.redis.close()
    services.queue_redis.close()


# ---------------------------------------------------------------- what must always hold
def code_violations(r) -> list[str]:
    """What `invariants.check` leaves out: at most 5 wrong codes per appointment, locked at
    the 5th, and no message record holding a security code in clear."""
    found = []
    for key in r.scan_iter(keys.appointment("*", "*"), count=1000):
        a = r.hgetall(key)
        wrong = int(a.get("w", 0))
        if wrong > 5 or (wrong == 5) != (a.get("s") == "locked"):
            found.append(f"{key}: status {a.get('s')} after {wrong} wrong codes (5 lock it)")
    for message_id in r.zrange(keys.messages_index(), 0, -1):
        m = r.hgetall(keys.message(message_id))
        at = int(m.get("code_at") or -1)
        if m.get("code_of") and m.get("body", "")[at:at + 4] != "####":
            found.append(f"message {message_id}: the security code is stored in clear")
    return found


def ledger_violations(world) -> list[str]:
    """Everything that must hold after any fault: the suite's invariants and the code checks."""
    return check(world.r, sent=world.fake.requests).violations + code_violations(world.r)


# ---------------------------------------------------------------- 200 confirms, 10 seats
def test_two_hundred_concurrent_confirms_for_ten_seats_book_exactly_ten(world):
    phones = [world.phone(f"+9198765{20000 + i:05d}") for i in range(RACERS)]
    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(lambda p: walk_to_confirm(p, world.services), phones))
    assert free_seats(world.services, RACE_CENTRE, tomorrow_of(world.services), RACE_SLOT) == RACE_SEATS
    hops = sum(len(p.inputs) + 1 for p in phones)

    start = threading.Barrier(RACERS)

    def confirm(phone: Phone) -> str:
        start.wait()
        return phone.answer("1")

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        screens = list(pool.map(confirm, phones))

    booked = [s for s in screens if s.startswith("END ") and REF_RE.search(s)]
    lost = [s for s in screens if s not in booked]
    assert len(booked) == RACE_SEATS, [s for s in screens if s.startswith("END")][:3]
    assert len({REF_RE.search(s).group(1) for s in booked}) == RACE_SEATS
    assert all(s.startswith("CON ") and "filled" in s and SPARE_SLOT in s and RACE_SLOT not in s
               for s in lost), [s for s in lost if "filled" not in s][:3]
    assert free_seats(world.services, RACE_CENTRE, tomorrow_of(world.services), RACE_SLOT) == 0

    world.deliver()
    winners = [p for p, s in zip(phones, screens) if s in booked]
    for p, s in zip(phones, screens):
        slips = [m.message for m in world.fake.sent_to(p.number)]
        if s in booked:
            assert len(slips) == 1 and REF_RE.search(slips[0]).group(1) == REF_RE.search(s).group(1)
        else:
            assert slips == [], slips
    assert len(winners) == RACE_SEATS
    violations = ledger_violations(world)
    figures("races/seats", faults=RACERS - RACE_SEATS, requests_sent=hops + RACERS,
            messages=len(screens) + world.fake.count(), violations=violations)
    assert violations == []


# ---------------------------------------------------------------- DONE, DONE, DONE
def book_today(world: World, number: str = CITIZEN) -> tuple[str, str]:
    """Book today's all-day slot at centre 101 over USSD; (ref, code) from the slip SMS."""
    phone = world.phone(number)
    phone.dial()
    phone.answer(option(phone.screen, "English"))
    phone.answer("1")
    phone.answer("Asha Devi")
    phone.answer("1990")
    phone.answer("1")
    phone.answer("110001")
    phone.answer(option(phone.screen, "Connaught"))
    phone.answer("1")  # today
    phone.answer(option(phone.screen, ALL_DAY))
    phone.answer("1")
    assert phone.ended and REF_RE.search(phone.screen), phone.screen
    world.deliver()
    slip = world.fake.sent_to(number)[-1].message
    return REF_RE.search(slip).group(1), CODE_RE.search(slip).group(1)


def test_concurrent_dones_for_one_appointment_send_one_completion_sms(world):
    ref, code = book_today(world)
    verifier = world.phone(VACCINATORS_101[0])
    assert verifier.sms(f"V {ref} {code}").status_code == 200
    world.deliver()
    assert "code OK" in world.fake.sent_to(VACCINATORS_101[0])[-1].message

    senders = [world.phone(VACCINATORS_101[i % 2]) for i in range(20)]
    start = threading.Barrier(len(senders))

    def done(phone: Phone) -> int:
        start.wait()
        return phone.sms(f"DONE {ref}", message_id=secrets.token_hex(16)).status_code

    with ThreadPoolExecutor(max_workers=len(senders)) as pool:
        assert set(pool.map(done, senders)) == {200}
    world.deliver()

    completions = [m.message for m in world.fake.sent_to(CITIZEN) if CERT_RE.search(m.message)]
    assert len(completions) == 1, completions
    replies = [m.message for v in VACCINATORS_101 for m in world.fake.sent_to(v)][1:]  # after "code OK"
    assert len(replies) == len(senders)
    assert sum("recorded for Asha Devi" in m for m in replies) == 1, replies
    assert sum("already recorded" in m for m in replies) == len(senders) - 1, replies
    events = [e["status"] for _, e in world.r.xrange(keys.audit()) if e["ref"] == ref.replace(" ", "")]
    assert events == ["booked", "verified", "vaccinated"], events
    violations = ledger_violations(world)
    figures("races/done", faults=len(senders) - 1, requests_sent=len(senders) + 12,
            messages=world.fake.count(), violations=violations)
    assert violations == []
