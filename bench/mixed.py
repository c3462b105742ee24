"""Bookings and verifications at once, against N web and M worker processes on a Redis Cluster.

    citizens (bench/ussd_bot.py), over USSD  -> `python -m gateway web --processes N`
    vaccinators (V and DONE), over SMS       ->   data: a local three-master Redis Cluster
                                                  queues: a plain redis-server (RQ)
    `python -m gateway worker --processes M` -> fake Africa's Talking (tests/fakes/fake_at.py)

Citizens book over USSD; the booking SMS reaches the fake provider, which hands each one's ref
and code back to this process; a vaccinator of the booked centre then sends `V <ref> <code>`
and, once that is answered, `DONE <ref>` to /sms/incoming, and the workers send the replies
and the completion SMS. `--single` puts the data on one redis-server instead, for comparison.

Phases, each closed loop (every client sends its next request as soon as the last one was
answered), with the SMS queues drained between phases:

1. floor: bench/floor_app.py (one Redis GET and one SET a request) with the same N processes on
   the same data store, fed by as many clients as the mixed phase has;
2. book: citizens only; bookings/s and the CPU of every part per booking;
3. verify: vaccinators only, on the appointments booked in phase 2; verifications/s and CPU
   per verification (a verification is the V and the DONE, and the three SMS they cause);
4. mixed: both at once; bookings/s and verifications/s side by side.

Run from the repository root: `python bench/mixed.py [--single]` (`--help` for the knobs).
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench.procstat import cpu_seconds  # noqa: E402
from bench.ussd import AREAS, clean_env, free_port, load_catalog, start_redis, start_server, stop_server  # noqa: E402
from bench.ussd_bot import Citizens, FloorHops  # noqa: E402
from bench.ussd_load import Pool  # noqa: E402
from gateway import importer  # noqa: E402
from gateway.config import Config  # noqa: E402
from gateway.services import QUEUE_NAMES, build  # noqa: E402
from tests.fakes.fake_at import FakeAT, incoming_sms_body  # noqa: E402

API_KEY = "bench-api-key"
CENTRES = [f"9{a:02d}{c}" for a in range(len(AREAS)) for c in range(3)]  # as bench/ussd.py loads them
BOOKED = re.compile(r"Bench Centre (\d+)-(\d+) .*Ref (\d{5} \d{5}) Code (\d{4})")
# What the fake provider saw, by kind (a shared array of counters).
KINDS = ("all", "booking", "code ok", "recorded", "completion", "cancelled", "vaccinator other", "other")
DRAIN_TIMEOUT = 60.0


def vaccinator_phone(centre_id: str, k: int) -> str:
    """The k-th vaccinator of a bench centre; vaccinator client k only ever uses number k."""
    return f"+9198{int(centre_id):04d}{k:04d}"


# ---- the data store ----

@dataclass
class Store:
    """The data Redis: a cluster's nodes or one server; the URL the gateway is given."""

    procs: list[subprocess.Popen]
    url: str
    cluster: bool
    directory: Path | None = None  # a cluster's own directory, removed by `stop`

    def stop(self) -> None:
        if self.cluster:
            from tests.cluster.nodes import stop_cluster

            return stop_cluster(self.procs, self.directory)
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)


def start_cluster() -> Store:
    """Three masters on loopback ports, started as the cluster tests start theirs."""
    try:
        from tests.cluster.nodes import start_cluster as start
    except ImportError as exc:
        raise RuntimeError(f"no cluster starter in this checkout ({exc}): "
                           "tests/cluster/nodes.py comes with the cluster-safe store") from None
    ports, procs, directory = start()
    return Store(procs, f"redis://127.0.0.1:{ports[0]}/0", True, directory)


def start_single(tmp: Path) -> Store:
    proc, port = start_redis(tmp)
    return Store([proc], f"redis://127.0.0.1:{port}/0", False)


# ---- the fake provider, in its own process ----

def classify(to: str, text: str) -> str:
    if to.startswith("+9198"):  # a vaccinator (see vaccinator_phone)
        if text.startswith("Teeka: code OK"):
            return "code ok"
        if " recorded for " in text:
            return "recorded"
        if " was cancelled" in text:  # the citizen cancelled before the vaccinator got to it
            return "cancelled"
        return "vaccinator other"
    if text.startswith("Teeka booked"):
        return "booking"
    if " given on " in text and "NOTME" in text:
        return "completion"
    return "other"


