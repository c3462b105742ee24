"""Operator commands for watching the gateway: stats, messages, requeue."""
from __future__ import annotations

import sys
import time
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from redis.exceptions import WatchError

from . import keys, metrics, outbox, slots, store
from .cli import arg, command
from .config import Config
from .phones import InvalidPhone, mask, normalise
from .services import build

STATUSES = ("booked", "verified", "vaccinated", "cancelled", "no_show", "locked", "disputed")
FUNNEL = ("queued", "sent", "delivered", "failed", "denied", "pending")
PENDING = frozenset({outbox.QUEUED, outbox.RETRYING, outbox.SENDING})
PAGE = 1000  # records read per round trip


# ---- stats ----
def appointment_counts(r, days: list[date]) -> dict[tuple[str, str], dict[str, int]]:
    """(centre id, day) -> status -> count, for every centre with appointments on those days."""
    pairs = [(cid, d.isoformat()) for cid in sorted(r.smembers(keys.centres())) for d in days]
    pipe = r.pipeline(transaction=False)
    for cid, day in pairs:
        pipe.smembers(keys.centre_day_appointments(cid, day))
    refs = [(pair, ref) for pair, members in zip(pairs, pipe.execute()) for ref in sorted(members)]
    owners = _pipelined(r, [("get", keys.ref_owner(ref)) for _, ref in refs])
    found = [(pair, ref, phone) for (pair, ref), phone in zip(refs, owners) if phone]
    statuses = _pipelined(r, [("hget", keys.appointment(phone, ref), "s") for _, ref, phone in found])
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for (pair, _, _), status in zip(found, statuses):
        if status:
            by = counts.setdefault(pair, {})
            by[status] = by.get(status, 0) + 1
    return counts


def message_funnel(r, since: float) -> dict[str, dict[str, int]]:
    """purpose -> funnel stage -> messages created since `since` (Unix seconds).

    queued: all recorded; sent: accepted by the provider at least once; delivered, failed,
    denied: where they ended; pending: still waiting for a send or a retry.
    """
    funnel: dict[str, dict[str, int]] = {}
    for rec in _records_since(r, since, ("purpose", "status", "sent_at")):
        purpose, status, sent_at = rec
        by = funnel.setdefault(purpose or "-", dict.fromkeys(FUNNEL, 0))
        by["queued"] += 1
        if sent_at or status in (outbox.SENT, outbox.DELIVERED):
            by["sent"] += 1
        if status in (outbox.DELIVERED, outbox.FAILED, outbox.DENIED):
            by[status] += 1
        elif status in PENDING:
            by["pending"] += 1
    return funnel


def _records_since(r, since: float, fields: tuple[str, ...]):
    start = 0
    while True:
        ids = r.zrangebyscore(keys.messages_index(), since, "+inf", start=start, num=PAGE)
        if not ids:
            return
        start += len(ids)
        yield from _pipelined(r, [("hmget", keys.message(i), *fields) for i in ids])


def _pipelined(r, calls: list[tuple]) -> list:
    results: list = []
    for first in range(0, len(calls), PAGE):
        pipe = r.pipeline(transaction=False)
        for name, *args in calls[first:first + PAGE]:
            getattr(pipe, name)(*args)
        results.extend(pipe.execute())
    return results


def _table(header: list[str], rows: list[list]) -> list[str]:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    return ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip()
            for row in [header, *rows]]


def _today(config: Config) -> date:
    return datetime.now(ZoneInfo(config.timezone)).date()


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)") from None


@command("stats", "appointments per centre and day, the message funnel, queue depths",
         arg("--from", dest="start", default=None, metavar="DAY",
             help="first appointment day, YYYY-MM-DD (default today)"),
         arg("--days", type=int, default=7, help="appointment days to show (default 7)"),
         arg("--hours", type=float, default=24, help="messages created in the last HOURS (default 24)"))
def stats_command(args, config: Config) -> int:
    """Three tables: appointments by status per centre and day (today and the next 6 days
    unless --from/--days say otherwise), the message funnel per purpose over the last --hours
    (recorded, accepted by the provider, delivered, failed, denied, still pending), and the
    jobs in each RQ queue."""
    try:
        start = _day(args.start) if args.start else _today(config)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    services = build(config)
    r = services.redis
    days = [start + timedelta(days=i) for i in range(max(args.days, 1))]
    counts = appointment_counts(r, days)
    names = store.centre_names(r, {cid for cid, _ in counts})
    print(f"Appointments {days[0]} to {days[-1]}:")
    if counts:
        ordered = sorted(counts.items(), key=lambda kv: (kv[0][1], kv[0][0]))  # by day, then centre
        rows = [[cid, names.get(cid, cid)[:30], day, *(by.get(s, 0) for s in STATUSES),
                 sum(by.values())] for (cid, day), by in ordered]
        print("\n".join(_table(["centre", "name", "day", *STATUSES, "total"], rows)))
    else:
        print("  none")

    funnel = message_funnel(r, time.time() - args.hours * 3600)
    print(f"\nMessages created in the last {args.hours:g} h:")
    if funnel:
        rows = [[p, *(by[s] for s in FUNNEL)] for p, by in sorted(funnel.items())]
        print("\n".join(_table(["purpose", *FUNNEL], rows)))
    else:
        print("  none")

    depths = metrics.queue_depths(services)
    print("\nQueues (jobs):")
    print("\n".join(_table(["queue", "queued", "scheduled", "started", "failed"],
                           [[q, by["queued"], by["scheduled"], by["started"], by["failed"]]
                            for q, by in depths.items()])))
    return 0


