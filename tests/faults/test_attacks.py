"""Attacks on the running gateway (`python -m gateway web`, several processes): guessing a
security code from one or many vaccinator numbers, webhooks without the key, and V or DONE
forged from numbers that are not active vaccinators."""
from __future__ import annotations

import io
import secrets
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from gateway import create_app, importer, keys
from gateway.conversation import now_in
from gateway.effects import hour_of
from tests.fakes.fake_at import FORM, delivery_report_body, fake_at  # noqa: F401 (fixture)
from tests.fakes.network import CERT_RE
from tests.faults.test_races import (CITIZEN, WebProcesses, World, book_today, figures,
                                     ledger_violations, load_world, world)  # noqa: F401

pytestmark = pytest.mark.slow  # against `python -m gateway web` processes
CENTRE_VACCINATORS = [f"+9198100{1100 + i:05d}" for i in range(10)]  # all at centre 101
RETIRED = "+919810099999"  # registered at 101, deactivated
STRANGER = "+919876549999"  # nobody
WEBHOOK_KEY = "k3y-" + "x" * 28
ROUNDS = 3


def wrong(code: str, n: int = 1) -> str:
    return f"{(int(code) + n) % 10000:04d}"


def register(services, rows: list[tuple[str, str]]) -> None:
    """Vaccinators of centre 101: (phone, active)."""
    text = "phone,name,centre_id,active\n" + "".join(
        f"{phone},Vaccinator {i},101,{active}\n" for i, (phone, active) in enumerate(rows))
    report = importer.import_csv(services.redis, "vaccinators", io.StringIO(text))
    assert report.ok, report.bad


def appointment(world, ref: str) -> dict:
    compact = ref.replace(" ", "")
    return world.r.hgetall(keys.appointment(world.r.get(keys.ref_owner(compact)), compact))


def sms_at_once(world, senders: list[str], texts: list[str]) -> list[int]:
    """Each (sender, text) as its own inbound SMS, all released together; HTTP statuses."""
    start = threading.Barrier(len(senders))

    def one(pair):
        start.wait()
        return world.phone(pair[0]).sms(pair[1]).status_code

    with ThreadPoolExecutor(max_workers=len(senders)) as pool:
        return list(pool.map(one, zip(senders, texts)))


def replies(world, numbers) -> list[str]:
    return [m.message for n in numbers for m in world.fake.sent_to(n)]


# ---------------------------------------------------------------- guessing a code
def test_ten_vaccinators_guessing_at_once_get_five_tries_then_the_appointment_is_locked(world):
    register(world.services, [(p, "1") for p in CENTRE_VACCINATORS])
    senders = [p for p in CENTRE_VACCINATORS for _ in range(3)]  # 30 guesses, 3 from each
    sent = checked = 0
    for round_ in range(ROUNDS):  # a lost update shows in some rounds, not every one
        number = f"+9198765{42000 + round_:05d}"
        ref, code = book_today(world, number)
        guesses = [f"V {ref} {wrong(code, 1 + i)}" for i in range(len(senders))]
        assert set(sms_at_once(world, senders, guesses)) == {200}
        world.deliver()
        sent += len(guesses)

        a = appointment(world, ref)
        assert (a["s"], a["w"]) == ("locked", "5"), a
        answers = [m for m in replies(world, CENTRE_VACCINATORS) if ref in m]
        checked += len(answers)
        assert len(answers) == len(guesses)
        assert sum("Tries left" in m for m in answers) == 4, answers
        assert sum("now locked" in m for m in answers) == 1, answers
        events = [e["status"] for _, e in world.r.xrange(keys.audit())
                  if e["ref"] == ref.replace(" ", "")]
        assert events.count("wrong_code") == 5 and events.count("locked") == 1, events

        # the right code, from any of them, is refused now; so is a DONE
        world.phone(CENTRE_VACCINATORS[0]).sms(f"V {ref} {code}")
        world.phone(CENTRE_VACCINATORS[1]).sms(f"DONE {ref}")
        world.deliver()
        sent += 2
        assert "locked" in world.fake.sent_to(CENTRE_VACCINATORS[0])[-1].message
        assert "locked" in world.fake.sent_to(CENTRE_VACCINATORS[1])[-1].message
        assert appointment(world, ref)["s"] == "locked"
        assert not any(CERT_RE.search(m) for m in replies(world, [number]))
    assert [e["kind"] for _, e in world.r.xrange(keys.alerts())] == ["locked"] * ROUNDS
    violations = ledger_violations(world)
    figures("attacks/guess-many", faults=sent, requests_sent=sent, messages=checked + 2 * ROUNDS,
            violations=violations)
    assert violations == []