def _serve_fake(port: int, delay: float, counts, bookings, problems, ready) -> None:
    def seen(record) -> None:
        to = record.to[0] if record.to else ""
        kind = classify(to, record.message)
        with counts.get_lock():
            counts[0] += 1
            counts[KINDS.index(kind)] += 1
        if kind == "booking":
            bookings.put((to, record.message))
        elif kind == "vaccinator other":
            problems.put(record.message)

    fake = FakeAT(api_key=API_KEY, delay=delay, keep_requests=False, on_answer=seen)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # inherited by the server's threads
    fake.start(port)
    ready.set()
    signal.sigwait({signal.SIGTERM})


# ---- the floor on a cluster ----

def serve_floor_on_cluster(argv: list[str]) -> None:
    """bench/floor_app.py with its Redis client made a cluster client (same options)."""
    from types import SimpleNamespace

    from redis.cluster import RedisCluster

    from bench import floor_app

    ap = argparse.ArgumentParser()
    for name in ("--port", "--processes", "--threads"):
        ap.add_argument(name, type=int, required=True)
    ap.add_argument("--redis-url", required=True)
    args = ap.parse_args(argv)
    floor_app.redis = SimpleNamespace(Redis=RedisCluster)  # create_app calls redis.Redis.from_url
    floor_app.serve("127.0.0.1", args.port, args.processes, args.threads, args.redis_url)


# ---- processes ----

