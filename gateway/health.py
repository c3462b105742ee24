"""Liveness and readiness for load balancers and operators."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from redis.exceptions import RedisClusterException, RedisError
from rq import Worker

from .services import QUEUE_NAMES

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process answers HTTP; says nothing about Redis."""
    return jsonify(alive=True)


@bp.get("/readyz")
def readyz():
    """Ready when both Redis connections answer and at least one RQ worker is alive."""
    services = current_app.extensions["teeka"]
    report: dict = {"redis": _ping(services.redis), "queue_redis": _ping(services.queue_redis)}
    if report["queue_redis"] == "ok":
        try:
            report["queues"] = {name: services.queue(name).count for name in QUEUE_NAMES}
            report["workers"] = len(Worker.all(connection=services.queue_redis))
        except (RedisError, RedisClusterException) as exc:
            report["queue_redis"] = f"error: {type(exc).__name__}"
    ready = report["redis"] == "ok" and report["queue_redis"] == "ok" and report.get("workers", 0) > 0
    return jsonify(ready=ready, **report), 200 if ready else 503


def _ping(client) -> str:
    try:
        client.ping()
        return "ok"
    except (RedisError, RedisClusterException) as exc:
        return f"error: {type(exc).__name__}"