def test_one_vaccinator_guessing_at_once_gets_five_tries_and_at_most_twenty_failures_an_hour(world):
    guesser = CENTRE_VACCINATORS[0]
    register(world.services, [(guesser, "1")])
    booked = [book_today(world, f"+9198765{41000 + i:05d}") for i in range(5)]
    texts = [f"V {ref} {wrong(code, 1 + n)}" for ref, code in booked for n in range(6)]  # 30
    assert set(sms_at_once(world, [guesser] * len(texts), texts)) == {200}
    world.deliver()

    tries = [int(appointment(world, ref).get("w", 0)) for ref, _ in booked]
    assert all(t <= 5 for t in tries) and sum(tries) == 20, tries  # then "too many" for the hour
    assert [appointment(world, ref)["s"] == "locked" for ref, _ in booked].count(True) == \
        tries.count(5)
    answers = replies(world, [guesser])
    refused = [m for m in answers if "too many failed attempts" in m or "is locked after" in m]
    assert len(refused) == len(texts) - 20, answers
    hour = hour_of(now_in(world.services))
    assert world.r.get(keys.vaccinator_failures(guesser, hour)) == "20"
    # the limit holds for a right code too, until the hour is over
    ref, code = booked[tries.index(min(tries))]
    world.phone(guesser).sms(f"V {ref} {code}")
    world.deliver()
    assert "too many" in world.fake.sent_to(guesser)[-1].message
    violations = ledger_violations(world)
    figures("attacks/guess-one", faults=len(texts) + 1, requests_sent=len(texts) + 1,
            messages=len(answers) + 1, violations=violations)
    assert violations == []


# ---------------------------------------------------------------- the webhook key
def snapshot(world, skip=()) -> dict[str, tuple]:
    """Every key of the test database with its type and value, read as bytes (RQ's jobs are
    pickled); TTLs are left out: they tick."""
    found = {}
    for r in bytes_clients(world.services):
        readers = {"string": r.get, "hash": r.hgetall, "set": lambda k: sorted(r.smembers(k)),
                   "list": lambda k: r.lrange(k, 0, -1), "stream": r.xrange,
                   "zset": lambda k: r.zrange(k, 0, -1, withscores=True)}
        for raw in r.scan_iter(count=1000):
            key = raw.decode()
            if key.startswith(tuple(skip)):
                continue
            kind = r.type(raw).decode()
            found[key] = (kind, readers[kind](raw) if kind in readers else None)
    return found


def bytes_clients(services) -> list:
    """Clients with bytes replies (RQ's jobs are pickled) on every store of the gateway: the
    queues' database, and the data's when it is elsewhere (a cluster)."""
    if not hasattr(services.redis, "get_nodes"):
        return [services.queue_redis]  # one database holds both
    from redis.cluster import RedisCluster

    return [services.queue_redis, RedisCluster.from_url(services.config.redis_url)]


def changed(before: dict, after: dict) -> set[str]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


METRICS = keys.metrics("")  # refused requests are counted: an operator should see them


@pytest.fixture
def keyed_world(app_config, rdb, fake_at):  # noqa: F811
    config = fake_at.configure(app_config, webhook_key=WEBHOOK_KEY)
    services = create_app(config).extensions["teeka"]
    load_world(services)
    with WebProcesses(config.redis_url, GATEWAY_WEBHOOK_KEY=WEBHOOK_KEY) as web:
        yield World(web.url, services, fake_at, key=WEBHOOK_KEY)  # its phones carry the key
    services.redis.close()
    services.queue_redis.close()


WRONG_KEYS = [
    ({}, {}),  # none
    ({"key": ""}, {}),
    ({"key": WEBHOOK_KEY[:-1]}, {}),  # one character short
    ({"key": WEBHOOK_KEY + "x"}, {}),
    ({"key": WEBHOOK_KEY.upper()}, {}),
    ({}, {"X-Webhook-Key": "wrong"}),
    ({"key": "wrong"}, {"X-Webhook-Key": "wrong"}),
    ({"KEY": WEBHOOK_KEY}, {}),  # the parameter's name is `key`
    ({}, {"X-Webhook-Secret": WEBHOOK_KEY}),
]