def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def last_error(path: Path, lines: int = 12) -> str:
    """The end of the last traceback in a log, else its last lines."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    starts = [i for i, line in enumerate(text) if "Traceback" in line]
    if not starts:
        return "\n".join(text[-lines:])
    end = next((i for i in range(starts[-1] + 1, len(text)) if text[i] and not text[i][0].isspace()
                and not text[i].startswith("Traceback")), len(text) - 1)
    return "\n".join(text[max(starts[-1], end - lines + 1):end + 1])


def start_web(env: dict, port: int, processes: int, threads: int, log: Path) -> subprocess.Popen:
    """`python -m gateway web`, once /healthz answers and a first USSD hop gets a screen."""
    argv = [sys.executable, "-m", "gateway", "web", "--port", str(port), "--processes",
            str(processes), "--threads", str(threads)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True)
    base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"`gateway web` exited with {proc.returncode}:\n{log_tail(log)}")
        try:
            urllib.request.urlopen(base + "/healthz", timeout=2).read()
            break
        except OSError:
            time.sleep(0.2)
    else:
        stop_server(proc)
        raise RuntimeError(f"`gateway web` did not answer /healthz within 30 s:\n{log_tail(log)}")
    body = b"sessionId=warmup&serviceCode=%2A384%2A123%23&phoneNumber=%2B919700000000&text="
    try:
        answer = urllib.request.urlopen(base + "/ussd", data=body, timeout=5).read().decode()
    except urllib.error.HTTPError as exc:
        stop_server(proc)
        raise RuntimeError(f"`gateway web` answers a first USSD hop with HTTP {exc.code}:\n"
                           f"{log_tail(log)}") from None
    if not answer.startswith("CON "):
        stop_server(proc)
        raise RuntimeError(f"`gateway web` answers a first USSD hop with {answer!r}")
    return proc


def start_workers(env: dict, processes: int, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "gateway", "worker", "--processes", str(processes)],
                                cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True)


def load_vaccinators(config: Config, per_centre: int) -> None:
    rows = ["phone,name,centre_id"]
    rows += [f"{vaccinator_phone(cid, k)},Bench Vaccinator {cid}-{k},{cid}"
             for cid in CENTRES for k in range(per_centre)]
    services = build(config)
    try:
        report = importer.import_csv(services.redis, "vaccinators", io.StringIO("\n".join(rows) + "\n"),
                                     region=config.default_region)
        if not report.ok:
            raise RuntimeError(f"bench vaccinators did not import: {report.bad[:3]}")
    finally:
        services.redis.close()
        services.queue_redis.close()


# ---- the load ----

@dataclass
class Tally:
    """Cumulative counts of the load; a phase is the difference of two snapshots."""

    hops: int = 0
    hop_errors: int = 0
    sms: int = 0
    sms_errors: int = 0
    verifications: int = 0  # V and DONE both answered 200
    failures: dict = field(default_factory=dict)

    def fail(self, what: str) -> None:
        self.failures[what] = self.failures.get(what, 0) + 1


@dataclass
class Work:
    """Booked appointments waiting for a vaccinator, fed by the booking SMS the provider saw."""

    items: deque = field(default_factory=deque)
    busy: int = 0
    unreadable: list = field(default_factory=list)

    def feed(self, bookings) -> None:
        while True:
            try:
                to, text = bookings.get_nowait()
            except queue.Empty:
                return
            m = BOOKED.search(text)
            if not m:
                self.unreadable.append(text)
                continue
            area, centre, ref, code = m.groups()
            self.items.append((f"9{int(area):02d}{centre}", ref, code))


class Load:
    """The clients of one run, and what every part of the machine used."""

    def __init__(self, args, web_port: int, citizens: Citizens, groups: dict[str, list[int]], bookings):
        self.args = args
        self.citizens = citizens
        self.ussd = Pool("127.0.0.1", web_port, "/ussd")
        self.sms = Pool("127.0.0.1", web_port, "/sms/incoming")
        self.groups = groups
        self.bookings = bookings
        self.work = Work()
        self.tally = Tally()
        self.stop_at = 0.0
        self.sent = 0

    def snapshot(self) -> dict:
        t = self.tally
        return {"t": time.monotonic(), "cpu": cpu_now(self.groups), "hops": t.hops, "hop_errors": t.hop_errors,
                "sms": t.sms, "sms_errors": t.sms_errors, "verifications": t.verifications,
                "bookings": self.citizens.outcomes["booked"]}

    async def citizen(self) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() < self.stop_at:
            body, on_answer = self.citizens.next_hop()
            try:
                status, text = await self.ussd.post(body)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                status, text = 0, type(exc).__name__
            self.tally.hops += 1
            if not on_answer(status, text):
                self.tally.hop_errors += 1
                self.tally.fail(f"USSD HTTP {status}: {text[:60]!r}")

    async def vaccinator(self, k: int) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() < self.stop_at:
            if not self.work.items:
                await asyncio.sleep(0.02)
                continue
            centre, ref, code = self.work.items.popleft()
            self.work.busy += 1
            phone, ok = vaccinator_phone(centre, k), True
            for text in (f"V {ref} {code}", f"DONE {ref}"):
                self.sent += 1
                body = incoming_sms_body(phone, text, message_id=f"bench-{os.getpid()}-{self.sent}").encode()
                try:
                    status, answer = await self.sms.post(body)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    status, answer = 0, type(exc).__name__
                self.tally.sms += 1
                if status != 200:
                    ok = False
                    self.tally.sms_errors += 1
                    self.tally.fail(f"SMS HTTP {status}: {answer[:60]!r}")
                    break
            self.tally.verifications += ok
            self.work.busy -= 1

    async def feeder(self) -> None:
        while True:
            self.work.feed(self.bookings)
            await asyncio.sleep(0.01)

    async def phase(self, name: str, citizens: int, vaccinators: int, seconds: float,
                    until_done: bool = False) -> dict:
        """Clients for warmup + seconds; with `until_done` (vaccinators only, on the appointments
        already booked) it ends when that work runs out, after a shorter warmup."""
        loop = asyncio.get_running_loop()
        self.stop_at = float("inf")
        tasks = [asyncio.create_task(self.citizen()) for _ in range(citizens)]
        tasks += [asyncio.create_task(self.vaccinator(k)) for k in range(vaccinators)]
        await asyncio.sleep(min(self.args.warmup, 0.5) if until_done else self.args.warmup)
        before, end = self.snapshot(), loop.time() + seconds
        while loop.time() < end and not (until_done and not self.work.items and not self.work.busy):
            await asyncio.sleep(0.02)
        after = self.snapshot()
        self.stop_at = 0.0
        await asyncio.gather(*tasks)
        return measured(name, before, after)


def cpu_now(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far of each group of process trees, and of this process (the driver)."""
    cpu = {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in groups.items()}
    cpu["driver"] = time.process_time()
    return cpu


def measured(name: str, before: dict, after: dict) -> dict:
    phase = {k: after[k] - before[k] for k in ("hops", "hop_errors", "sms", "sms_errors",
                                               "verifications", "bookings")}
    phase["name"] = name
    phase["seconds"] = after["t"] - before["t"]
    phase["cpu"] = {k: after["cpu"][k] - before["cpu"][k] for k in after["cpu"]}
    return phase