# ---- messages ----
def recent_messages(r, *, failed: bool, to: str, limit: int) -> list[dict]:
    """Newest first: the last `limit` message records, only failed/denied ones with `failed`,
    only those to one number with `to`."""
    if to:
        ids = list(reversed(r.lrange(keys.outbox(to), 0, -1)))
    elif failed:
        ids = r.zrevrange(keys.messages_failed(), 0, -1)
    else:
        ids = r.zrevrange(keys.messages_index(), 0, limit - 1)
    found: list[dict] = []
    for first in range(0, len(ids), PAGE):
        for rec in _pipelined(r, [("hgetall", keys.message(i)) for i in ids[first:first + PAGE]]):
            if rec and (not failed or rec.get("status") in (outbox.FAILED, outbox.DENIED)):
                found.append(rec)
                if len(found) >= limit:
                    return found
    return found


def describe_message(rec: dict, zone: ZoneInfo) -> list[str]:
    """Two lines for an operator; the phone masked, the body as stored (code masked)."""
    created = datetime.fromtimestamp(float(rec.get("created") or 0), zone).strftime("%Y-%m-%d %H:%M")
    line = (f"{rec.get('id', '?')}  {created}  {mask(rec.get('to', ''))}  {rec.get('purpose', '-')}"
            f"  {rec.get('status', '?')}  attempts {rec.get('attempts', 0)}  {rec.get('template', '')}")
    details = [f"    {rec.get('body', '')!r}"]
    if rec.get("errors"):
        details.append(f"    error: {rec['errors']}")
    return [line, *details]


@command("messages", "recent outbound messages, newest first (phones and codes masked)",
         arg("--failed", action="store_true", help="only messages that failed or were denied"),
         arg("--to", default="", metavar="PHONE", help="only messages to this number"),
         arg("--limit", type=int, default=20, help="how many (default 20)"))
def messages_command(args, config: Config) -> int:
    """Each message record: id, time, masked recipient, purpose, status, attempts, template,
    the body as stored (security codes appear as ####) and its last error."""
    to = ""
    if args.to:
        try:
            to = normalise(args.to, config.default_region)
        except InvalidPhone:
            print(f"error: {args.to!r} is not a phone number", file=sys.stderr)
            return 2
    rows = recent_messages(build(config).redis, failed=args.failed, to=to, limit=max(args.limit, 1))
    zone = ZoneInfo(config.timezone)
    for rec in rows:
        print("\n".join(describe_message(rec, zone)))
    what = "failed message(s)" if args.failed else "message(s)"
    print(f"{len(rows)} {what}" + (f" to {mask(to)}" if to else ""))
    return 0


# ---- requeue ----
def retry_failed(services, since: float) -> int:
    """Failed messages (not denied) recorded since `since` get one more attempt; returns how many."""
    r = services.redis
    count = 0
    for message_id in r.zrangebyscore(keys.messages_failed(), since, "+inf"):  # scored by failure time
        key = keys.message(message_id)
        with r.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)
                rec = pipe.hgetall(key)
                if rec.get("status") != outbox.FAILED or float(rec.get("created") or 0) < since:
                    pipe.unwatch()
                    continue
                attempts = int(rec.get("attempts") or 0)
                rec["max_attempts"] = str(max(int(rec.get("max_attempts") or 0), attempts + 1))
                pipe.multi()
                writes = slots.Writes(pipe, key, slots.is_cluster(services.redis))
                writes.hset(key, "max_attempts", rec["max_attempts"])
                writes.zrem(keys.messages_failed(), message_id)
                writes.seal()
                pipe.execute()
                slots.drain(r, writes)
            except WatchError:
                continue  # it changed under us: someone else is handling it
        outbox.retry(services, rec, 0, f"requeued by the operator after: {rec.get('errors', '')}")
        count += 1
    return count


@command("requeue", "give stuck messages their job back; with --failed, retry failed ones",
         arg("--failed", action="store_true",
             help="also send failed messages (not denied ones) again, as one new attempt each"),
         arg("--hours", type=float, default=24,
             help="with --failed: only messages created in the last HOURS (default 24)"),
         arg("--older-than", type=float, default=60, metavar="SECONDS",
             help="a queued message counts as stuck after this many seconds (default 60)"))
def requeue_command(args, config: Config) -> int:
    """Stuck: a queued or retrying message whose job is gone (a crash between the commit and
    the enqueue), or one left `sending` by a worker that died mid-request. Every such record,
    however old, gets a new job. With --failed, failed messages of the last --hours also get
    one new attempt; messages the recipient refused (denied) are never sent again."""
    services = build(config)
    stuck = outbox.requeue_stuck(services, older_than=args.older_than, lookback=None)
    print(f"requeued {stuck} stuck message(s)")
    if args.failed:
        again = retry_failed(services, time.time() - args.hours * 3600)
        print(f"sent {again} failed message(s) of the last {args.hours:g} h again as a new attempt")
    return 0
