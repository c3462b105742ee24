"""Load for bench/ussd.py: a small keep-alive HTTP/1.1 client on asyncio and two drivers.

- `open_loop`: hops start at fixed times (`rate` a second) whether or not earlier ones have
  answered, and each latency is measured from the time the hop was due, so a server that
  falls behind is charged for the queue it builds (no coordinated omission).
- `closed_loop`: `concurrency` clients each send the next hop as soon as the last one
  answered; the hops a second they complete is the server's saturation throughput.

A source gives the hops: `next_hop() -> (form body, on_answer(status, text))`.
"""
from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

FORM = "application/x-www-form-urlencoded"


class Pool:
    """Keep-alive connections to one server; a new one is opened whenever none is idle."""

    def __init__(self, host: str, port: int, path: str = "/ussd"):
        self.host, self.port, self.path = host, port, path
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                     f"Content-Type: {FORM}\r\nContent-Length: ").encode()

    async def post(self, body: bytes) -> tuple[int, str]:
        for attempt in (0, 1):
            reused = bool(self.idle) and attempt == 0  # a retry always gets a fresh connection
            reader, writer = self.idle.pop() if reused else await asyncio.open_connection(
                self.host, self.port)
            try:
                writer.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
                status, text, keep = await _read_response(reader)
            except (ConnectionError, asyncio.IncompleteReadError, ValueError):
                writer.close()
                if reused and attempt == 0:
                    continue  # the server closed an idle keep-alive connection: once more
                raise
            if keep:
                self.idle.append((reader, writer))
            else:
                writer.close()
            return status, text
        raise ConnectionError("unreachable")

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, str, bool]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    status = int(status_line.split(b" ", 2)[1])
    length, keep = 0, True
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            keep = False
    body = await reader.readexactly(length) if length else b""
    return status, body.decode("utf-8"), keep


@dataclass
class Result:
    """Latencies (seconds) of the measured hops, and what went wrong."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    sent: int = 0
    seconds: float = 0.0
    late: int = 0  # hops the client itself could not start within 5 ms of their due time
    failures: Counter = field(default_factory=Counter)  # what went wrong, by kind

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def _one(pool: Pool, source, due: float, result: Result | None) -> None:
    body, on_answer = source.next_hop()
    loop = asyncio.get_running_loop()
    if result is not None and loop.time() - due > 0.005:
        result.late += 1
    failure = ""
    try:
        status, text = await pool.post(body)
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        status, text, failure = 0, "", type(exc).__name__
    ok = on_answer(status, text)
    if result is not None:
        result.latencies.append(loop.time() - due)
        if not ok:
            result.errors += 1
            result.failures[failure or f"HTTP {status}: {text[:60]!r}"] += 1


async def open_loop(pool: Pool, source, rate: float, seconds: float, warmup: float) -> Result:
    """Hops due every 1/rate seconds for warmup + seconds; only the last `seconds` count."""
    loop = asyncio.get_running_loop()
    result = Result(seconds=seconds)
    total, skip = int(rate * (warmup + seconds)), int(rate * warmup)
    start = loop.time() + 0.05
    tasks = set()
    for i in range(total):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(_one(pool, source, due, result if i >= skip else None))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        result.sent += 1
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    return result


async def closed_loop(pool: Pool, source, concurrency: int, seconds: float,
                      warmup: float) -> Result:
    """`concurrency` clients back to back; hops finished in the last `seconds` count."""
    loop = asyncio.get_running_loop()
    result = Result(seconds=seconds)
    measure_from = loop.time() + warmup
    stop = measure_from + seconds

    async def client() -> None:
        while loop.time() < stop:
            due = loop.time()
            await _one(pool, source, due, result if due >= measure_from else None)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    # hops that started inside the window but ended after it still count: close enough
    # at thousands of hops a second, and the same for the floor and the gateway
    return result