async def floor_phase(port: int, clients: int, seconds: float, warmup: float, groups: dict) -> dict:
    pool, hops, tally = Pool("127.0.0.1", port, "/ussd"), FloorHops(), Tally()
    loop = asyncio.get_running_loop()
    stop = [float("inf")]

    async def client() -> None:
        while loop.time() < stop[0]:
            body, check = hops.next_hop()
            try:
                status, text = await pool.post(body)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                status, text = 0, ""
            tally.hops += 1
            tally.hop_errors += not check(status, text)

    def snapshot() -> dict:
        return {"t": time.monotonic(), "cpu": cpu_now(groups), "hops": tally.hops, "hop_errors": tally.hop_errors,
                "sms": 0, "sms_errors": 0, "verifications": 0, "bookings": 0}

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await asyncio.sleep(warmup)
    before = snapshot()
    await asyncio.sleep(seconds)
    after = snapshot()
    stop[0] = 0.0
    await asyncio.gather(*tasks)
    pool.close()
    return measured("floor", before, after)


async def drain(queues: redis.Redis, counts, load: Load, timeout: float = DRAIN_TIMEOUT) -> bool:
    """Until the SMS queues are empty and the provider has seen nothing new for a second; then
    the booking SMS it saw are handed to the vaccinators."""
    loop = asyncio.get_running_loop()
    deadline, last, quiet_since = loop.time() + timeout, -1, loop.time()
    while loop.time() < deadline:
        waiting = sum(queues.llen(f"rq:queue:{name}") for name in QUEUE_NAMES)
        seen = counts[0]
        if seen != last:
            last, quiet_since = seen, loop.time()
        if not waiting and loop.time() - quiet_since >= 1.0:
            load.work.feed(load.bookings)
            return True
        await asyncio.sleep(0.1)
    return False


# ---- the report ----

def per(phase: dict, count: int) -> dict:
    """CPU milliseconds per operation, by part."""
    return {k: v * 1000 / count for k, v in phase["cpu"].items()} if count else {}


def summarise(floor: dict, book: dict, verify: dict, mixed: dict, provider: dict, extra: dict) -> dict:
    floor_rps = floor["hops"] / floor["seconds"]
    floor_cpu = (floor["cpu"]["floor"] + floor["cpu"]["data redis"]) * 1000 / max(floor["hops"], 1)
    hops_per_booking = book["hops"] / max(book["bookings"], 1)
    rate = lambda p, k: p[k] / p["seconds"] if p["seconds"] else 0.0  # noqa: E731
    mixed_requests = mixed["hops"] + mixed["sms"]
    book_cpu, verify_cpu = per(book, book["bookings"]), per(verify, verify["verifications"])
    mixed_cpu = per(mixed, mixed_requests)
    return {
        "floor": {"requests_per_s": floor_rps, "cpu_ms_per_request": floor_cpu,
                  "errors": floor["hop_errors"], "cpu_ms": per(floor, floor["hops"])},
        "book": {"bookings_per_s": rate(book, "bookings"), "hops_per_s": rate(book, "hops"),
                 "hops_per_booking": hops_per_booking, "cpu_ms_per_booking": book_cpu,
                 "floor_bookings_per_s": floor_rps / hops_per_booking,
                 "floor_cpu_ms_per_booking": floor_cpu * hops_per_booking,
                 "errors": book["hop_errors"]},
        "verify": {"verifications_per_s": rate(verify, "verifications"),
                   "requests_per_s": rate(verify, "sms"), "count": verify["verifications"],
                   "cpu_ms_per_verification": verify_cpu,
                   "floor_verifications_per_s": floor_rps / 2,
                   "floor_cpu_ms_per_verification": floor_cpu * 2, "errors": verify["sms_errors"]},
        "mixed": {"bookings_per_s": rate(mixed, "bookings"),
                  "verifications_per_s": rate(mixed, "verifications"),
                  "requests_per_s": mixed_requests / mixed["seconds"],
                  "requests_ratio": mixed_requests / mixed["seconds"] / floor_rps,
                  "cpu_ms_per_request": mixed_cpu,
                  "web_redis_cpu_ms_per_request": mixed_cpu.get("web", 0) + mixed_cpu.get("data redis", 0),
                  "errors": mixed["hop_errors"] + mixed["sms_errors"]},
        "provider": provider,
        "phases": {p["name"]: p for p in (floor, book, verify, mixed)},
        **extra,
    }


