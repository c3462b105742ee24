"""`python -m gateway <command>`: a registry of subcommands, and `run`, `web`, `worker`.

Other modules add commands: any `gateway/cli_<topic>.py` is imported before parsing, and
registers its commands with the `command` decorator:

    @command("stats", "show bookings and messages per day", arg("--days", type=int, default=7))
    def stats(args, config) -> int:
        ...
"""
from __future__ import annotations

import argparse
import gc
import importlib
import os
import pkgutil
import signal
import subprocess
import sys
import time
import urllib.request
from urllib.parse import quote
from dataclasses import dataclass
from typing import Callable

from .config import Config, get_env

Handler = Callable[[argparse.Namespace, Config], "int | None"]


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    handler: Handler
    arguments: tuple


COMMANDS: dict[str, Command] = {}


def arg(*flags, **options) -> tuple:
    """One argument of a command, as for `ArgumentParser.add_argument`."""
    return flags, options


def command(name: str, help: str, *arguments) -> Callable[[Handler], Handler]:
    """Register `fn(args, config) -> exit status` as `python -m gateway <name>`.

    Each of `arguments` is `arg(...)` or a function that receives the subparser (for
    nested subcommands or argument groups). The function's docstring is the long help.
    """

    def register(fn: Handler) -> Handler:
        if name in COMMANDS:
            raise ValueError(f"command {name!r} registered twice")
        COMMANDS[name] = Command(name, help, fn, arguments)
        return fn

    return register


def load_command_modules() -> None:
    """Import every gateway/cli_*.py so their commands register."""
    package = sys.modules[__package__]
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.startswith("cli_"):
            importlib.import_module(f"{__package__}.{info.name}")


