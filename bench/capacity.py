"""The whole bench set in one command, as one Markdown table of figures next to their floors.

    python bench/capacity.py [--quick] [--out FILE]

It runs, one after the other, each as a subprocess writing its figures as JSON:

1. bench/ussd.py     USSD hops against a bare Flask floor; Redis bytes per session and
                     appointment (bench/ussd_memory.py);
2. bench/outbound.py outbound SMS through the workers against the fake provider alone;
3. bench/mixed.py    bookings and verifications against the web and worker processes, data on
                     a local three-master Redis Cluster, against floor_app.py on the same cluster;
4. bench/mixed.py --single, the same with the data on one redis-server, for comparison.

Each bench's own output goes to stderr as it runs; the table goes to stdout (and to `--out`).
Every floor is measured in the same run as its figure. It takes under ten minutes on a
2-core machine (`--quick`: about three, with shorter phases and noisier figures). It exits 1
when a bench failed or a target was missed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (name, script and arguments for a full run, for --quick, seconds before it is stopped)
BENCHES = [
    ("ussd", ["bench/ussd.py", "--rounds", "3"],
     ["bench/ussd.py", "--rounds", "1", "--seconds", "4", "--saturation-seconds", "2",
      "--warmup", "1", "--memory-sessions", "300"], 420),
    ("outbound", ["bench/outbound.py"],
     ["bench/outbound.py", "--messages", "2000", "--seconds", "6", "--floor-seconds", "2"], 300),
    ("mixed", ["bench/mixed.py"], ["bench/mixed.py", "--seconds", "4", "--warmup", "1"], 300),
    ("mixed_single", ["bench/mixed.py", "--single"],
     ["bench/mixed.py", "--single", "--seconds", "4", "--warmup", "1"], 300),
]


@dataclass
class Ran:
    name: str
    command: str
    seconds: float
    status: int | None  # None: stopped after its time ran out
    figures: dict

    @property
    def failed(self) -> str:
        """Why there are no figures ('' when there are)."""
        if "failed" in self.figures:
            return self.figures["failed"]
        if not self.figures:
            return "timed out" if self.status is None else f"exited {self.status} without figures"
        return ""


def run_bench(name: str, argv: list[str], limit: float, tmp: Path) -> Ran:
    out = tmp / f"{name}.json"
    command = [sys.executable, *argv, "--json", str(out)]
    print(f"\n=== {name}: {' '.join(argv)}", file=sys.stderr, flush=True)
    started = time.monotonic()
    # SIGINT back to its default in the bench (a shell starting us in the background ignores
    # it), so that a bench out of time gets a KeyboardInterrupt and runs its cleanup
    proc = subprocess.Popen(command, cwd=ROOT, stdout=sys.stderr, stderr=sys.stderr, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        status = proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        print(f"=== {name}: still running after {limit} s, interrupted", file=sys.stderr, flush=True)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the bench and the servers in its group
            proc.wait()
        status = None
    seconds = time.monotonic() - started
    figures = json.loads(out.read_text()) if out.exists() else {}
    print(f"=== {name}: {seconds:.0f} s, exit {status}", file=sys.stderr, flush=True)
    return Ran(name, " ".join(argv), seconds, status, figures)


# ---- the table ----

def ms(value: float) -> str:
    return f"{value:.2f} ms"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "–"


def verdict(ok: bool) -> str:
    return "" if ok else " **missed**"


class Table:
    def __init__(self):
        self.rows: list[str] = []
        self.missed: list[str] = []

    def row(self, figure: str, measured: str, floor: str = "–", ratio_: str = "–", target: str = "–",
            ok: bool | None = None) -> None:
        if ok is False:
            self.missed.append(figure)
        self.rows.append(f"| {figure} | {measured} | {floor} | {ratio_} | "
                         f"{target}{'' if ok is None else verdict(ok)} |")

    def failed(self, figure: str, why: str) -> None:
        self.missed.append(figure)
        self.rows.append(f"| {figure} | **FAILED**: {why.splitlines()[0][:300]} | – | – | – |")


def ussd_rows(t: Table, r: Ran) -> None:
    if r.failed:
        return t.failed("USSD hops (bench/ussd.py)", r.failed)
    f, m, tg = r.figures, r.figures["memory"], r.figures["targets"]
    rate = f"{f['rate']:.0f}"
    t.row(f"USSD hop p99 at {rate} hops/s open loop", ms(f["p99"] * 1e3), ms(f["p99_floor"] * 1e3),
          f"{f['p99_ratio']:.2f}", f"≤ {tg['p99_ratio_max']:g}x floor", f["p99_ratio"] <= tg["p99_ratio_max"])
    t.row(f"USSD hop p50 at {rate} hops/s", ms(f["p50"] * 1e3), ms(f["p50_floor"] * 1e3),
          ratio(f["p50"], f["p50_floor"]))
    t.row(f"USSD saturation, {f['processes']} web processes, {f['concurrency']} clients",
          f"{f['saturation']:.0f} hops/s", f"{f['saturation_floor']:.0f} hops/s",
          f"{f['saturation_ratio']:.2f}", f"≥ {tg['saturation_ratio_min']:g}x floor",
          f["saturation_ratio"] >= tg["saturation_ratio_min"])
    t.row(f"CPU per USSD hop at {rate}/s (web + Redis)", ms(f["cpu_ms"]), ms(f["cpu_ms_floor"]),
          ratio(f["cpu_ms"], f["cpu_ms_floor"]))
    t.row("USSD hops answered wrongly", str(f["errors"]), str(f["errors_floor"]), "–", "0", f["errors"] == 0)
    t.row("Redis bytes per live USSD session", f"{m['session']:.0f} B", target=f"≤ {tg['session_bytes_max']} B",
          ok=m["session"] <= tg["session_bytes_max"])
    t.row("Redis bytes per appointment with its indexes", f"{m['appointment']:.0f} B",
          target=f"≤ {tg['appointment_bytes_max']} B", ok=m["appointment"] <= tg["appointment_bytes_max"])
    t.row("Redis bytes per person / booking SMS record / its RQ job",
          f"{m['person']:.0f} / {m['booking_sms']:.0f} / {m['booking_sms_job']:.0f} B")


def outbound_rows(t: Table, r: Ran) -> None:
    if r.failed:
        return t.failed("outbound SMS (bench/outbound.py)", r.failed)
    f = r.figures
    t.row(f"outbound SMS drain, {f['messages']} queued, provider {f['delay'] * 1e3:.0f} ms",
          f"{f['drain']:.0f} msg/s", f"{f['floor']:.0f} req/s", f"{f['drain_ratio']:.2f}", "≥ 300 msg/s",
          f["drain"] >= 300)
    t.row(f"outbound SMS sustained at {f['rate']:.0f}/s: queue depth max",
          f"{f['queue_depth_max']} ({'growing' if f['growing'] else 'not growing'}; "
          f"arrivals {f['arrivals']:.0f}/s)", target="not growing", ok=not f["growing"])
    c = f["cpu_ms"]
    t.row("CPU per outbound SMS: workers / provider / Redis",
          f"{c['workers']:.2f} / {c['provider']:.2f} / {c['redis']:.2f} ms")
    t.row("SMS records sent / provider requests", f"{f['sent']} of {f['records']} / {f['requests']}",
          target="each once", ok=f["sent"] == f["records"] == f["requests"])


def cpu_split(cpu: dict) -> str:
    return (f"web {cpu.get('web', 0):.2f} / workers {cpu.get('workers', 0):.2f} / data Redis "
            f"{cpu.get('data redis', 0):.2f} / RQ Redis {cpu.get('queue redis', 0):.2f} ms")


def mixed_rows(t: Table, r: Ran, where: str, full: bool) -> None:
    if r.failed:
        return t.failed(f"mixed load, {where} (bench/mixed.py)", r.failed)
    f = r.figures
    b, v, m, fl, p = f["book"], f["verify"], f["mixed"], f["floor"], f["provider"]
    procs = f"{f['web']} web + {f['workers']} worker processes"
    t.row(f"bookings/s over USSD alone, {where}, {procs}", f"{b['bookings_per_s']:.1f}",
          f"{b['floor_bookings_per_s']:.1f}", ratio(b["bookings_per_s"], b["floor_bookings_per_s"]))
    t.row(f"verifications/s (V + DONE) alone, {where}", f"{v['verifications_per_s']:.1f}",
          f"{v['floor_verifications_per_s']:.0f}",
          ratio(v["verifications_per_s"], v["floor_verifications_per_s"]))
    t.row(f"mixed: bookings/s + verifications/s, {where}",
          f"{m['bookings_per_s']:.1f} + {m['verifications_per_s']:.1f} "
          f"({m['requests_per_s']:.0f} requests/s)", f"{fl['requests_per_s']:.0f} requests/s",
          f"{m['requests_ratio']:.2f}")
    t.row(f"CPU per request, web + data Redis, mixed, {where}", ms(m["web_redis_cpu_ms_per_request"]),
          ms(fl["cpu_ms_per_request"]), ratio(m["web_redis_cpu_ms_per_request"], fl["cpu_ms_per_request"]))
    if full:
        t.row(f"CPU per booking ({b['hops_per_booking']:.1f} hops of the mix), {where}",
              cpu_split(b["cpu_ms_per_booking"]), ms(b["floor_cpu_ms_per_booking"]) + " (web + Redis)")
        t.row(f"CPU per verification (2 SMS in, 3 out), {where}", cpu_split(v["cpu_ms_per_verification"]),
              ms(v["floor_cpu_ms_per_verification"]) + " (web + Redis)")
        t.row("completion SMS delivered / doses recorded", f"{p['completion']} / {p['recorded']}",
              target="equal", ok=p["completion"] == p["recorded"])
    t.row(f"errors in the mixed load, {where}", str(f["errors"]), target="0", ok=f["errors"] == 0)


# Headroom: a Python process planned at 60% of a core, a Redis shard (one thread, with
# persistence and replication to serve too) at 50%.
PROCESS_SHARE, REDIS_SHARE = 0.6, 0.5
PROVIDER_SECONDS = 0.2  # the fake provider's answer time in bench/mixed.py


def plan_rows(runs: dict[str, Ran]) -> list[str]:
    """Per 1,000 operations a second, from the mixed load's CPU per operation (ms/op = cores)."""
    source = next((r for r in (runs["mixed"], runs["mixed_single"]) if not r.failed), None)
    if source is None:
        return []
    f = source.figures
    where = "the Redis Cluster" if f["store"] == "cluster" else "one Redis (the cluster run failed)"
    ops = (("booking", f["book"]["cpu_ms_per_booking"], f["provider"]["sms_per_booking"]),
           ("verification", f["verify"]["cpu_ms_per_verification"], f["provider"]["sms_per_verification"]))

    def cell(cores: float, share: float) -> str:
        return f"{cores:.2f} cores ÷ {share:g} → **{math.ceil(cores / share)}**"

    rows = [f"Plan per 1,000 operations a second, from the CPU per operation of the mixed load on "
            f"{where} (x ms of CPU per operation = x cores at 1,000 a second; processes at "
            f"{PROCESS_SHARE:.0%} of a core, Redis shards at {REDIS_SHARE:.0%}; sends in flight = "
            f"SMS/s × {PROVIDER_SECONDS:g} s answer time):", "",
            "| per 1,000/s | web processes | worker processes | data Redis masters | RQ Redis servers "
            "| SMS/s | sends in flight |", "|---|---|---|---|---|---|---|"]
    for name, cpu, sms in ops:
        rows.append(f"| {name}s | {cell(cpu.get('web', 0), PROCESS_SHARE)} | "
                    f"{cell(cpu.get('workers', 0), PROCESS_SHARE)} | "
                    f"{cell(cpu.get('data redis', 0), REDIS_SHARE)} | "
                    f"{cell(cpu.get('queue redis', 0), REDIS_SHARE)} | {sms * 1000:.0f} | "
                    f"{sms * 1000 * PROVIDER_SECONDS:.0f} |")
    return rows


