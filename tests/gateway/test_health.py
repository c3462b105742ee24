"""/healthz and /readyz as a load balancer or an operator sees them."""
from __future__ import annotations

import pytest
from rq import Worker

from gateway import create_app
from gateway.services import QUEUE_NAMES
from tests.conftest import free_port


@pytest.fixture
def worker(app):
    """A registered (alive) RQ worker on the app's queues, as `python -m gateway worker` makes."""
    services = app.extensions["teeka"]
    w = Worker([services.queue(name) for name in QUEUE_NAMES], connection=services.queue_redis)
    w.register_birth()
    yield w
    w.register_death()


def test_healthz_says_alive(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"alive": True}


def test_readyz_is_ready_with_redis_and_a_worker(client, worker):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["ready"] is True
    assert body["redis"] == "ok" and body["queue_redis"] == "ok"
    assert body["workers"] == 1
    assert body["queues"] == {name: 0 for name in QUEUE_NAMES}


def test_readyz_reports_queue_depths(app, client, worker):
    app.extensions["teeka"].queue("sms-low").enqueue("builtins.print", "x")
    assert client.get("/readyz").get_json()["queues"]["sms-low"] == 1


def test_readyz_is_not_ready_without_a_worker(client):
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["ready"] is False and body["workers"] == 0 and body["redis"] == "ok"


def test_readyz_is_not_ready_when_redis_is_down(app_config):
    app = create_app(app_config.with_overrides(redis_url=f"redis://127.0.0.1:{free_port()}/0", queue_redis_url=""))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["ready"] is False
    assert body["redis"].startswith("error") and body["queue_redis"].startswith("error")


def test_healthz_stays_alive_when_redis_is_down(app_config):
    app = create_app(app_config.with_overrides(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    assert app.test_client().get("/healthz").status_code == 200
