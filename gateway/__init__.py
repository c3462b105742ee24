"""Teeka's shell: the Flask app factory. Importing this package does no work."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from .config import Config
    from .services import Services

# Small enough for any webhook (fields are capped at 1,000 characters), big enough for all of them.
MAX_REQUEST_BYTES = 64 * 1024


def create_app(config: "Config | None" = None, services: "Services | None" = None) -> "Flask":
    """Build the app: services (Redis clients, queues) from `config` or the environment, blueprints."""
    from flask import Flask

    from . import health, metrics, webhooks
    from .config import Config
    from .services import build

    if services is None:
        services = build(config or Config.from_env())
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    app.extensions["teeka"] = services
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    if services.config.simulator:
        _register_simulator(app)
    return app


def _register_simulator(app: "Flask") -> None:
    from .logs import log_event

    try:
        from .simulator import bp
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.simulator":
            raise
        log_event("simulator_unavailable")
        return
    app.register_blueprint(bp)
