"""The shell's dependencies in one place: config, Redis clients, RQ queues, templates."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from redis import Redis
from rq import Queue

from .config import Config

QUEUE_HIGH = "sms-high"
QUEUE_LOW = "sms-low"
QUEUE_DEFAULT = "default"
QUEUE_NAMES = (QUEUE_HIGH, QUEUE_LOW, QUEUE_DEFAULT)


@dataclass
class Services:
    """Built once per process (web, worker, CLI); handed to the orchestrator and the jobs."""

    config: Config
    redis: Redis  # the data store, decode_responses=True
    queue_redis: Redis  # RQ's connection, bytes (decode_responses=False)
    _queues: dict = field(default_factory=dict)

    def queue(self, name: str) -> Queue:
        if name not in self._queues:
            self._queues[name] = Queue(name, connection=self.queue_redis)
        return self._queues[name]

    @cached_property
    def templates(self):
        from .templates import Templates

        return Templates.load(self.config.languages)


def build(config: Config | None = None) -> Services:
    """Connect to the configured (or embedded) Redis and return the services."""
    from .redis_conn import connect

    config = config or Config.from_env()
    data, queue = connect(config)
    return Services(config=config, redis=data, queue_redis=queue)
