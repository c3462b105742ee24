"""The embedded Redis: one server per installation, shared by its processes, data kept on disk."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway import redis_conn
from gateway.config import Config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def installation(tmp_path):
    """Settings of a fresh installation without GATEWAY_REDIS_URL; its Redis is stopped afterwards."""
    config = Config(data_dir=str(tmp_path / "var"))
    yield config
    redis_conn.stop_embedded(config)


def in_another_process(config: Config, code: str) -> str:
    """Run `code` in a new Python process of the same installation; return what it printed."""
    prelude = textwrap.dedent(f"""
        from gateway import redis_conn
        from gateway.config import Config
        config = Config(data_dir={config.data_dir!r})
    """)
    result = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_without_a_redis_url_a_server_starts_under_the_data_dir(installation):
    data, queue = redis_conn.connect(installation)
    assert data.set("greeting", "namaste") and data.get("greeting") == "namaste"
    assert queue.get("greeting") == b"namaste"
    var = Path(installation.data_dir)
    assert (var / "redis.pid").exists() and redis_conn.socket_path(installation).exists()
    assert data.config_get("appendonly") == {"appendonly": "yes"}
    assert data.config_get("port") == {"port": "0"}  # no TCP listener: the socket only


def test_a_second_process_reuses_the_running_server(installation):
    pid = in_another_process(installation, """
        data, _ = redis_conn.connect(config)
        data.set("k", "from the first process")
        print(redis_conn.embedded_pid(config))
    """)
    seen = in_another_process(installation, """
        started = redis_conn.start_embedded(config)
        data, _ = redis_conn.connect(config)
        print(started, redis_conn.embedded_pid(config), data.get("k"))
    """)
    assert seen == f"False {pid} from the first process"


def test_processes_starting_together_start_one_server(installation):
    code = textwrap.dedent(f"""
        from gateway import redis_conn
        from gateway.config import Config
        config = Config(data_dir={installation.data_dir!r})
        started = redis_conn.start_embedded(config)
        data, _ = redis_conn.connect(config)
        print(started, data.info("server")["process_id"])
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    outputs = [p.communicate(timeout=60)[0].split() for p in procs]
    assert sorted(started for started, _ in outputs) == ["False", "False", "False", "True"]
    assert len({pid for _, pid in outputs}) == 1


def test_data_survives_a_restart_of_the_server(installation):
    data, _ = redis_conn.connect(installation)
    data.hset("t:appointment", mapping={"ref": "4821390576", "status": "booked"})
    data.close()
    assert redis_conn.stop_embedded(installation) is True
    assert not redis_conn.embedded_alive(installation)

    again, _ = redis_conn.connect(installation)
    assert again.hgetall("t:appointment") == {"ref": "4821390576", "status": "booked"}


def test_stopping_a_server_that_is_not_running_does_nothing(installation):
    assert redis_conn.stop_embedded(installation) is False


def test_a_long_data_dir_still_gets_a_usable_socket(tmp_path):
    config = Config(data_dir=str(tmp_path / ("deep" * 30) / "var"))
    try:
        data, _ = redis_conn.connect(config)
        assert data.ping()
        assert len(str(redis_conn.socket_path(config))) <= 100
        assert redis_conn.embedded_url(config).startswith("unix://")
    finally:
        redis_conn.stop_embedded(config)


def test_a_configured_redis_url_is_used_and_nothing_is_started(redis_url, queue_redis_url, rdb, tmp_path):
    config = Config(redis_url=redis_url, queue_redis_url=queue_redis_url, data_dir=str(tmp_path / "var"))
    data, queue = redis_conn.connect(config)
    data.set("k", "v")
    assert rdb.get("k") == "v"
    assert not (tmp_path / "var").exists()
