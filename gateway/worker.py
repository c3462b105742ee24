"""`python -m gateway worker`: RQ workers that send many SMS at once, with RQ's scheduler.

A send job spends nearly all its time waiting for the provider, so each worker process runs
up to `concurrency` jobs at once in threads (`ConcurrentWorker`); `processes` such workers
share the CPU cores. One of them also runs RQ's scheduler (delayed jobs: retries, quiet
hours, periodic jobs), taken over by another if it dies. The defaults sustain the outbound
target of `bench/outbound.py` (300 SMS/s at 200 ms provider latency) on a 2-core machine.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import queue as queue_mod
import signal
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import redis.exceptions
from rq.exceptions import DuplicateJobError, StopRequested
from rq.scripts import release_lock
from rq.executions import Execution
from rq.timeouts import BaseDeathPenalty
from rq.utils import now as rq_now
from rq.worker import SimpleWorker, WorkerStatus

from . import jobs
from .config import Config
from .services import QUEUE_DEFAULT, QUEUE_NAMES

log = logging.getLogger(__name__)

DEFAULT_PROCESSES = max(2, os.cpu_count() or 2)
DEFAULT_CONCURRENCY = 64  # sends in flight per process
HEARTBEAT_EVERY = 5.0  # seconds; RQ would otherwise write one after every job
SCHEDULER_STALE = 10.0  # seconds a scheduler lock went unrenewed (RQ renews it every second): its owner is gone
MAX_BATCH = 32  # jobs taken off the queues in one round trip

# Pop up to ARGV[1] job ids from the queues in KEYS, in order: {queue index, job id, ...}.
_TAKE_JOBS = """
local want, out = tonumber(ARGV[1]), {}
for i, key in ipairs(KEYS) do
  if want <= 0 then break end
  local ids = redis.call('LPOP', key, want)
  if ids then
    for _, id in ipairs(ids) do
      out[#out + 1] = i
      out[#out + 1] = id
    end
    want = want - #ids
  end
end
return out
"""


@dataclass(frozen=True)
class Periodic:
    """A job run every `every` seconds, at `offset` seconds past each multiple of `every` (UTC)."""

    name: str
    func: str
    every: int
    offset: int = 0
    queue: str = QUEUE_DEFAULT


# Append to this list to add periodic jobs. The sweep and the reminders are hourly and safe
# to repeat: each looks only at days before (sweep) or after (reminders) today and marks
# what it has done.
PERIODIC: list[Periodic] = [
    Periodic("requeue-stuck", "gateway.jobs.requeue_stuck", every=30),
    Periodic("recover", "gateway.jobs.recover", every=60, offset=15),
    Periodic("no-show-sweep", "gateway.operations.sweep_job", every=3600, offset=300),
    Periodic("reminders", "gateway.operations.reminders_job", every=3600, offset=600),
]


def schedule_periodic(services, periodic: list[Periodic] | None = None, now: float | None = None) -> int:
    """Make sure the next two runs of every periodic job are scheduled; returns how many were added.

    Each run has a job id built from its slot and is created with RQ's `unique`, so any number
    of worker processes can call this and each run exists once.
    """
    now = time.time() if now is None else now
    added = 0
    for p in PERIODIC if periodic is None else periodic:
        first = ((int(now) - p.offset) // p.every + 1) * p.every + p.offset
        for slot in (first, first + p.every):
            at = datetime.fromtimestamp(slot, timezone.utc)
            try:
                services.queue(p.queue).enqueue_at(at, p.func, job_id=f"periodic-{p.name}-{slot}", unique=True,
                                                   result_ttl=max(600, 2 * p.every), job_timeout=600)
                added += 1
            except DuplicateJobError:
                pass
    return added


class NoDeathPenalty(BaseDeathPenalty):
    """No SIGALRM timeout: jobs run in threads, and send jobs bound their own time (HTTP timeout)."""

    def setup_death_penalty(self):
        pass

    def cancel_death_penalty(self):
        pass


class ConcurrentWorker(SimpleWorker):
    """An RQ worker that runs up to `concurrency` jobs at once in threads of this process.

    The main thread takes free slots, dequeues that many jobs at once (queues in priority
    order), records their executions (RQ's StartedJobRegistry, the worker's execution set) in
    one round trip and hands them to threads, which perform them with RQ's own success /
    failure / retry handling. Dequeuing one job at a time the RQ way (three round trips, each
    waiting for the GIL behind busy threads) capped a process well below its share of the CPU.
    A warm shutdown stops dequeuing and waits for the jobs in flight; a second signal abandons
    them (their records are recovered by `outbox.requeue_stuck`).
    """

    death_penalty_class = NoDeathPenalty
    log_result_lifespan = False

    def __init__(self, *args, concurrency: int = DEFAULT_CONCURRENCY, **kwargs):
        kwargs.setdefault("log_job_description", False)
        super().__init__(*args, **kwargs)
        self.concurrency = max(1, concurrency)
        widen_pool(self.connection, self.concurrency)
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self._tasks: queue_mod.SimpleQueue = queue_mod.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        self._blocking_dequeue = False
        self._cold = False
        self._last_beat = 0.0
        self._last_suspension_check = 0.0
        self._prepared: dict = {}
        self._take_script = self.connection.register_script(_TAKE_JOBS)
        # RQ starts, restarts and stops its scheduler process from the main thread; `keep_scheduler`
        # does it from the periodic thread. One lock, and a scheduler only between RQ's own start
        # and stop, so there is never a second scheduler process that nobody stops (a process
        # exiting waits for its children: a forgotten scheduler kept a stopped worker alive).
        self.scheduler_lock = threading.RLock()
        self.may_run_scheduler = False

    # ---- the loop ----
    def _start_threads(self):
        # Started with the first job, after RQ has forked its scheduler process.
        for n in range(self.concurrency):
            thread = threading.Thread(target=self._run_tasks, name=f"job-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        """Dequeue only when a slot is free; in burst mode, stop only when nothing is in flight."""
        while True:
            self._take_slot()
            batch = self._dequeue_batch()
            if batch is not None:
                return batch
            self._blocking_dequeue = True
            try:
                result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            except BaseException:
                self._slots.release()
                raise
            finally:
                self._blocking_dequeue = False
            if result is not None:
                return result
            self._slots.release()
            if timeout is not None or not self._in_flight:
                return None
            self._wait_idle()  # burst: jobs in flight may still enqueue more

    def _dequeue_batch(self):
        """Take as many waiting jobs as there are free slots in three round trips, however many
        (RQ takes three per job); hand all but the first to threads. None when nothing waits."""
        if len(self._ordered_queues) < 2:
            return None  # a single-queue worker keeps RQ's own dequeue (its intermediate queue)
        extra = 0
        while extra < MAX_BATCH - 1 and self._slots.acquire(blocking=False):
            extra += 1
        try:
            popped = self._take_script(keys=[q.key for q in self._ordered_queues], args=[extra + 1])
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            popped = []  # RQ's own dequeue below waits for Redis to come back
        pairs = [(self._ordered_queues[int(i) - 1], job_id.decode()) for i, job_id in zip(popped[::2], popped[1::2])]
        found = [(job, queue) for job, (queue, _) in
                 zip(self.job_class.fetch_many([j for _, j in pairs], self.connection, self.serializer), pairs) if job]
        # the caller's own slot goes with the first job, or back to the caller when none came
        for _ in range(extra + 1 - max(1, len(found))):
            self._slots.release()
        if not found:
            return None
        version = self.get_redis_server_version()
        with self.connection.pipeline() as pipeline:
            for job, _ in found:
                job.redis_server_version = version
                self._prepared[job.id] = self._record_execution(job, pipeline)
            self.set_state(WorkerStatus.BUSY, pipeline=pipeline)
            pipeline.execute()
        for job, queue in found[1:]:
            self._dispatch(job, queue, self._prepared.pop(job.id))
        return found[0]

    def execute_job(self, job, queue):
        execution = self._prepared.pop(job.id, None) or self.prepare_execution(job)
        self._dispatch(job, queue, execution)

    def _dispatch(self, job, queue, execution):
        if not self._threads:
            self._start_threads()
        with self._in_flight_lock:
            self._in_flight += 1
        self._tasks.put((job, queue, execution))

    def _run_tasks(self):
        while True:
            job, queue, execution = self._tasks.get()
            try:
                self.perform_job(job, queue, execution)
            except BaseException:  # perform_job handles job errors; this is RQ's own bookkeeping failing
                self.log.exception("Worker %s: bookkeeping of job %s failed", self.name, job.id)
            finally:
                with self._in_flight_lock:
                    self._in_flight -= 1
                self._slots.release()

    def _take_slot(self):
        while not self._slots.acquire(timeout=HEARTBEAT_EVERY):
            self.heartbeat()
        if self._stop_requested:
            self._slots.release()
            raise StopRequested()

    def _wait_idle(self):
        while self._in_flight:
            time.sleep(0.01)

    # ---- the scheduler process ----
    def _start_scheduler(self, *args, **kwargs):
        with self.scheduler_lock:
            super()._start_scheduler(*args, **kwargs)
            self.may_run_scheduler = not self._stop_requested

    def run_maintenance_tasks(self):
        with self.scheduler_lock:
            super().run_maintenance_tasks()

    def stop_scheduler(self):
        with self.scheduler_lock:
            self.may_run_scheduler = False
            super().stop_scheduler()

    # ---- shutdown ----
    def _shutdown(self):
        """Warm shutdown: dequeue nothing more; interrupt only a blocking wait for a job."""
        self._stop_requested = True
        if self._blocking_dequeue:
            raise StopRequested()

    def request_force_stop(self, signum, frame):
        if self._shutdown_requested_date and rq_now() - self._shutdown_requested_date < timedelta(seconds=1):
            return  # the same Ctrl+C delivered twice (terminal and supervisor)
        self.log.warning("Worker %s: cold shut down, abandoning %d jobs in flight", self.name, self._in_flight)
        self._cold = True
        raise SystemExit(1)

    def teardown(self):
        if not self._cold and self._in_flight:
            self.log.info("Worker %s: waiting for %d jobs in flight", self.name, self._in_flight)
            self._wait_idle()
        super().teardown()

    # ---- fewer Redis round trips per job (RQ makes about a dozen) ----
    def check_for_suspension(self, burst):
        if time.monotonic() - self._last_suspension_check >= 1.0:
            self._last_suspension_check = time.monotonic()
            super().check_for_suspension(burst)

    def prepare_execution(self, job):
        """Record the execution and mark the job started in one round trip (RQ takes two)."""
        with self.connection.pipeline() as pipeline:
            execution = self._record_execution(job, pipeline)
            self.set_state(WorkerStatus.BUSY, pipeline=pipeline)
            pipeline.execute()
        return execution

    def _record_execution(self, job, pipeline):
        execution = Execution.create(job, self.get_heartbeat_ttl(job), pipeline=pipeline, worker_name=self.name)
        self.executions[execution.id] = execution
        job.prepare_for_execution(self.name, pipeline=pipeline)
        pipeline.persist(job.key)
        return execution

    def prepare_job_execution(self, job, remove_from_intermediate_queue=False):
        """Already done by prepare_execution; only a single-queue worker has more to do."""
        if remove_from_intermediate_queue:
            queue = self.queue_class(job.origin, connection=self.connection)
            self.connection.lrem(queue.intermediate_queue_key, 1, job.id)

    def handle_execution_ended(self, job, queue, heartbeat_ttl):
        job.ended_at = rq_now()  # RQ also writes a job heartbeat here, for callbacks we do not use

    def heartbeat(self, timeout=None, pipeline=None):
        if timeout is None and pipeline is None:
            if time.monotonic() - self._last_beat < HEARTBEAT_EVERY:
                return
            self._last_beat = time.monotonic()
        super().heartbeat(timeout, pipeline)

    def set_state(self, state, pipeline=None):
        if state == WorkerStatus.IDLE and self._in_flight:
            state = WorkerStatus.BUSY
        if state == self._state and pipeline is None:
            return
        super().set_state(state, pipeline)


def widen_pool(client, concurrency: int) -> None:
    """Let every job thread hold a few connections at once (redis-py caps a pool at 100)."""
    pool = getattr(client, "connection_pool", None)  # a cluster client has one pool per node
    if pool is not None and getattr(pool, "max_connections", None) is not None:
        pool.max_connections = max(pool.max_connections, 3 * concurrency + 10)


# ---- processes ----
def work(config: Config, concurrency: int = DEFAULT_CONCURRENCY, burst: bool = False,
         logging_level: str = "WARNING", services=None) -> bool:
    """One worker process: build the services once, then work every queue (high first)."""
    from .services import build

    services = services or build(config)
    widen_pool(services.redis, concurrency)
    jobs.install(services)
    worker = ConcurrentWorker(list(QUEUE_NAMES), connection=services.queue_redis, concurrency=concurrency)
    if not burst:
        threading.Thread(target=_keep_periodic, args=(services, worker), name="periodic", daemon=True).start()
    return worker.work(burst=burst, with_scheduler=True, logging_level=logging_level)


def _keep_periodic(services, worker=None) -> None:
    every = max(1, min((p.every for p in PERIODIC), default=60) // 2)
    while True:
        try:
            schedule_periodic(services)
            if worker is not None:
                keep_scheduler(worker)
        except Exception:  # Redis away for a moment: try again at the next tick
            log.warning("could not schedule periodic jobs", exc_info=True)
        time.sleep(every)


def keep_scheduler(worker) -> bool:
    """Run RQ's scheduler in this process when no live one holds its locks; True if it runs here.

    RQ frees a killed scheduler's locks only when they expire (a minute) and tries to take them
    again only at its maintenance (every 10 minutes): without this, retries, quiet-hour sends and
    periodic jobs (the stuck-message recovery among them) would wait that long after the worker
    that ran the scheduler died, or after the scheduler lost Redis for a moment.
    """
    with worker.scheduler_lock:
        if not worker.may_run_scheduler or worker._stop_requested:  # not started yet, or stopping
            return False
        scheduler = worker.scheduler
        if scheduler._process is not None and scheduler._process.is_alive():
            return True
        connection = worker.connection
        full = scheduler.interval + 60  # the TTL RQ gives its locks, and renews every interval
        for name in scheduler._queue_names:
            lock = scheduler.get_locking_key(name)
            owner = connection.get(lock)
            owner = owner.decode() if isinstance(owner, bytes) else owner
            if owner and owner != scheduler.name and 0 <= connection.ttl(lock) < full - SCHEDULER_STALE:
                release_lock(connection, lock, owner)  # only if still that owner's
        if scheduler.acquire_locks(auto_start=True):
            log.warning("RQ's scheduler had stopped; it runs in this worker now (%s)",
                        ", ".join(sorted(scheduler.acquired_locks)))
        return bool(scheduler.acquired_locks)


def run(config: Config | None = None, processes: int = DEFAULT_PROCESSES, concurrency: int = DEFAULT_CONCURRENCY,
        burst: bool = False, logging_level: str = "WARNING") -> int:
    """Run `processes` worker processes until stopped (or, with `burst`, until the queues are empty).

    SIGINT/SIGTERM: warm shutdown (jobs in flight finish); a second one: cold shutdown.
    A worker process that dies is replaced. Returns an exit status.
    """
    config = config or Config.from_env()
    logging.basicConfig(level=logging_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if processes <= 1:
        work(config, concurrency, burst, logging_level)
        return 0
    ctx = multiprocessing.get_context("fork")
    procs = {}
    stopping = False

    def start():
        proc = ctx.Process(target=work, args=(config, concurrency, burst, logging_level), name="teeka-worker")
        proc.start()
        procs[proc.pid] = proc

    def stop(signum, frame):
        nonlocal stopping
        first = not stopping
        stopping = True
        for proc in list(procs.values()):
            if proc.is_alive():
                os.kill(proc.pid, signum if first else signal.SIGTERM)

    for _ in range(processes):
        start()
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    status = 0
    while procs:
        time.sleep(0.5)
        for pid, proc in list(procs.items()):
            if proc.is_alive():
                continue
            proc.join()
            del procs[pid]
            if proc.exitcode:
                status = 1
            if not burst and not stopping:
                log.warning("worker process %d exited (%s); starting another", pid, proc.exitcode)
                time.sleep(1)
                start()
    return status
