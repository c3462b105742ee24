"""Writes outside a transaction's slot, seats held by script, and what a dead process leaves.

These run against whichever store the suite uses: a single Redis, or the local Redis Cluster
(TEEKA_TEST_REDIS_CLUSTER=1). Follow-ups are made explicitly (`Writes(..., cluster=True)`) so
the recovery path is exercised on a single Redis as well.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from flows.domain import Status
from gateway import keys, operations, outbox, slots, store
from gateway.conversation import now_in
from gateway.effects import Commit
from tests.fakes.fake_at import fake_at  # noqa: F401 (fixture)
from tests.faults.invariants import check
from tests.gateway.test_verification import CITIZEN, VACCINATOR_101, gateway, wrong  # noqa: F401 (fixture)

LATER = slots.INTENT_GRACE + slots.FOLLOWUP_GRACE + 1


def a_session(services):
    """Today's all-day session at centre 101 (20 seats), as the booking menu reads it."""
    catalog = store.StoreCatalog(services.redis)
    today = now_in(services).date()
    [session] = [s for s in catalog.sessions(["101"], [today]) if any(x.name == "00:00-23:59" for x in s.slots)]
    return session.session_id, "00:00-23:59"


def taken(services, session_id, slot) -> int:
    return int(services.redis.hget(keys.session(session_id), "t:" + slot) or 0)


def test_a_seat_is_held_once_per_ref_and_never_beyond_capacity(gateway):
    r, services = gateway.services.redis, gateway.services
    sid, slot = a_session(services)
    r.hset(keys.session(sid), "c:" + slot, 3)
    refs = [f"10000000{i:02d}" for i in range(12)]

    def hold(ref):
        return slots.hold_seat(r, f"+9198765{int(ref[-2:]):05d}", ref, sid, slot)[0]

    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(hold, refs))
    assert sorted(outcomes) == ["full"] * 9 + ["held"] * 3
    assert taken(services, sid, slot) == 3 and len(r.hgetall(keys.session_roster(sid))) == 3
    losers = [ref for ref, outcome in zip(refs, outcomes) if outcome == "full"]
    assert not any(r.exists(keys.ref_owner(ref)) for ref in losers)  # nothing kept of a refusal
    winner = refs[outcomes.index("held")]
    assert slots.hold_seat(r, "+919999999999", winner, sid, slot)[0] == "taken"  # the ref is someone's


def test_a_seat_whose_booking_never_committed_comes_back_after_the_grace(gateway):
    r, services = gateway.services.redis, gateway.services
    sid, slot = a_session(services)
    before = taken(services, sid, slot)
    state, session = slots.hold_seat(r, CITIZEN, "1234567890", sid, slot)  # ... and the process dies
    assert state == "held" and session["ce"] == "101"
    assert taken(services, sid, slot) == before + 1
    assert check(r).violations == []  # a booking in flight holds its seat legitimately

    assert slots.recover(r, lambda *_: None) == {"followups": 0, "intents": 0}  # too early to tell
    assert slots.recover(r, lambda *_: None, now=time.time() + LATER) == {"followups": 0, "intents": 1}
    assert taken(services, sid, slot) == before
    assert not r.exists(keys.ref_owner("1234567890"))
    assert not r.hexists(keys.session_roster(sid), "1234567890")
    assert not r.hexists(keys.booking_intents(CITIZEN), "1234567890")
    assert check(r).violations == []


def test_a_booking_keeps_its_seat_and_leaves_no_intent(gateway):
    r, services = gateway.services.redis, gateway.services
    sid, slot = a_session(services)
    ref, _ = gateway.book()
    ref = ref.replace(" ", "")
    assert r.hget(keys.session_roster(sid), ref).startswith(CITIZEN + "|" + slot + "|")
    assert not r.exists(keys.booking_intents(CITIZEN))
    assert not list(r.scan_iter(match=keys.P + "fu:*"))  # every follow-up applied
    slots.recover(r, lambda *_: None, now=time.time() + LATER)
    assert r.hexists(keys.session_roster(sid), ref) and gateway.status(ref) == Status.BOOKED
    # cancelling gives the seat back once, however often the release is applied
    seats = taken(services, sid, slot)
    slots.apply(r, [["release", sid, ref]])
    slots.apply(r, [["release", sid, ref]])
    assert taken(services, sid, slot) == seats - 1


