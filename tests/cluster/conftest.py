"""Fixtures of a throwaway three-master Redis Cluster (see `tests.cluster.nodes`)."""
from __future__ import annotations

import pytest

from tests.cluster.nodes import start_cluster, stop_cluster


@pytest.fixture(scope="session")
def redis_cluster_ports():
    """Ports of a running three-master cluster (all 16384 slots served, no replicas)."""
    ports, procs, directory = start_cluster()
    try:
        yield ports
    finally:
        stop_cluster(procs, directory)


@pytest.fixture(scope="session")
def redis_cluster_url(redis_cluster_ports) -> str:
    """A redis URL naming one node of the test cluster; a cluster client discovers the rest."""
    return f"redis://127.0.0.1:{redis_cluster_ports[0]}/0"


@pytest.fixture
def cluster_client(redis_cluster_url):
    """A decoded cluster client on the test cluster, every master flushed before and after the test."""
    from redis.cluster import RedisCluster

    client = RedisCluster.from_url(redis_cluster_url, decode_responses=True)
    client.flushdb(target_nodes=RedisCluster.PRIMARIES)
    yield client
    client.flushdb(target_nodes=RedisCluster.PRIMARIES)
    client.close()
