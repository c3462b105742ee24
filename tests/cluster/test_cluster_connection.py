"""The gateway's connection to a Redis Cluster, and the slot rule the store has to respect there."""
from __future__ import annotations

import pytest
from redis.cluster import RedisCluster
from redis.exceptions import (
    ClusterCrossSlotError,
    CrossSlotTransactionError,
    RedisClusterException,
)

from gateway import keys
from gateway.config import Config
from gateway.redis_conn import connect


@pytest.fixture
def clients(redis_cluster_url, redis_url, cluster_client):
    """(data, queue) from `connect` with GATEWAY_REDIS_CLUSTER=1."""
    config = Config(redis_url=redis_cluster_url, redis_cluster=True, queue_redis_url=redis_url,
                    code_secret="test-secret")
    data, queue = connect(config)
    yield data, queue
    data.close()
    queue.close()


def _keys_on_every_master(client: RedisCluster) -> list[str]:
    """One key per master, found by asking the cluster which slot each candidate hashes to."""
    owners: dict[str, str] = {}
    n = 0
    while len(owners) < 3:
        key = f"probe:{n}"
        node = client.get_node_from_key(key).name
        owners.setdefault(node, key)
        n += 1
    return list(owners.values())


def test_the_fixture_brings_up_three_masters_serving_every_slot(cluster_client):
    info = cluster_client.cluster_info()
    assert info["cluster_state"] == "ok"
    assert int(info["cluster_slots_assigned"]) == 16384
    assert len(cluster_client.get_primaries()) == 3


def test_connect_in_cluster_mode_gives_a_cluster_data_client_with_str_replies(clients):
    data, queue = clients
    assert isinstance(data, RedisCluster)
    assert not isinstance(queue, RedisCluster)
    assert queue.ping()
    probes = _keys_on_every_master(data)
    for key in probes:
        assert data.set(key, f"value of {key}")
    assert [data.get(key) for key in probes] == [f"value of {key}" for key in probes]
    assert len({data.get_node_from_key(key).name for key in probes}) == 3


def test_connect_in_cluster_mode_keeps_the_short_timeouts(clients):
    data, _ = clients
    kwargs = data.get_primaries()[0].redis_connection.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == Config().redis_timeout
    assert kwargs["socket_connect_timeout"] == Config().redis_timeout


def test_cluster_mode_refuses_to_run_without_a_separate_queue_redis(redis_cluster_url):
    with pytest.raises(ValueError, match="GATEWAY_QUEUE_REDIS_URL"):
        connect(Config(redis_url=redis_cluster_url, redis_cluster=True))


def test_cluster_mode_refuses_the_embedded_server(redis_url, tmp_path):
    config = Config(redis_cluster=True, queue_redis_url=redis_url, data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="GATEWAY_REDIS_URL"):
        connect(config)
    assert not any(tmp_path.iterdir())


PHONE, REF = "+919876543210", "4821390576"


def test_a_transaction_over_one_citizens_keys_commits(clients):
    data, _ = clients
    citizen, refs = keys.citizen(PHONE), keys.citizen_appointments(PHONE)
    appointment = keys.appointment(PHONE, REF)
    assert data.keyslot(citizen) == data.keyslot(refs) == data.keyslot(appointment)
    with data.pipeline(transaction=True) as pipe:
        pipe.hset(citizen, mapping={"lang": "hi"})
        pipe.sadd(refs, REF)
        pipe.hset(appointment, "s", "booked")
        assert pipe.execute() == [1, 1, 1]
    assert data.hget(citizen, "lang") == "hi"
    assert data.smembers(refs) == {REF}


def test_a_transaction_over_a_citizen_and_a_global_key_is_refused_and_writes_nothing(clients):
    data, _ = clients
    # What a booking does today: the citizen's appointment and the global ref owner together.
    appointment, owner = keys.appointment(PHONE, REF), keys.ref_owner(REF)
    assert data.keyslot(appointment) != data.keyslot(owner)
    with pytest.raises(CrossSlotTransactionError):
        with data.pipeline(transaction=True) as pipe:
            pipe.hset(appointment, "s", "booked")
            pipe.set(owner, PHONE)
            pipe.execute()
    assert data.exists(appointment, owner) == 0


def _two_slots_on_one_node(client: RedisCluster) -> tuple[str, str]:
    """Two keys served by the same master but hashing to different slots."""
    first = "appt:1"
    node = client.get_node_from_key(first).name
    n = 2
    while True:
        other = f"mobile:{n}"
        if client.get_node_from_key(other).name == node and client.keyslot(other) != client.keyslot(first):
            return first, other
        n += 1


def test_the_server_itself_aborts_a_multi_exec_whose_keys_span_slots(clients):
    data, _ = clients
    first, second = _two_slots_on_one_node(data)
    # Sent straight to the node that owns both keys, past the client's own check, to show the
    # rule is the server's: each SET alone is fine, but EXEC refuses the lot with CROSSSLOT.
    conn = data.get_node_from_key(first).redis_connection.connection_pool.get_connection()
    try:
        conn.send_command("MULTI")
        assert conn.read_response() == "OK"
        for key, value in ((first, "booked"), (second, "4821390576")):
            conn.send_command("SET", key, value)
            assert conn.read_response() == "QUEUED"
        conn.send_command("EXEC")
        with pytest.raises(ClusterCrossSlotError):
            conn.read_response()
    finally:
        conn.disconnect()
    assert data.get(first) is None
    assert data.get(second) is None


def test_a_single_command_over_keys_in_different_slots_is_refused_by_the_server(clients):
    data, _ = clients
    first, second = _two_slots_on_one_node(data)
    node = data.get_node_from_key(first)
    with pytest.raises(ClusterCrossSlotError):
        node.redis_connection.execute_command("MSET", first, "a", second, "b")


def test_watch_needs_a_transactional_pipeline_and_keys_of_one_slot(clients):
    data, _ = clients
    # `pipeline()` on a cluster client is not transactional unless asked: WATCH is refused.
    citizen, refs = keys.citizen(PHONE), keys.citizen_appointments(PHONE)
    with data.pipeline() as pipe, pytest.raises(RedisClusterException):
        pipe.watch(citizen)
    with data.pipeline(transaction=True) as pipe:
        pipe.watch(citizen, refs)
        assert pipe.hget(citizen, "lang") is None
        pipe.multi()
        pipe.hset(citizen, "lang", "ur")
        pipe.execute()
    assert data.hget(citizen, "lang") == "ur"
    first, second = _two_slots_on_one_node(data)
    with data.pipeline(transaction=True) as pipe, \
            pytest.raises(RedisClusterException, match="same key slot"):
        pipe.watch(first, second)


def test_a_plain_pipeline_may_read_and_write_keys_on_every_master(clients):
    data, _ = clients
    probes = _keys_on_every_master(data)
    with data.pipeline(transaction=False) as pipe:
        for key in probes:
            pipe.set(key, key.upper())
        for key in probes:
            pipe.get(key)
        assert pipe.execute()[len(probes):] == [key.upper() for key in probes]