def test_follow_ups_of_a_commit_whose_process_died_are_applied_once(gateway):
    """A transaction commits with writes to other slots deferred, and its process dies before
    applying them: `recover` applies them, and applying them again changes nothing."""
    r, services = gateway.services.redis, gateway.services
    phone, ref = "+919876543210", "2222222222"
    commit = Commit(services=services, now=datetime.now().astimezone())
    with r.pipeline(transaction=True) as pipe:
        pipe.multi()
        writes = slots.Writes(pipe, keys.citizen(phone), cluster=True)
        writes.hset(keys.citizen(phone), "lang", "hi")  # home: in the MULTI
        message_id = outbox.record(writes, to=phone, body="Teeka: test", template="sms/help", lang="en",
                                   purpose="reply", priority="high", segments=1)
        commit.audit(writes, ref, "booked", phone, "ussd")
        writes.zadd(keys.due_appointments(), {ref: 1})
        writes.seal()
        pipe.execute()  # ... and no drain: the process died here
    assert r.hget(keys.citizen(phone), "lang") == "hi"
    assert not r.exists(keys.message(message_id)) and len(r.lrange(keys.followups(keys.citizen(phone)), 0, -1)) == 1

    queued = []
    assert slots.recover(r, lambda *m: queued.append(m))["followups"] == 0  # its process may still be at it
    assert slots.recover(r, lambda *m: queued.append(m), now=time.time() + LATER)["followups"] == 1
    assert queued == [(message_id, "high")]
    assert r.hget(keys.message(message_id), "status") == outbox.QUEUED
    assert r.zscore(keys.due_appointments(), ref) == 1
    assert not r.exists(keys.followups(keys.citizen(phone)))

    # applied a second time (a process that died after applying, before removing the entry):
    r.hset(keys.message(message_id), "status", outbox.SENT)  # a worker sent it meanwhile
    slots.apply(r, writes.ops)
    assert r.hget(keys.message(message_id), "status") == outbox.SENT  # not reset to queued
    assert r.lrange(keys.outbox(phone), 0, -1) == [message_id]  # listed once
    events = [e for e in operations.audit_events(services) if e["ref"] == ref]
    assert len(events) == 1 and events[0]["status"] == "booked"  # the repeated line is dropped


def test_a_vaccinators_sms_repeated_by_the_provider_is_applied_once(gateway):
    """V with a wrong code, delivered three times at once with the same id: one wrong try."""
    ref, code = gateway.book()
    vaccinator = gateway.phone(VACCINATOR_101)
    answers = []

    def send():
        answers.append(vaccinator.sms(f"V {ref} {wrong(code)}", message_id="ATXid_repeated").status_code)

    threads = [threading.Thread(target=send) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gateway.deliver()
    assert answers == [200] * 3
    owner = gateway.services.redis.get(keys.ref_owner(ref.replace(" ", "")))
    assert gateway.services.redis.hget(keys.appointment(owner, ref.replace(" ", "")), "w") == "1"
    replies = [t for t in gateway.texts(VACCINATOR_101) if "wrong code" in t]
    assert len(replies) == 1, gateway.texts(VACCINATOR_101)
    assert "Tries left: 4." in replies[0]


def test_upgrade_gives_appointments_booked_before_rosters_their_seat_entry(gateway):
    r, services = gateway.services.redis, gateway.services
    sid, slot = a_session(services)
    refs = [gateway.book(name=name)[0].replace(" ", "") for name in ("Asha Devi", "Ravi Kumar")]
    r.delete(keys.session_roster(sid))  # as an earlier release left them
    assert check(r).violations != []
    assert slots.build_rosters(r) == 2
    assert slots.build_rosters(r) == 0  # again: nothing more to do
    assert check(r).violations == []
    seats = taken(services, sid, slot)
    phone = gateway.phone(CITIZEN)
    phone.dial()
    phone.answer("4")  # Cancel
    phone.answer("1")  # the first appointment
    phone.answer("1")  # yes
    assert "ancelled" in phone.screen, phone.screen
    assert taken(services, sid, slot) == seats - 1
    assert len(r.hgetall(keys.session_roster(sid))) == 1 and check(r).violations == []
    assert {gateway.status(ref) for ref in refs} == {Status.BOOKED, Status.CANCELLED}