def print_report(s: dict) -> None:
    f, b, v, m = s["floor"], s["book"], s["verify"], s["mixed"]
    parts = ("web", "workers", "data redis", "queue redis", "provider", "driver")
    fmt = lambda cpu: ", ".join(f"{k} {cpu.get(k, 0):.2f}" for k in parts)  # noqa: E731
    print()
    print(f"floor   {f['requests_per_s']:.0f} requests/s; server + data Redis CPU "
          f"{f['cpu_ms_per_request']:.2f} ms a request")
    print(f"book    {b['bookings_per_s']:.1f} bookings/s ({b['hops_per_s']:.0f} hops/s, "
          f"{b['hops_per_booking']:.1f} hops a booking in the mix); floor at that many hops "
          f"{b['floor_bookings_per_s']:.1f}/s, ratio {b['bookings_per_s'] / b['floor_bookings_per_s']:.2f}")
    print(f"        CPU ms per booking: {fmt(b['cpu_ms_per_booking'])}")
    print(f"verify  {v['verifications_per_s']:.1f} verifications/s ({v['count']} V + DONE pairs); "
          f"floor at 2 requests {v['floor_verifications_per_s']:.0f}/s, ratio "
          f"{v['verifications_per_s'] / v['floor_verifications_per_s']:.2f}")
    print(f"        CPU ms per verification: {fmt(v['cpu_ms_per_verification'])}")
    print(f"mixed   {m['bookings_per_s']:.1f} bookings/s and {m['verifications_per_s']:.1f} "
          f"verifications/s; {m['requests_per_s']:.0f} requests/s, ratio to floor "
          f"{m['requests_ratio']:.2f}; web + data Redis CPU {m['web_redis_cpu_ms_per_request']:.2f} ms "
          f"a request (floor {f['cpu_ms_per_request']:.2f})")
    p = s["provider"]
    print(f"SMS     booking {p['booking']} (bookings {p['bookings_made']}), code OK {p['code ok']}, "
          f"recorded {p['recorded']}, completion {p['completion']}, cancelled before V "
          f"{p['cancelled']}, other {p['other']}")
    print(f"errors  {s['errors']} (HTTP and wrong answers {s['http_errors']}, unexpected vaccinator "
          f"replies {p['vaccinator other']}, booking SMS not read {s['unreadable']}, "
          f"completion SMS missing {s['completion_missing']})")
    if s["failures"]:
        print(f"        {s['failures']}")
    if s["problems"]:
        print(f"        vaccinator replies: {s['problems'][:3]}")


# ---- main ----

