"""Outbound SMS throughput through the real path, against a provider that takes 200 ms per answer.

    record -> RQ job -> `python -m gateway worker` (default settings) -> africastalking SDK
    -> fake provider (tests/fakes/fake_at.py, in its own process, delaying every answer)

It starts its own redis-server on a free port (no persistence), then measures, in one run:

1. floor: the fake provider's own capacity at the same delay, hit directly through the same
   adapter and SDK by many threads in two processes (no Redis, no RQ);
2. drain: N messages recorded and queued up front, then the workers start: messages/s from
   the first request the provider sees to the last;
3. sustained: messages recorded and queued at a fixed rate (default 300/s) while the workers
   run, with the queue depth sampled every second: it must not grow.

Run from the repository root: `python bench/outbound.py` (`--help` for the knobs).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench.procstat import cpu_seconds  # noqa: E402
from gateway import keys, outbox  # noqa: E402
from gateway.africastalking import AfricasTalking  # noqa: E402
from gateway.config import Config  # noqa: E402
from gateway.services import QUEUE_HIGH, Services  # noqa: E402
from tests.fakes.fake_at import FakeAT  # noqa: E402

API_KEY = "bench-api-key"
BODY = "Teeka: your booking at PHC Rajpur on 12 Jun, 09:00-11:00. Ref 48213 90576. Show this SMS at the centre."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the fake provider, in its own process ----
def _serve_fake(port: int, delay: float, counter, ready) -> None:
    def count(_request):
        with counter.get_lock():
            counter.value += 1

    fake = FakeAT(api_key=API_KEY, delay=delay, keep_requests=False, on_answer=count)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # inherited by the server's threads
    fake.start(port)
    ready.set()
    signal.sigwait({signal.SIGTERM})


# ---- floor: the provider hit directly ----
def _hammer(url: str, seconds: float, threads: int, out) -> None:
    adapter = AfricasTalking("sandbox", API_KEY, api_url=url)
    stop = time.monotonic() + seconds
    done = []

    def loop():
        n = 0
        while time.monotonic() < stop:
            result = adapter.send("+919800000001", BODY)
            n += 0 if result.error else 1
        done.append(n)

    pool = [threading.Thread(target=loop) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put(sum(done))


def measure_floor(url: str, seconds: float, processes: int = 2, threads: int = 150) -> float:
    out = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_hammer, args=(url, seconds, threads, out)) for _ in range(processes)]
    start = time.monotonic()
    for p in procs:
        p.start()
    total = sum(out.get() for _ in procs)
    for p in procs:
        p.join()
    return total / (time.monotonic() - start)


# ---- the real path ----
def produce(services: Services, n: int, base: int) -> list[str]:
    """Record and queue n messages (as the web process does after its commit)."""
    ids = []
    pipe = services.redis.pipeline(transaction=False)
    for i in range(n):
        ids.append(outbox.record(pipe, to=f"+9198{base + i:08d}", body=BODY, template="sms/booking", lang="en",
                                 purpose="reply", priority="high", segments=1))
    pipe.execute()
    for message_id in ids:
        outbox.enqueue(services, message_id, "high")
    return ids


def start_workers(env: dict, extra: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gateway", "worker", *extra], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(counter, target: int, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while counter.value < target:
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)
    return time.monotonic()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=6000, help="messages in the drain phase (default 6000)")
    ap.add_argument("--delay", type=float, default=0.2, help="provider delay per answer, seconds (default 0.2)")
    ap.add_argument("--rate", type=float, default=300, help="arrival rate in the sustained phase (default 300/s)")
    ap.add_argument("--seconds", type=float, default=20, help="length of the sustained phase (default 20 s)")
    ap.add_argument("--floor-seconds", type=float, default=5, help="length of the floor measurement (default 5 s)")
    ap.add_argument("--worker-args", default="", help="extra `worker` flags, for experiments (default: none)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="teeka-bench-"))
    redis_port, fake_port = free_port(), free_port()
    server = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(redis_port),
                               "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    counter, ready = multiprocessing.Value("q", 0), multiprocessing.Event()
    fake = multiprocessing.Process(target=_serve_fake, args=(fake_port, args.delay, counter, ready), daemon=True)
    fake.start()
    workers = None
    try:
        ready.wait(10)
        url = f"redis://127.0.0.1:{redis_port}/0"
        fake_url = f"http://127.0.0.1:{fake_port}"
        data = redis.Redis.from_url(url, decode_responses=True)
        for _ in range(100):
            try:
                data.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        config = Config(redis_url=url, at_api_key=API_KEY, at_api_url=fake_url)
        services = Services(config=config, redis=data, queue_redis=redis.Redis.from_url(url))
        queue = services.queue(QUEUE_HIGH)
        env = {**os.environ, "GATEWAY_REDIS_URL": url, "GATEWAY_AT_API_KEY": API_KEY,
               "GATEWAY_AT_API_URL": fake_url, "GATEWAY_AT_USERNAME": "sandbox", "PYTHONPATH": str(ROOT)}
        for name in list(env):
            if name.startswith("GATEWAY_") and name not in ("GATEWAY_REDIS_URL", "GATEWAY_AT_API_KEY",
                                                              "GATEWAY_AT_API_URL", "GATEWAY_AT_USERNAME"):
                del env[name]

        print(f"provider delay {args.delay * 1000:.0f} ms; {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.1f} before the run; workers: `python -m gateway worker "
              f"{args.worker_args or '(default settings)'}`")
        floor = measure_floor(fake_url, args.floor_seconds)
        print(f"floor    provider + SDK alone, 300 threads in 2 processes: {floor:7.1f} req/s")

        # drain: a backlog first, then the workers
        counter.value = 0
        ids = produce(services, args.messages, 0)
        workers = start_workers(env, args.worker_args.split())
        first = wait_for(counter, 1, 60)
        last = wait_for(counter, args.messages, 600)
        if first is None or last is None:
            print(f"drain    FAILED: provider saw {counter.value} of {args.messages}", file=sys.stderr)
            return 1
        drain = (args.messages - 1) / (last - first)
        print(f"drain    {args.messages} queued up front: {drain:7.1f} msg/s   ratio to floor {drain / floor:.2f}")

        # sustained: arrivals at a fixed rate, queue depth sampled every second
        time.sleep(1.0)
        base, before = args.messages, counter.value
        cpu_before = (cpu_seconds(workers.pid), cpu_seconds(fake.pid), cpu_seconds(server.pid), time.process_time())
        depths, tick, start = [], 0.1, time.monotonic()
        per_tick, carry, produced, next_sample = args.rate * tick, 0.0, 0, start + 1.0
        while time.monotonic() - start < args.seconds:
            carry += per_tick
            n = int(carry)
            carry -= n
            ids += produce(services, n, base + produced)
            produced += n
            now = time.monotonic()
            if now >= next_sample:
                depths.append(queue.count)
                next_sample += 1.0
            time.sleep(max(0.0, start + (produced / args.rate) - time.monotonic()))
        elapsed = time.monotonic() - start
        done = wait_for(counter, before + produced, 120)
        sent_in_window = None if done is None else (before + produced - before) / (done - start)
        print(f"sustain  {produced} arrivals at {produced / elapsed:6.1f}/s over {elapsed:.0f} s: "
              f"sent {'n/a' if sent_in_window is None else f'{sent_in_window:6.1f}'} msg/s")
        cpu_after = (cpu_seconds(workers.pid), cpu_seconds(fake.pid), cpu_seconds(server.pid), time.process_time())
        per = [(b - a) / max(1, produced) * 1000 for a, b in zip(cpu_before, cpu_after)]
        print(f"         CPU per message: workers {per[0]:.2f} ms, fake provider {per[1]:.2f} ms, "
              f"redis {per[2]:.2f} ms, producer {per[3]:.2f} ms; {os.cpu_count()} cores would carry "
              f"{os.cpu_count() * 1000 / sum(per):.0f} msg/s with nothing else running")
        print(f"         queue depth each second: {' '.join(str(d) for d in depths)}")
        half = len(depths) // 2
        growing = half and (sum(depths[half:]) / max(1, len(depths) - half)) > 2 * max(1.0, sum(depths[:half]) / half) + 50
        print(f"         queue depth max {max(depths) if depths else 0}, "
              f"{'GROWING' if growing else 'not growing'}")

        pipe = data.pipeline(transaction=False)
        for message_id in ids:
            pipe.hget(keys.message(message_id), "status")
        statuses = pipe.execute()
        sent = sum(1 for s in statuses if s == "sent")
        print(f"records  {sent} of {len(ids)} sent; provider saw {counter.value} requests "
              f"(duplicates: {counter.value - sent})")
        ok = drain >= 300 and not growing and sent == len(ids) == counter.value
        if args.json:
            Path(args.json).write_text(json.dumps({
                "delay": args.delay, "messages": args.messages, "rate": args.rate,
                "floor": floor, "drain": drain, "drain_ratio": drain / floor,
                "arrivals": produced / elapsed, "sent_in_window": sent_in_window,
                "cpu_ms": dict(zip(("workers", "provider", "redis", "producer"), per)),
                "queue_depth_max": max(depths) if depths else 0, "growing": bool(growing),
                "records": len(ids), "sent": sent, "requests": counter.value, "passed": ok,
            }, indent=2))
        print("result  ", "PASS" if ok else "FAIL", "(target: >= 300 msg/s, queue not growing, each sent once)")
        return 0 if ok else 1
    finally:
        if workers is not None:
            workers.send_signal(signal.SIGTERM)
            try:
                workers.wait(30)
            except subprocess.TimeoutExpired:
                workers.kill()
        if fake.is_alive():
            os.kill(fake.pid, signal.SIGTERM)
            fake.join(5)
        server.terminate()
        server.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
