"""The floor for bench/ussd.py: a bare Flask endpoint doing one Redis GET and one SET.

It answers `POST /ussd` like the gateway (form body in, `text/plain` `CON ...` out) and is
served by gunicorn with the settings `python -m gateway web` uses, so the difference between
the two is what Teeka itself costs per hop.

    python bench/floor_app.py --port 8001 --redis-url redis://127.0.0.1:6379/0
"""
from __future__ import annotations

import argparse
import gc

import redis
from flask import Flask, Response, request


def create_app(redis_url: str) -> Flask:
    app = Flask(__name__)
    # The same client options as the gateway's data client (gateway/redis_conn.py).
    client = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=0.5,
                                  socket_connect_timeout=0.5, health_check_interval=30)

    @app.post("/ussd")
    def ussd():
        key = "floor:" + request.form["sessionId"]
        seen = client.get(key)
        client.set(key, request.form.get("text", ""), ex=600)
        return Response("CON " + ("again" if seen else "hello"), mimetype="text/plain")

    return app


def serve(host: str, port: int, processes: int, threads: int, redis_url: str) -> None:
    """gunicorn with the options of `python -m gateway web` (gateway/cli.py)."""
    from gunicorn.app.base import BaseApplication

    options = {
        "bind": f"{host}:{port}",
        "workers": processes,
        "threads": threads,
        "worker_class": "gthread" if threads > 1 else "sync",
        "timeout": 30,
        "graceful_timeout": 10,
        "proc_name": "teeka-floor",
        "accesslog": None,
        "control_socket_disable": True,
    }

    class Server(BaseApplication):
        def load_config(self):
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            app = create_app(redis_url)
            gc.freeze()  # as `python -m gateway web` does after building its app
            return app

    Server().run()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--redis-url", required=True)
    args = ap.parse_args()
    serve(args.host, args.port, args.processes, args.threads, args.redis_url)


if __name__ == "__main__":
    main()