@dataclass
class Rig:
    """Everything one run starts, stopped in reverse by `close`; `stage` names what is under way."""

    tmp: Path
    stage: str = "starting"
    store: Store | None = None
    servers: list = field(default_factory=list)  # gunicorn masters and the worker: stopped by group
    redises: list = field(default_factory=list)
    fake: multiprocessing.Process | None = None

    def close(self) -> None:
        for proc in reversed(self.servers):
            stop_server(proc)  # SIGTERM, then the whole process group after 15 s
        for proc in self.redises:
            proc.terminate()
            proc.wait(10)
        if self.store is not None:
            self.store.stop()
        if self.fake is not None and self.fake.is_alive():
            os.kill(self.fake.pid, signal.SIGTERM)
            self.fake.join(5)
        shutil.rmtree(self.tmp, ignore_errors=True)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--single", action="store_true", help="data on one redis-server, not a cluster")
    ap.add_argument("--web", type=int, default=2, help="web processes, of the floor too (default 2)")
    ap.add_argument("--threads", type=int, default=4, help="threads per web process (default 4)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--citizens", type=int, default=32, help="USSD clients, closed loop (default 32)")
    ap.add_argument("--vaccinators", type=int, default=16, help="SMS clients, closed loop (default 16)")
    ap.add_argument("--seconds", type=float, default=12, help="measured seconds a phase (default 12)")
    ap.add_argument("--warmup", type=float, default=2, help="unmeasured seconds before each (default 2)")
    ap.add_argument("--provider-delay", type=float, default=0.2, help="fake provider's answer time, "
                    "seconds (default 0.2)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    return ap.parse_args(argv)


def measure_floor(rig: Rig, args) -> dict:
    """floor_app.py with the gateway's web settings on the same data store, as many clients."""
    rig.stage = "measuring the floor"
    port, store = free_port(), rig.store
    argv = ([sys.executable, "bench/mixed.py", "floor-on-cluster", "--port", str(port)] if store.cluster
            else [sys.executable, "bench/floor_app.py", "--port", str(port)])
    floor = start_server(argv + ["--redis-url", store.url, "--processes", str(args.web), "--threads",
                                 str(args.threads)], clean_env(), rig.tmp / "floor.log", port)
    rig.servers.append(floor)
    result = asyncio.run(floor_phase(port, args.citizens + args.vaccinators, args.seconds, args.warmup,
                                     {"floor": [floor.pid], "data redis": [p.pid for p in store.procs]}))
    stop_server(floor)
    rig.servers.remove(floor)
    print(f"floor   {result['hops'] / result['seconds']:.0f} requests/s", flush=True)
    return result


async def run_phases(rig: Rig, args, load: Load, queues: redis.Redis, counts) -> tuple[dict, dict, dict, bool]:
    feeder = asyncio.create_task(load.feeder())
    rig.stage = "booking"
    book = await load.phase("book", args.citizens, 0, args.seconds)
    print(f"book    {book['bookings'] / book['seconds']:.1f} bookings/s", flush=True)
    if not book["bookings"]:
        worst = max(load.tally.failures.items(), key=lambda kv: kv[1], default=("no failure", 0))
        raise RuntimeError(f"no booking went through in {book['seconds']:.0f} s ({book['hops']} hops, "
                           f"{book['hop_errors']} wrong; the most frequent failure, warmup included: "
                           f"{worst[1]} x {worst[0]}); the web "
                           f"log's last error:\n{last_error(rig.tmp / 'web.log')}")
    drained = await drain(queues, counts, load)
    rig.stage = "verifying"
    verify = await load.phase("verify", 0, args.vaccinators, args.seconds, until_done=True)
    print(f"verify  {verify['verifications'] / max(verify['seconds'], 1e-9):.1f} verifications/s",
          flush=True)
    drained &= await drain(queues, counts, load)
    rig.stage = "booking and verifying"
    mixed = await load.phase("mixed", args.citizens, args.vaccinators, args.seconds)
    print(f"mixed   {mixed['bookings'] / mixed['seconds']:.1f} bookings/s, "
          f"{mixed['verifications'] / mixed['seconds']:.1f} verifications/s", flush=True)
    # what was booked at the end of the mixed phase is verified unmeasured, so that every
    # completion SMS can be checked
    rig.stage = "verifying the rest"
    await drain(queues, counts, load)
    await load.phase("rest", 0, args.vaccinators, DRAIN_TIMEOUT, until_done=True)
    drained &= await drain(queues, counts, load)
    feeder.cancel()
    load.ussd.close()
    load.sms.close()
    return book, verify, mixed, drained


def run(rig: Rig, args) -> dict:
    started = time.monotonic()
    kind = "one redis-server" if args.single else "a three-master Redis Cluster"
    counts = multiprocessing.Array("q", len(KINDS))
    bookings, problems, ready = multiprocessing.Queue(), multiprocessing.Queue(), multiprocessing.Event()
    fake_port = free_port()
    rig.fake = multiprocessing.Process(target=_serve_fake, daemon=True, args=(
        fake_port, args.provider_delay, counts, bookings, problems, ready))
    rig.fake.start()
    if not ready.wait(10):
        raise RuntimeError("the fake provider did not start")
    rig.stage = "starting the queue Redis and the data store"
    queue_proc, queue_port = start_redis(rig.tmp)
    rig.redises.append(queue_proc)
    rig.store = start_single(rig.tmp) if args.single else start_cluster()
    settings = dict(GATEWAY_REDIS_URL=rig.store.url, GATEWAY_QUEUE_REDIS_URL=f"redis://127.0.0.1:{queue_port}/0",
                    GATEWAY_CODE_SECRET="bench-secret", GATEWAY_SMS_BACKEND="africastalking",
                    GATEWAY_AT_API_KEY=API_KEY, GATEWAY_AT_USERNAME="sandbox",
                    GATEWAY_AT_API_URL=f"http://127.0.0.1:{fake_port}")
    if rig.store.cluster:
        settings["GATEWAY_REDIS_CLUSTER"] = "1"
    print(f"data on {kind}; RQ on its own redis-server; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; web {args.web} processes x {args.threads} threads, workers "
          f"{args.workers} processes; {args.citizens} citizens + {args.vaccinators} vaccinators; "
          f"phases of {args.warmup:g} + {args.seconds:g} s", flush=True)
    floor = measure_floor(rig, args)

    rig.stage = "loading the catalogue and the vaccinators"
    config = Config.from_env(settings)
    load_catalog(config)
    load_vaccinators(config, args.vaccinators)
    rig.stage = "starting the gateway"
    env = clean_env(**settings)
    web_port = free_port()
    web = start_web(env, web_port, args.web, args.threads, rig.tmp / "web.log")
    rig.servers.append(web)
    workers = start_workers(env, args.workers, rig.tmp / "worker.log")
    rig.servers.append(workers)
    groups = {"web": [web.pid], "workers": [workers.pid], "data redis": [p.pid for p in rig.store.procs],
              "queue redis": [queue_proc.pid], "provider": [rig.fake.pid]}
    citizens = Citizens(AREAS, clock=time.monotonic, active=max(40, args.citizens + 8))
    load = Load(args, web_port, citizens, groups, bookings)
    book, verify, mixed, drained = asyncio.run(run_phases(rig, args, load, redis.Redis(port=queue_port), counts))
    if not drained:
        print(f"the SMS queues did not drain within {DRAIN_TIMEOUT:.0f} s:\n"
              f"{log_tail(rig.tmp / 'worker.log')}", file=sys.stderr)

    provider = {k: counts[i] for i, k in enumerate(KINDS)}
    provider["bookings_made"] = citizens.outcomes["booked"]
    provider["verifications_made"] = load.tally.verifications
    # SMS each operation causes: a booking its slip and its share of the mix's others (codes
    # sent again, ...); a verification the two replies and the completion SMS
    provider["sms_per_booking"] = (provider["booking"] + provider["other"]) / max(1, provider["bookings_made"])
    provider["sms_per_verification"] = sum(provider[k] for k in (
        "code ok", "recorded", "completion", "cancelled", "vaccinator other")) / max(1, load.tally.verifications)
    seen_problems = []
    while not problems.empty() and len(seen_problems) < 5:
        seen_problems.append(problems.get_nowait())
    http_errors = load.tally.hop_errors + load.tally.sms_errors + len(citizens.confused)
    completion_missing = max(0, provider["recorded"] - provider["completion"])
    booking_missing = max(0, provider["bookings_made"] - provider["booking"])
    errors = (http_errors + provider["vaccinator other"] + len(load.work.unreadable)
              + completion_missing + booking_missing + (0 if drained else 1))
    return summarise(floor, book, verify, mixed, provider, {
        "store": "single" if args.single else "cluster", "web": args.web, "threads": args.threads,
        "workers": args.workers, "citizens": args.citizens, "vaccinators": args.vaccinators,
        "cpus": os.cpu_count(), "errors": errors, "http_errors": http_errors,
        "unreadable": len(load.work.unreadable), "completion_missing": completion_missing,
        "booking_missing": booking_missing, "drained": drained,
        "failures": load.tally.failures, "problems": seen_problems,
        "confused": citizens.confused[:3], "seconds_total": time.monotonic() - started})


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["floor-on-cluster"]:
        serve_floor_on_cluster(argv[1:])
        return 0
    args = parse_args(argv)
    started = time.monotonic()
    kind = "one redis-server" if args.single else "a three-master Redis Cluster"
    rig = Rig(Path(tempfile.mkdtemp(prefix="teeka-bench-mixed-")))
    try:
        summary = run(rig, args)
    except Exception as exc:  # a refusal by the cluster (CROSSSLOT) must end the run, readably
        detail = f"{type(exc).__name__}: {exc}"
        print(f"\nmixed load on {kind} FAILED while {rig.stage}: {detail}", file=sys.stderr, flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps({"store": "single" if args.single else "cluster",
                                                   "failed": f"while {rig.stage}: {detail}"[:2000]}))
        return 2
    finally:
        rig.close()
    print_report(summary)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    print(f"wall time {time.monotonic() - started:.0f} s")
    return 0 if summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
