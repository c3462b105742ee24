"""Transactions that stay in one hash slot, the writes that cannot, and seats held by script.

A step commits with one MULTI/EXEC. On a Redis Cluster a MULTI may only touch keys of one
slot: the step's *home* (the citizen's number for a booking, the citizen whose appointment a
vaccinator names, a message for its delivery report). `Writes` stands in for the transaction
pipeline: a write to a key of the home slot goes into the MULTI as it is; a write to a key of
any other slot (the audit stream, the due index, a message record, counters, another number's
outbox) is kept as data and appended, in the same MULTI, to the home's follow-up list
`t:fu:{home}`, so it exists if and only if the step committed. Right after EXEC `drain`
applies the list's entry and removes it; `recover` (periodic) applies entries a process left
behind when it died in between. Every follow-up is written so that applying it twice leaves
the data as once (a set, a create-if-absent, a push-if-absent), except audit lines and
counters, which carry the entry id (`op`) so readers can drop a repeat.

On a single Redis every key is "home": `Writes` passes each write straight to the MULTI and
there are never follow-ups; the same code runs on both.

Seats are shared by everyone, so a booking takes its seat before its transaction, with a
script on the session's slot that also writes the session's roster (ref -> phone|slot|time):
taking and giving back are idempotent per ref. The booking's intent (`t:bk:{phone}`), written
before the seat and deleted by the booking's own MULTI, lets `recover` give back a seat whose
booking never committed.
"""
from __future__ import annotations

import json
import logging
import secrets
import time

from redis.crc import key_slot

from . import keys

log = logging.getLogger(__name__)

FOLLOWUP_GRACE = 60  # seconds: an entry older than this was left by a process that died
INTENT_GRACE = 120  # seconds: a booking intent older than this never committed

_TAKE_SEAT = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  return redis.call('HGETALL', KEYS[1])
end
local taken = tonumber(redis.call('HGET', KEYS[1], 't:' .. ARGV[2]) or '0')
local capacity = tonumber(redis.call('HGET', KEYS[1], 'c:' .. ARGV[2]) or '0')
if taken >= capacity then
  return false
end
redis.call('HINCRBY', KEYS[1], 't:' .. ARGV[2], 1)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3] .. '|' .. ARGV[2] .. '|' .. ARGV[4])
return redis.call('HGETALL', KEYS[1])
"""

_RELEASE_SEAT = """
local entry = redis.call('HGET', KEYS[2], ARGV[1])
if not entry then
  return 0
end
local slot = string.match(entry, '^[^|]*|([^|]*)|')
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[1], 't:' .. slot, -1)
return 1
"""

_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

_PUSH_ONCE = """
if redis.call('LPOS', KEYS[1], ARGV[1]) then
  return 0