def build_parser() -> argparse.ArgumentParser:
    load_command_modules()
    parser = argparse.ArgumentParser(
        prog="python -m gateway",
        description="Teeka: book vaccinations by SMS and USSD. Settings come from GATEWAY_* variables.",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.handler.__doc__ or cmd.help)
        for argument in cmd.arguments:
            if callable(argument):
                argument(p)
            else:
                flags, options = argument
                p.add_argument(*flags, **options)
        p.set_defaults(handler=cmd.handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    from .logs import configure

    configure()
    try:
        config = Config.from_env()
    except ValueError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return args.handler(args, config) or 0


def default_port() -> int:
    """`web` listens on $PORT when a platform sets it, else 8000."""
    return int(get_env("PORT") or 8000)


# ---- processes: web, worker, run ----

@command("web", "serve the webhooks (and /healthz, /readyz) with gunicorn",
         arg("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"),
         arg("--port", type=int, default=None, help="port (default $PORT, else 8000)"),
         arg("--processes", type=int, default=2, help="gunicorn worker processes (default 2)"),
         arg("--threads", type=int, default=4, help="threads per process (default 4)"))
def web(args, config: Config) -> int:
    """Serve the app with gunicorn, a production WSGI server. Put TLS in front of it."""
    from gunicorn.app.base import BaseApplication

    from . import create_app, redis_conn

    if not config.redis_url:
        redis_conn.start_embedded(config)  # once, before the processes fork
    options = {
        "bind": f"{args.host}:{args.port or default_port()}",
        "workers": args.processes,
        "threads": args.threads,
        "worker_class": "gthread" if args.threads > 1 else "sync",
        # Africa's Talking gives a USSD hop 10-15 s; a request still running after 30 s is stuck.
        "timeout": 30,
        "graceful_timeout": 10,
        "proc_name": "teeka-web",
        "accesslog": None,  # the webhooks log one structured line each
        "control_socket_disable": True,  # one fixed path in $HOME: a second server would take it over
    }

    class Server(BaseApplication):
        def load_config(self):
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            app = create_app(config)
            # What startup made (modules, the phone metadata, templates) lives as long as the
            # process: frozen, a full garbage collection no longer walks it, which took tens
            # of milliseconds per pass and showed as a stalled hop.
            gc.freeze()
            return app

    Server().run()
    return 0


@command("worker", "run RQ workers for every queue, with RQ's scheduler",
         arg("--processes", type=int, default=None, help="worker processes (default: sized for the SMS target)"),
         arg("--concurrency", type=int, default=None, help="sends in flight per process"),
         arg("--burst", action="store_true", help="stop when the queues are empty"))
def worker(args, config: Config) -> int:
    """Work the sms-high, sms-low and default queues; delayed and periodic jobs included."""
    from . import worker as rq_worker

    options = {name: getattr(args, name) for name in ("processes", "concurrency") if getattr(args, name)}
    return rq_worker.run(config, burst=args.burst, **options) or 0


@command("run", "everything on one machine: embedded Redis if needed, web, worker, simulator",
         arg("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"),
         arg("--port", type=int, default=None, help="port (default $PORT, else 8000)"),
         arg("--no-demo", action="store_true", help="do not load the demo data into an empty store"))
def run(args, config: Config) -> int:
    """Start web and worker as child processes with the simulator on; Ctrl-C stops them all.

    Without GATEWAY_REDIS_URL an embedded Redis is started under GATEWAY_DATA_DIR (./var) and
    stopped again on exit; the data stays there for the next run.
    """
    return run_all(config, host=args.host, port=args.port or default_port(), demo=not args.no_demo)


class _Stop:
    """Counts SIGINT/SIGTERM: the first stops the children gently, a second one kills them."""

    def __init__(self):
        self.signals = 0

    def __call__(self, signum, frame):
        self.signals += 1


def run_all(config: Config, *, host: str, port: int, demo: bool) -> int:
    from . import redis_conn

    config = config.with_overrides(simulator=True)
    started_redis = False if config.redis_url else redis_conn.start_embedded(config)
    children: dict[str, subprocess.Popen] = {}
    stop = _Stop()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if demo:
            _load_demo(config)
        # The children read their settings from the environment like any other process.
        env = {**os.environ, "GATEWAY_SIMULATOR": "1"}
        me = [sys.executable, "-m", __package__]
        for name, argv in (("web", ["web", "--host", host, "--port", str(port)]), ("worker", ["worker"])):
            # Their own session: Ctrl-C reaches only us, and we stop them in order.
            children[name] = subprocess.Popen(me + argv, env=env, start_new_session=True)
        base = f"http://{_display_host(host)}:{port}"
        if _wait_for_web(base, children, stop):
            print(_banner(config, base, started_redis), flush=True)
        elif not stop.signals and all(child.poll() is None for child in children.values()):
            print(f"web does not answer {base}/healthz yet; still waiting", file=sys.stderr, flush=True)
        return _supervise(children, stop)
    finally:
        _stop_children(children, stop)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if started_redis:
            redis_conn.stop_embedded(config)
        print("Teeka stopped.", flush=True)


def _load_demo(config: Config) -> None:
    from . import demo
    from .services import build

    services = build(config)
    try:
        if demo.load_if_empty(services):
            print(demo.describe(services), flush=True)
    finally:
        services.redis.close()
        services.queue_redis.close()


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def _wait_for_web(base: str, children: dict, stop: _Stop, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.signals:
        if any(child.poll() is not None for child in children.values()):
            return False
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def _banner(config: Config, base: str, started_redis: bool) -> str:
    from . import redis_conn

    key = f"?key={quote(config.webhook_key, safe='')}" if config.webhook_key else ""
    if config.redis_url:
        where = "Redis at GATEWAY_REDIS_URL"
    else:
        where = f"embedded Redis in {redis_conn.data_dir(config)}" + ("" if started_redis else ", already running")
    return "\n".join([
        f"Teeka is running ({where}). Ctrl-C stops it.",
        "Point Africa's Talking's callbacks at:",
        f"  USSD                  {base}/ussd{key}",
        f"  USSD session events   {base}/ussd/events{key}",
        f"  incoming SMS          {base}/sms/incoming{key}",
        f"  SMS delivery reports  {base}/sms/delivery{key}",
        f"Simulator: {base}/simulator",
    ])


def _supervise(children: dict, stop: _Stop) -> int:
    while not stop.signals:
        for name, child in children.items():
            if child.poll() is not None:
                print(f"{name} exited with status {child.returncode}; stopping", file=sys.stderr, flush=True)
                return 1
        time.sleep(0.2)
    return 0


def _stop_children(children: dict, stop: _Stop, grace: float = 20.0) -> None:
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)  # gunicorn and RQ both finish their work on TERM
    seen = stop.signals
    deadline = time.monotonic() + grace
    while any(c.poll() is None for c in children.values()):
        if time.monotonic() > deadline or stop.signals > seen:
            break  # out of patience, or a second Ctrl-C
        time.sleep(0.1)
    for child in children.values():
        if child.poll() is None:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            child.wait()