def machine() -> dict:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    return {"cores": os.cpu_count(), "model": model, "load": os.getloadavg(), "commit": commit or "?",
            "python": platform.python_version()}


def render(runs: dict[str, Ran], facts: dict, command: str, total: float, quick: bool) -> tuple[str, Table]:
    t = Table()
    ussd_rows(t, runs["ussd"])
    outbound_rows(t, runs["outbound"])
    mixed_rows(t, runs["mixed"], "cluster", True)
    mixed_rows(t, runs["mixed_single"], "one Redis", True)
    load = " / ".join(f"{x:.2f}" for x in facts["load"])
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Capacity run of {when}{' (--quick: short phases, noisy)' if quick else ''}",
        "",
        f"- machine: {facts['cores']} cores, {facts['model']}; load average at start {load} (1/5/15 min)",
        f"- code: commit {facts['commit']} (plus any uncommitted changes), Python {facts['python']}",
        f"- command: `{command}`, wall time {total:.0f} s ("
        + ", ".join(f"{r.name} {r.seconds:.0f} s" for r in runs.values()) + ")",
        "",
        "| figure | measured | floor | ratio | target |",
        "|---|---|---|---|---|",
        *t.rows,
    ]
    if t.missed:
        lines += ["", "Missed or failed: " + "; ".join(t.missed)]
    plan = plan_rows(runs)
    if plan:
        lines += ["", *plan]
    return "\n".join(lines) + "\n", t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter phases: about three minutes, noisier")
    ap.add_argument("--out", metavar="FILE", help="also write the table to FILE")
    args = ap.parse_args(argv)
    command = "python bench/capacity.py" + "".join(
        f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv))
    facts = machine()
    started = time.monotonic()
    runs: dict[str, Ran] = {}
    with tempfile.TemporaryDirectory(prefix="teeka-capacity-") as tmp:
        for name, full, quick, limit in BENCHES:
            runs[name] = run_bench(name, quick if args.quick else full, limit, Path(tmp))
    text, table = render(runs, facts, command, time.monotonic() - started, args.quick)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 1 if table.missed else 0


if __name__ == "__main__":
    sys.exit(main())
