"""USSD hops through the real app under its production server, next to a floor in the same run.

    citizens (bench/ussd_bot.py) -> HTTP keep-alive -> `python -m gateway web` (gunicorn)
                                                    -> Redis (a redis-server this bench starts)

The floor is bench/floor_app.py: a bare Flask endpoint doing one Redis GET and one SET, under
the same gunicorn settings, fed hops of the same size. Both run side by side; in each of
`--rounds` rounds (the order swapped every round, so a machine that gets busier or quieter
weighs on both alike), each of the two gets:

1. latency: hops arriving OPEN-LOOP at a fixed rate (default 200/s); p50/p99 measured from
   the time each hop was due;
2. saturation: closed loop, `--concurrency` clients back to back: hops/s completed.

A figure is the median over the rounds; a ratio is the median of the rounds' ratios.

Then, in this process through the gateway's own code, Redis bytes per live USSD session and
per appointment with all its indexes (bench/ussd_memory.py). It prints a Markdown table and
exits 1 when a target is missed. Run from the repository root: `python bench/ussd.py`
(`--help` for the knobs); it takes about three minutes.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench import ussd_memory  # noqa: E402
from bench.procstat import cpu_seconds  # noqa: E402
from bench.ussd_bot import Citizens, FloorHops  # noqa: E402
from bench.ussd_load import Pool, Result, closed_loop, open_loop  # noqa: E402
from gateway import demo, importer  # noqa: E402
from gateway.config import Config  # noqa: E402
from gateway.conversation import now_in  # noqa: E402
from gateway.redis_conn import redis_executable  # noqa: E402
from gateway.services import build  # noqa: E402

AREAS = [f"7{n:05d}" for n in range(1, 21)]  # 20 bench areas, 3 centres each
SLOTS = ("08:00-12:00", "12:00-16:00", "16:00-20:00", "20:00-23:59")
P99_RATIO_MAX = 2.0
THROUGHPUT_RATIO_MIN = 0.7
SESSION_BYTES_MAX = 512
APPOINTMENT_BYTES_MAX = 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(tmp: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([redis_executable(), "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            return proc, port
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the bench's redis-server did not start")


def load_catalog(config: Config) -> None:
    """The demo data plus 20 areas of 3 centres with big sessions for a week."""
    services = build(config)
    today = now_in(services).date()
    demo.load(services, today)
    centres = ["centre_id,name,district,area_code,address"]
    sessions = ["centre_id,date,vaccine,min_age,dose,slot,capacity"]
    for a, area in enumerate(AREAS):
        for c in range(3):
            cid = f"9{a:02d}{c}"
            centres.append(f"{cid},Bench Centre {a}-{c} Urban PHC,Bench District {a % 5},{area},"
                           f"Road {c}")
            for d in range(8):
                day = today + timedelta(days=d)
                vaccine = "Covishield" if c % 2 else "Covaxin"
                sessions += [f"{cid},{day},{vaccine},18,1|2,{slot},100000" for slot in SLOTS]
    for kind, rows in (("centres", centres), ("sessions", sessions)):
        report = importer.import_csv(services.redis, kind, io.StringIO("\n".join(rows) + "\n"))
        assert report.ok, report.bad[:3]
    services.redis.close()
    services.queue_redis.close()


def clean_env(**settings: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(settings, PYTHONPATH=str(ROOT))
    return env


def start_server(argv: list[str], env: dict, log: Path, port: int) -> subprocess.Popen:
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=out,
                                start_new_session=True)
    deadline = time.monotonic() + 30
    body = b"sessionId=warmup&serviceCode=%2A384%2A123%23&phoneNumber=%2B919700000000&text="
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{argv} exited: see {log}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ussd", data=body, timeout=2).read()
            return proc
        except OSError:
            time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError(f"{argv} did not answer within 30 s: see {log}")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # gunicorn's master stops its workers
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@dataclass
class Side:
    """One server under test: its process, its hop source, what each round measured."""

    name: str
    proc: subprocess.Popen
    pool: Pool
    source: object
    paced: list[Result] = field(default_factory=list)
    saturated: list[Result] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)  # server + Redis CPU per paced hop

    def p99(self) -> float:
        return statistics.median(r.percentile(99) for r in self.paced)

    def p50(self) -> float:
        return statistics.median(r.percentile(50) for r in self.paced)

    def throughput(self) -> float:
        return statistics.median(r.rate for r in self.saturated)

    def errors(self) -> int:
        return sum(r.errors for r in self.paced + self.saturated)

    def failures(self) -> Counter:
        return sum((r.failures for r in self.paced + self.saturated), Counter())


def interleave(floor: Side, app: Side, args, redis_proc: subprocess.Popen) -> None:
    """Rounds of floor and gateway one after the other, the order swapped every round, so a
    machine that gets busier or quieter during the run weighs on both alike."""

    async def paced(side: Side, warmup: float) -> None:
        cpu = cpu_seconds(side.proc.pid) + cpu_seconds(redis_proc.pid)
        result = await open_loop(side.pool, side.source, args.rate, args.seconds, warmup)
        cpu = cpu_seconds(side.proc.pid) + cpu_seconds(redis_proc.pid) - cpu
        side.paced.append(result)
        side.cpu_ms.append(cpu * 1000 / max(result.sent, 1))

    async def saturated(side: Side) -> None:
        side.saturated.append(await closed_loop(side.pool, side.source, args.concurrency,
                                                args.saturation_seconds, 1.0))

    async def run() -> None:
        for n in range(args.rounds):
            order = (floor, app) if n % 2 == 0 else (app, floor)
            for side in order:
                await paced(side, args.warmup if n == 0 else 1.0)
            for side in order:
                await saturated(side)
            print(f"round {n + 1}/{args.rounds}: " + "; ".join(
                f"{s.name} p99 {s.paced[-1].percentile(99) * 1e3:.2f} ms, "
                f"{s.saturated[-1].rate:.0f} hops/s" for s in (floor, app)), flush=True)
        floor.pool.close()
        app.pool.close()

    asyncio.run(run())


def row(figure: str, value: str, floor: str = "–", ratio: str = "–", target: str = "–",
        ok: bool | None = None) -> str:
    verdict = "–" if ok is None else ("pass" if ok else "FAIL")
    return f"| {figure} | {value} | {floor} | {ratio} | {target} | {verdict} |"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=200, help="open-loop hops/s (default 200)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of floor and gateway (default 5)")
    ap.add_argument("--seconds", type=float, default=8, help="measured seconds at the rate, "
                    "per round and side (default 8)")
    ap.add_argument("--saturation-seconds", type=float, default=3,
                    help="measured closed-loop seconds per round and side (default 3)")
    ap.add_argument("--warmup", type=float, default=3, help="unmeasured seconds before the "
                    "first round of each side (default 3; 1 s before later ones)")
    ap.add_argument("--concurrency", type=int, default=32, help="closed-loop clients")
    ap.add_argument("--processes", type=int, default=2, help="gunicorn processes of both")
    ap.add_argument("--threads", type=int, default=4, help="gunicorn threads of both")
    ap.add_argument("--memory-sessions", type=int, default=1000,
                    help="sessions walked for the memory figures (default 1000)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="teeka-bench-ussd-"))
    redis_proc, redis_port = start_redis(tmp)
    url = f"redis://127.0.0.1:{redis_port}"
    settings = dict(GATEWAY_REDIS_URL=f"{url}/0", GATEWAY_CODE_SECRET="bench-secret",
                    GATEWAY_SMS_BACKEND="africastalking", GATEWAY_AT_API_KEY="bench",
                    GATEWAY_AT_API_URL="http://127.0.0.1:9")  # no worker runs: nothing is sent
    config = Config.from_env(settings)
    server_flags = ["--processes", str(args.processes), "--threads", str(args.threads)]
    servers: list[subprocess.Popen] = []
    try:
        load_catalog(config)
        print(f"{os.cpu_count()} CPUs; gunicorn {args.processes} processes x {args.threads} "
              f"threads; {args.rounds} rounds, each side: {args.rate:.0f} hops/s open loop for "
              f"{args.seconds:.0f} s, then {args.concurrency} clients closed loop for "
              f"{args.saturation_seconds:.0f} s", flush=True)

        floor_port, app_port = free_port(), free_port()
        floor_proc = start_server([sys.executable, "bench/floor_app.py", "--port",
                                   str(floor_port), "--redis-url", f"{url}/2", *server_flags],
                                  clean_env(), tmp / "floor.log", floor_port)
        servers.append(floor_proc)
        app_proc = start_server([sys.executable, "-m", "gateway", "web", "--port", str(app_port),
                                 *server_flags], clean_env(**settings), tmp / "web.log", app_port)
        servers.append(app_proc)
        citizens = Citizens(AREAS, clock=time.monotonic)
        floor = Side("floor", floor_proc, Pool("127.0.0.1", floor_port), FloorHops())
        app = Side("gateway", app_proc, Pool("127.0.0.1", app_port), citizens)
        interleave(floor, app, args, redis_proc)
        for proc in servers:
            stop_server(proc)
        total = sum(citizens.kinds.values())
        print("hop mix: " + ", ".join(f"{kind} {100 * n / total:.0f}%"
                                      for kind, n in citizens.kinds.most_common()))
        print("sessions: " + ", ".join(f"{k} {n}" for k, n in citizens.outcomes.most_common()))
        for side in (floor, app):
            if side.failures():
                print(f"{side.name} failures: {dict(side.failures())}")
        if citizens.confused:
            print(f"screens the citizens could not answer: {citizens.confused[:3]}")

        services = build(config.with_overrides(redis_url=f"{url}/1"))
        load_catalog(services.config)
        memory = ussd_memory.measure(services, AREAS, args.memory_sessions)
    finally:
        for proc in servers:
            stop_server(proc)
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    p99_ratio = statistics.median(a.percentile(99) / f.percentile(99)
                                  for a, f in zip(app.paced, floor.paced))
    sat_ratio = statistics.median(a.rate / f.rate for a, f in zip(app.saturated, floor.saturated))
    f_cpu, a_cpu = statistics.median(floor.cpu_ms), statistics.median(app.cpu_ms)
    errors = app.errors() + len(citizens.confused)
    checks = [p99_ratio <= P99_RATIO_MAX, sat_ratio >= THROUGHPUT_RATIO_MIN,
              memory["session"] <= SESSION_BYTES_MAX,
              memory["appointment"] <= APPOINTMENT_BYTES_MAX, errors == 0]
    ms = lambda seconds: f"{seconds * 1e3:.2f} ms"  # noqa: E731
    lines = [
        "| figure | value | floor | ratio | target | pass/fail |",
        "|---|---|---|---|---|---|",
        row(f"p99 latency at {args.rate:.0f} hops/s", ms(app.p99()), ms(floor.p99()),
            f"{p99_ratio:.2f}", f"<= {P99_RATIO_MAX:g}x floor", checks[0]),
        row(f"p50 latency at {args.rate:.0f} hops/s", ms(app.p50()), ms(floor.p50()),
            f"{app.p50() / floor.p50():.2f}"),
        row("saturation throughput", f"{app.throughput():.0f} hops/s",
            f"{floor.throughput():.0f} hops/s", f"{sat_ratio:.2f}",
            f">= {THROUGHPUT_RATIO_MIN:g}x floor", checks[1]),
        row(f"CPU per hop at {args.rate:.0f} hops/s (server + Redis)", f"{a_cpu:.2f} ms",
            f"{f_cpu:.2f} ms", f"{a_cpu / f_cpu:.2f}"),
        row("hops answered wrongly (HTTP, malformed, unexpected screen)", str(errors),
            str(floor.errors()), "–", "0", checks[4]),
        row("Redis bytes per live USSD session (English, on the confirm screen)",
            f"{memory['session']:.0f} B", target=
            f"<= {SESSION_BYTES_MAX} B", ok=checks[2]),
        row("  of which the hop record / the resume offer",
            f"{memory['session_hop_record']:.0f} B / {memory['session_resume_offer']:.0f} B"),
        row("  the same, a session in Hindi (UCS-2 screens, 3 bytes a letter)",
            f"{memory['session_hindi']:.0f} B"),
        row("Redis bytes per appointment with its indexes", f"{memory['appointment']:.0f} B",
            target=f"<= {APPOINTMENT_BYTES_MAX} B", ok=checks[3]),
        row("  of which its own keys / its share of indexes and audit",
            f"{memory['appointment_own_keys']:.0f} B / {memory['appointment_shared']:.0f} B"),
        row("person record (once per person, not per appointment)", f"{memory['person']:.0f} B"),
        row("booking SMS record / its RQ job until sent", f"{memory['booking_sms']:.0f} B / "
            f"{memory['booking_sms_job']:.0f} B"),
    ]
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "rate": args.rate, "rounds": args.rounds, "processes": args.processes,
            "threads": args.threads, "concurrency": args.concurrency,
            "p99": app.p99(), "p99_floor": floor.p99(), "p99_ratio": p99_ratio,
            "p50": app.p50(), "p50_floor": floor.p50(),
            "saturation": app.throughput(), "saturation_floor": floor.throughput(),
            "saturation_ratio": sat_ratio, "cpu_ms": a_cpu, "cpu_ms_floor": f_cpu,
            "errors": errors, "errors_floor": floor.errors(), "memory": memory,
            "targets": {"p99_ratio_max": P99_RATIO_MAX, "saturation_ratio_min": THROUGHPUT_RATIO_MIN,
                        "session_bytes_max": SESSION_BYTES_MAX,
                        "appointment_bytes_max": APPOINTMENT_BYTES_MAX},
            "passed": all(checks)}, indent=2))
    return 0 if all(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