end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
return 1
"""

_DELETE_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def is_cluster(client) -> bool:
    return hasattr(client, "get_nodes")  # redis.cluster.RedisCluster


class Writes:
    """The write side of one transaction: home-slot writes into the MULTI, the rest deferred.

    Create it after `pipe.multi()`; call `seal()` before `pipe.execute()` and `drain` after.
    """

    def __init__(self, pipe, home: str, cluster: bool):
        self.pipe = pipe
        self.home = home
        self._slot = key_slot(keys.hash_tag(home).encode()) if cluster else None
        self.ops: list[list] = []
        self.created: list[tuple[str, str]] = []  # (message id, priority) recorded here
        self.entry = ""
        self.op_id = ""

    def _here(self, key: str) -> bool:
        return self._slot is None or key_slot(keys.hash_tag(key).encode()) == self._slot

    def _defer(self, *op) -> None:
        if not self.op_id:
            self.op_id = f"{int(time.time() * 1000):x}{secrets.token_hex(4)}"
        self.ops.append(list(op))

    def _next_op(self) -> str:
        """The id the next deferred write will carry (entry id and its index)."""
        if not self.op_id:
            self.op_id = f"{int(time.time() * 1000):x}{secrets.token_hex(4)}"
        return f"{self.op_id}.{len(self.ops)}"

    # -- the commands the write code uses --
    def set(self, key, value, ex=None):
        if self._here(key):
            self.pipe.set(key, value, ex=ex)
        else:
            self._defer("set", key, str(value), ex)

    def delete(self, key):
        if self._here(key):
            self.pipe.delete(key)
        else:
            self._defer("del", key)

    def expire(self, key, seconds):
        if self._here(key):
            self.pipe.expire(key, seconds)
        else:
            self._defer("expire", key, int(seconds))

    def incr(self, key):
        if self._here(key):
            self.pipe.incr(key)
        else:
            self._defer("incr", key)

    def hset(self, key, field=None, value=None, mapping=None):
        if self._here(key):
            self.pipe.hset(key, field, value, mapping=mapping)
        else:
            fields = dict(mapping or {})
            if field is not None:
                fields[field] = value
            self._defer("hset", key, {k: str(v) for k, v in fields.items()})

    def hset_new(self, key, mapping):
        """Create a record; deferred, it never overwrites one that exists (a replayed entry
        must not turn a message a worker already sent back into a queued one)."""
        if self._here(key):
            self.pipe.hset(key, mapping=mapping)
        else:
            self._defer("hnew", key, {k: str(v) for k, v in mapping.items()})

    def hdel(self, key, *fields):
        if self._here(key):
            self.pipe.hdel(key, *fields)
        else:
            self._defer("hdel", key, *fields)

    def hincrby(self, key, field, amount=1):
        if self._here(key):
            self.pipe.hincrby(key, field, amount)
        else:
            self._defer("hincrby", key, field, int(amount))

    def sadd(self, key, *members):
        if self._here(key):
            self.pipe.sadd(key, *members)
        else:
            self._defer("sadd", key, *members)

    def srem(self, key, *members):
        if self._here(key):
            self.pipe.srem(key, *members)
        else:
            self._defer("srem", key, *members)

    def zadd(self, key, mapping):
        if self._here(key):
            self.pipe.zadd(key, mapping)
        else:
            self._defer("zadd", key, {k: float(v) for k, v in mapping.items()})

    def zrem(self, key, *members):
        if self._here(key):
            self.pipe.zrem(key, *members)
        else:
            self._defer("zrem", key, *members)

    def xadd(self, key, fields):
        if self._here(key):
            self.pipe.xadd(key, fields)
        else:  # a replay may add the line again: `op` lets a reader drop the repeat
            self._defer("xadd", key, dict(fields, op=self._next_op()))

    def push_bounded(self, key, value, keep: int):
        """Append to a list kept to its last `keep` items (deferred: only if not there)."""
        if self._here(key):
            self.pipe.rpush(key, value)
            self.pipe.ltrim(key, -keep, -1)
        else:
            self._defer("push", key, value, keep)

    def release_seat(self, session_id: str, ref: str):
        skey, roster = keys.session(session_id), keys.session_roster(session_id)
        if self._here(skey):
            _eval(self.pipe, _RELEASE_SEAT, skey, roster, ref, keys_count=2)
        else:
            self._defer("release", session_id, ref)

    # -- commit and after --
    def seal(self) -> None:
        """Append the deferred writes (and the messages to enqueue after them) to the home's
        follow-up list, inside the MULTI."""
        if self.ops:
            self.entry = json.dumps({"id": self.op_id, "at": int(time.time()), "ops": self.ops,
                                     "q": [list(m) for m in self.created]},
                                    ensure_ascii=False, separators=(",", ":"))
            self.pipe.rpush(keys.followups(self.home), self.entry)


def drain(r, writes: Writes) -> None:
    """After EXEC: apply the step's deferred writes, then drop its follow-up entry."""
    if writes.entry:
        apply(r, writes.ops)
        r.lrem(keys.followups(writes.home), 1, writes.entry)


def apply(r, ops: list[list]) -> None:
    """Apply deferred writes in one pipeline (split by node on a cluster, one round trip)."""
    pipe = r.pipeline(transaction=False)
    for op in ops:
        kind, key, *args = op
        if kind == "set":
            pipe.set(key, args[0], ex=args[1])
        elif kind == "del":
            pipe.delete(key)
        elif kind == "expire":
            pipe.expire(key, args[0])
        elif kind == "incr":
            pipe.incr(key)
        elif kind == "hset":
            pipe.hset(key, mapping=args[0])
        elif kind == "hnew":
            _eval(pipe, _CREATE, key, *[x for kv in args[0].items() for x in kv])
        elif kind == "hdel":
            pipe.hdel(key, *args)
        elif kind == "hincrby":
            pipe.hincrby(key, args[0], args[1])
        elif kind == "sadd":
            pipe.sadd(key, *args)
        elif kind == "srem":
            pipe.srem(key, *args)
        elif kind == "zadd":
            pipe.zadd(key, args[0])
        elif kind == "zrem":
            pipe.zrem(key, *args)
        elif kind == "xadd":
            pipe.xadd(key, args[0])
        elif kind == "push":
            _eval(pipe, _PUSH_ONCE, key, args[0], args[1])
        elif kind == "release":  # key is the session id here
            _eval(pipe, _RELEASE_SEAT, keys.session(key), keys.session_roster(key), args[0], keys_count=2)
        else:
            raise ValueError(f"unknown follow-up {kind!r}")
    pipe.execute()