def test_webhooks_without_the_right_key_get_403_and_change_nothing(keyed_world):
    w = keyed_world
    ref, code = book_today(w)  # the scene is set with the key
    vaccinator = w.phone("+919810000101")
    dropped = w.phone("+919876540002")
    dropped.dial()
    dropped.answer("1")
    dropped.answer("1")  # inside the booking branch: a drop would send a continue SMS
    provider_id = w.fake.message_ids(CITIZEN)[0]
    hop = {"sessionId": dropped.session_id, "serviceCode": "*384*123#",
           "phoneNumber": dropped.number, "networkCode": "99999",
           "text": "*".join(dropped.inputs + ["Ravi Kumar"])}
    bodies = {  # each would change something, were the key right
        "/ussd": hop,
        "/sms/incoming": {"from": vaccinator.number, "to": "12345", "text": f"V {ref} {code}",
                          "id": "ATPid_forged", "networkCode": "99999"},
        "/sms/delivery": dict(urllib.parse.parse_qsl(
            delivery_report_body(provider_id, "Failed", CITIZEN, failure_reason="DeliveryFailure"))),
        "/ussd/events": {"sessionId": dropped.session_id, "phoneNumber": dropped.number,
                         "status": "Incomplete", "networkCode": "99999"},
    }
    before = snapshot(w, skip=(METRICS,))
    sent = 0
    for params, headers in WRONG_KEYS:
        for path, fields in bodies.items():
            form = dict(fields)
            if not params and not headers:
                form["key"] = WEBHOOK_KEY  # in the body is not where the key goes
            answer = requests.post(w.url + path, params=params, data=urllib.parse.urlencode(form),
                                   headers={"Content-Type": FORM, **headers}, timeout=10)
            sent += 1
            assert answer.status_code == 403, (path, params, headers, answer.text)
            assert "key" in answer.text
    after = snapshot(w, skip=(METRICS,))  # queued jobs would show here too
    assert changed(before, after) == set()
    # refused requests are counted; each web process adds its counts within a second
    deadline = time.monotonic() + 5
    while w.r.hget(keys.metrics("web"), "req|/ussd|403") != str(len(WRONG_KEYS)):
        assert time.monotonic() < deadline, w.r.hget(keys.metrics("web"), "req|/ussd|403")
        time.sleep(0.1)

    # the same requests with the key do change things: the test would have seen it
    for path, fields in bodies.items():
        answer = requests.post(w.url + path, data=fields, headers={"X-Webhook-Key": WEBHOOK_KEY},
                               timeout=10)
        assert answer.status_code == 200, (path, answer.text)
    w.deliver()
    assert changed(after, snapshot(w, skip=(METRICS,)))
    assert appointment(w, ref)["s"] == "verified"
    violations = ledger_violations(w)
    figures("attacks/webhook-key", faults=sent, requests_sent=sent + len(bodies),
            messages=sent + len(bodies), violations=violations, keys_compared=len(before))
    assert violations == []


# ---------------------------------------------------------------- forged V and DONE
def test_a_forged_v_or_done_from_a_number_that_is_not_an_active_vaccinator_changes_nothing(world):
    register(world.services, [(RETIRED, "0")])
    ref, code = book_today(world)
    hour = hour_of(now_in(world.services))
    sent = 0

    def forged(sender: str, text: str) -> None:
        nonlocal sent
        before = snapshot(world)
        message_id = "ATPid_" + secrets.token_hex(8)
        assert world.phone(sender).sms(text, message_id=message_id).status_code == 200
        world.deliver()
        sent += 1
        assert "not registered as a vaccinator" in world.fake.sent_to(sender)[-1].message
        earlier = [m.decode() for m in (before.get(keys.outbox(sender)) or ("", []))[1]]
        (reply_id,) = [m for m in world.r.lrange(keys.outbox(sender), 0, -1) if m not in earlier]
        # what changed is the bookkeeping of this SMS and its one reply, nothing else
        allowed = {keys.seen("sms", message_id, sender), keys.flood(sender, hour), keys.outbox(sender),
                   keys.message(reply_id), keys.messages_index(),
                   keys.provider_message(world.r.hget(keys.message(reply_id), "provider_id"))}
        unexpected = {k for k in changed(before, snapshot(world))
                      if k not in allowed and not k.startswith((METRICS, "rq:"))}
        assert unexpected == set(), unexpected

    for sender in (STRANGER, RETIRED, CITIZEN):
        forged(sender, f"V {ref} {code}")
        forged(sender, f"DONE {ref}")
    assert appointment(world, ref)["s"] == "booked"
    # a real vaccinator verifies; a forged DONE still records nothing
    world.phone("+919810000101").sms(f"V {ref} {code}")
    world.deliver()
    assert appointment(world, ref)["s"] == "verified"
    for sender in (STRANGER, RETIRED):
        forged(sender, f"DONE {ref}")
    assert appointment(world, ref)["s"] == "verified"
    assert not any(CERT_RE.search(m) for m in replies(world, [CITIZEN]))
    assert [e["status"] for _, e in world.r.xrange(keys.audit())] == ["booked", "verified"]
    violations = ledger_violations(world)
    figures("attacks/forged-v", faults=sent, requests_sent=sent + 1, messages=sent + 2,
            violations=violations)
    assert violations == []
