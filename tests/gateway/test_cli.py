"""`python -m gateway` as an operator runs it: help, `web`, and `run` end to end."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from gateway import redis_conn
from gateway.config import Config
from tests import conftest
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def gateway_env(**settings: str) -> dict:
    """This process's environment without its GATEWAY_* settings, plus `settings` (and the
    queues' server when the test store is a cluster)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    if conftest.TEST_QUEUE_REDIS_URL and "GATEWAY_REDIS_URL" in settings:
        env["GATEWAY_QUEUE_REDIS_URL"] = conftest.TEST_QUEUE_REDIS_URL
    env.update(settings)
    return env


def cli(*args: str, **settings: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, env=gateway_env(**settings),
                          capture_output=True, text=True, timeout=60)


def http(url: str, form: dict | None = None) -> tuple[int, str]:
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    try:
        with urllib.request.urlopen(url, data=data, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_for(url: str, status: int = 200, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> str:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process exited early:\n{proc.stderr.read()[-3000:]}")
        try:
            last = http(url)
            if last[0] == status:
                return last[1]
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer {status} within {timeout}s (last: {last})")


def stop(proc: subprocess.Popen, timeout: float = 30.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def test_help_lists_the_commands():
    result = cli("--help")
    assert result.returncode == 0
    for name in ("run", "web", "worker"):
        assert f"    {name} " in result.stdout


@pytest.mark.parametrize("name, flags", [("run", ["--host", "--port", "--no-demo"]),
                                         ("web", ["--host", "--port", "--processes", "--threads"]),
                                         ("worker", ["--processes", "--concurrency", "--burst"])])
def test_each_command_explains_its_flags(name, flags):
    result = cli(name, "--help")
    assert result.returncode == 0
    assert all(flag in result.stdout for flag in flags)


def test_no_command_prints_help_and_fails():
    result = cli()
    assert result.returncode == 2
    assert "<command>" in result.stdout


def test_a_bad_setting_is_reported_by_name():
    result = cli("web", GATEWAY_MAX_PER_MOBILE="lots")
    assert result.returncode == 2
    assert "GATEWAY_MAX_PER_MOBILE" in result.stderr


def test_web_serves_the_webhooks_and_stops_on_sigterm(redis_url, rdb):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "web", "--port", str(port), "--processes", "1"],
                            cwd=ROOT, env=gateway_env(GATEWAY_REDIS_URL=redis_url, GATEWAY_CODE_SECRET="t"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert json.loads(wait_for(f"http://127.0.0.1:{port}/healthz", proc=proc)) == {"alive": True}
        status, _ = http(f"http://127.0.0.1:{port}/sms/incoming", {"id": "x"})
        assert status == 400
    finally:
        assert stop(proc) == 0
    log = proc.stderr.read()
    webhook = [json.loads(line) for line in log.splitlines() if '"event": "webhook"' in line]
    assert webhook and webhook[0]["reason"] == "field 'from' required"


def test_run_starts_everything_on_an_embedded_redis_and_stops_it(tmp_path):
    port, var = free_port(), tmp_path / "var"
    config = Config(data_dir=str(var))
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--port", str(port)], cwd=ROOT,
                            env=gateway_env(GATEWAY_DATA_DIR=str(var), GATEWAY_CODE_SECRET="t",
                                            GATEWAY_WEBHOOK_KEY="k 1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    lines: list[str] = []  # read as it comes: the banner is printed once web answers
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        wait_for(base + "/readyz", proc=proc)  # web answers, Redis answers, a worker is alive
        assert redis_conn.embedded_alive(config)
        status, body = http(base + "/ussd?key=k%201", {"sessionId": "s1", "serviceCode": "*384*123#",
                                                     "phoneNumber": "+919812345210", "text": ""})
        assert status == 200 and body[:4] in ("CON ", "END ")
        assert http(base + "/ussd", {})[0] == 403
        deadline = time.monotonic() + 10
        while not any("Simulator:" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        code = stop(proc)
    reader.join(timeout=10)
    out = "".join(lines)
    assert code == 0, proc.stderr.read()
    for path in ("/ussd", "/ussd/events", "/sms/incoming", "/sms/delivery"):
        assert f"{base}{path}?key=k%201" in out
    assert f"{base}/simulator" in out
    assert not redis_conn.embedded_alive(config), "run stops the Redis it started"
    assert (var / "appendonly.aof").exists() or (var / "appendonlydir").exists()