def _eval(pipe, script: str, *keys_and_args, keys_count: int = 1) -> None:
    """Queue a script on a pipeline (a cluster pipeline routes EVAL by its keys, but has no
    `eval` method)."""
    pipe.execute_command("EVAL", script, keys_count, *keys_and_args)


# ---------------------------------------------------------------- seats
def hold_seat(r, phone: str, ref: str, session_id: str, slot: str,
              now: float | None = None) -> tuple[str, dict]:
    """Claim the ref for this number, note the intent, take a seat. Returns ("held", the
    session's hash), ("full", {}) or ("taken", {}) when the ref is already someone's;
    nothing is held unless "held"."""
    now = int(time.time() if now is None else now)
    pipe = r.pipeline(transaction=False)
    pipe.set(keys.ref_owner(ref), phone, nx=True)
    pipe.hset(keys.booking_intents(phone), ref, f"{session_id}|{slot}|{now}")
    claimed, _ = pipe.execute()
    if not claimed:
        r.hdel(keys.booking_intents(phone), ref)
        return "taken", {}
    flat = r.eval(_TAKE_SEAT, 2, keys.session(session_id), keys.session_roster(session_id),
                  ref, slot, phone, str(now))
    if not flat:
        abandon(r, phone, ref, session_id)
        return "full", {}
    return "held", dict(zip(flat[::2], flat[1::2]))


def release_lock(r, key: str, token: str) -> None:
    r.eval(_DELETE_IF, 1, key, token)


def abandon(r, phone: str, ref: str, session_id: str) -> None:
    """Undo `hold_seat` for a booking that did not commit: the seat, the ref, the intent last
    (so a crash half way leaves the intent for `recover`)."""
    r.eval(_RELEASE_SEAT, 2, keys.session(session_id), keys.session_roster(session_id), ref)
    r.eval(_DELETE_IF, 1, keys.ref_owner(ref), phone)
    r.hdel(keys.booking_intents(phone), ref)


# ---------------------------------------------------------------- recovery
def recover(r, enqueue, now: float | None = None) -> dict[str, int]:
    """Apply follow-ups and abandon booking intents left behind by processes that died between
    their commit and its follow-ups (or between a seat and its booking). `enqueue(message_id,
    priority)` queues a message whose record a recovered entry created."""
    now = time.time() if now is None else now
    done = {"followups": 0, "intents": 0}
    for key in r.scan_iter(match=f"{keys.P}fu:*", count=1000):
        for entry in r.lrange(key, 0, -1):
            data = json.loads(entry)
            if now - data.get("at", 0) < FOLLOWUP_GRACE:
                continue  # its own process may be applying it right now
            apply(r, data["ops"])
            for message_id, priority in data.get("q", ()):
                enqueue(message_id, priority)
            r.lrem(key, 1, entry)
            done["followups"] += 1
    for key in r.scan_iter(match=f"{keys.P}bk:*", count=1000):
        phone = keys.hash_tag(key)
        for ref, intent in r.hgetall(key).items():
            session_id, _slot, at = intent.split("|")
            if now - int(at) < INTENT_GRACE:
                continue
            if r.exists(keys.appointment(phone, ref)):  # committed (its MULTI drops the intent)
                r.hdel(key, ref)
                continue
            abandon(r, phone, ref, session_id)
            done["intents"] += 1
    if any(done.values()):
        log.warning("recovered %d follow-up entries and %d booking intents left by a stopped process",
                    done["followups"], done["intents"])
    return done


# ---------------------------------------------------------------- upgrade
def build_rosters(r, progress=None) -> int:
    """Give every seat-holding appointment written before rosters existed its roster entry
    (a seat it holds, so a cancellation gives it back). Safe to run again; returns how many
    entries were added. `progress(done)` is called every 1,000 appointments."""
    added = done = 0
    for key in r.scan_iter(match=keys.appointment("*", "*"), count=1000):
        phone, ref = keys.hash_tag(key), key.rsplit(":", 1)[1]
        status, session_id, slot = r.hmget(key, "s", "se", "sl")
        done += 1
        if progress and done % 1000 == 0:
            progress(done)
        if not session_id or not slot or status == "cancelled":
            continue
        added += r.hsetnx(keys.session_roster(session_id), ref, f"{phone}|{slot}|0")
    return added
