"""Outbound SMS through the real path: record -> RQ job -> worker -> SDK -> fake provider."""
from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.worker import Worker

from gateway import jobs, keys, outbox, worker
from gateway.africastalking import AfricasTalking
from gateway.config import Config
from gateway.services import QUEUE_HIGH, QUEUE_LOW, QUEUE_NAMES, Services
from tests.conftest import data_client, gateway_env
from tests.fakes.fake_at import fake_at  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[2]
TO = "+919812345678"
BODY = "Teeka: booked at PHC Rajpur 12 Jun 09:00-11:00. Ref 48213 90576"


@pytest.fixture
def make_services(redis_url, queue_redis_url, rdb, fake_at):
    """Services on the test database, pointed at the fake provider; installed for the jobs."""
    made = []

    def make(**overrides) -> Services:
        options = dict(redis_url=redis_url, queue_redis_url=queue_redis_url, at_api_key=fake_at.api_key,
                       at_api_url=fake_at.url)
        options.update(overrides)
        config = Config(**options)
        services = Services(config=config, redis=data_client(redis_url),
                            queue_redis=redis.Redis.from_url(queue_redis_url or redis_url))
        provider = AfricasTalking.from_config(config, timeout=(0.5, 1.0)) if config.at_api_key else None
        jobs.install(services, provider)
        made.append(services)
        return services

    yield make
    for services in made:
        services.redis.close()
        services.queue_redis.close()


@pytest.fixture
def services(make_services):
    return make_services()


def send(services, to=TO, body=BODY, *, purpose="reply", priority="high", now=None) -> str:
    """Record a message in one transaction, then queue it, as the orchestrator does."""
    pipe = services.redis.pipeline()
    message_id = outbox.record(pipe, to=to, body=body, template="sms/booking", lang="en", purpose=purpose,
                               priority=priority, segments=1)
    pipe.execute()
    outbox.enqueue(services, message_id, priority, now=now)
    return message_id


def work(services, concurrency=4) -> worker.ConcurrentWorker:
    """Run the concurrent worker in this process until the queues are empty."""
    w = worker.ConcurrentWorker(list(QUEUE_NAMES), connection=services.queue_redis, concurrency=concurrency)
    w.work(burst=True, logging_level="WARNING")
    return w


def time_passes(services) -> int:
    """Every scheduled job becomes due now (instead of waiting out its delay)."""
    moved = 0
    for name in QUEUE_NAMES:
        queue = services.queue(name)
        registry = ScheduledJobRegistry(queue=queue)
        for job_id in registry.get_job_ids():
            job = Job.fetch(job_id, connection=services.queue_redis)
            registry.remove(job)
            queue.enqueue_job(job)
            moved += 1
    return moved


def scheduled(services, name=QUEUE_HIGH) -> dict[str, datetime]:
    registry = ScheduledJobRegistry(queue=services.queue(name))
    return {job_id: registry.get_scheduled_time(job_id) for job_id in registry.get_job_ids()}


def record(services, message_id) -> dict:
    return outbox.get(services, message_id)


def report(services, message_id, status, reason=""):
    provider_id = record(services, message_id)["provider_id"]
    return outbox.apply_delivery_report(services, provider_id, status, failure_reason=reason, phone=TO,
                                        network_code="99999")


# ---- the happy path ----
def test_message_goes_out_once_as_recorded_then_delivered_on_success_report(services, fake_at):
    message_id = send(services)
    assert record(services, message_id)["status"] == "queued"

    work(services)

    [request] = fake_at.requests
    assert request.form["to"] == TO and request.form["message"] == BODY
    assert request.form["username"] == "sandbox" and request.api_key == fake_at.api_key
    rec = record(services, message_id)
    assert rec["status"] == "sent" and rec["attempts"] == "1"
    assert rec["provider_id"] == fake_at.message_ids(TO)[0] and rec["cost"] == "KES 0.8000"

    assert report(services, message_id, "Success") == "delivered"
    rec = record(services, message_id)
    assert rec["status"] == "delivered" and rec["delivered_at"] and rec["network"] == "99999"


def test_same_delivery_report_twice_changes_nothing(services):
    message_id = send(services)
    work(services)
    report(services, message_id, "Success")
    before = record(services, message_id)

    assert report(services, message_id, "Success") == "duplicate"
    assert record(services, message_id) == before


def test_reports_never_downgrade_a_final_state(services):
    message_id = send(services)
    work(services)

    assert report(services, message_id, "Buffered") == "updated"
    assert report(services, message_id, "Success") == "delivered"
    assert report(services, message_id, "Sent") == "stale"
    assert report(services, message_id, "Failed", "DeliveryFailure") == "stale"
    assert record(services, message_id)["status"] == "delivered"


def test_json_answer_with_another_content_type_is_still_read(services, fake_at):
    fake_at.json_content_type = "application/json; charset=utf-8"  # the SDK then returns a string
    message_id = send(services)

    work(services)

    assert record(services, message_id)["status"] == "sent"


def test_outbox_backend_keeps_messages_without_calling_the_provider(make_services, fake_at):
    services = make_services(at_api_key="")
    message_id = send(services)

    work(services)

    assert fake_at.requests == []
    assert record(services, message_id)["status"] == "sent"
    assert [m["id"] for m in outbox.list_for(services, TO)] == [message_id]


# ---- provider answers ----
def test_provider_500_is_retried_later_and_the_message_goes_out_once(services, fake_at):
    fake_at.fail_first(TO, 1, "internal_error")
    message_id = send(services)

    work(services)
    rec = record(services, message_id)
    assert rec["status"] == "retrying" and rec["attempts"] == "1" and "500 InternalServerError" in rec["errors"]
    [(job_id, at)] = scheduled(services).items()
    assert job_id == f"sms-{message_id}-2"
    assert 10 < (at - datetime.now(timezone.utc)).total_seconds() < 20

    time_passes(services)
    work(services)

    assert record(services, message_id)["status"] == "sent"
    assert len(fake_at.sent_to(TO)) == 2 and len(fake_at.accepted_to(TO)) == 1
    # a job that runs again (a crashed worker's job re-run) sends nothing
    for attempt in (1, 2):
        assert jobs.deliver(services, jobs.runtime().provider, message_id, attempt) == "skipped"
    assert len(fake_at.sent_to(TO)) == 2


def test_http_500_for_the_whole_request_is_retried(services, fake_at):
    fake_at.fail_first(TO, 1, "http_500")
    message_id = send(services)

    work(services)
    assert record(services, message_id)["status"] == "retrying"
    time_passes(services)
    work(services)

    assert record(services, message_id)["status"] == "sent"


def test_timeout_is_retried(services, fake_at):
    fake_at.timeout_sleep = 1.5  # the adapter here waits 1 s for an answer
    fake_at.fail_first(TO, 1, "timeout")
    message_id = send(services)

    work(services)
    rec = record(services, message_id)
    assert rec["status"] == "retrying" and rec["errors"] == "timeout"
    time_passes(services)
    work(services)

    assert record(services, message_id)["status"] == "sent"


def test_invalid_number_403_is_final(services, fake_at):
    fake_at.script(TO, "invalid_phone")
    message_id = send(services)

    work(services)

    rec = record(services, message_id)
    assert rec["status"] == "failed" and rec["errors"] == "403 InvalidPhoneNumber"
    assert scheduled(services) == {}
    assert services.redis.zscore(keys.messages_failed(), message_id) is not None


def test_blacklisted_406_is_denied(services, fake_at):
    fake_at.script(TO, "blacklist")
    message_id = send(services)

    work(services)

    assert record(services, message_id)["status"] == "denied"
    assert scheduled(services) == {}


def test_wrong_api_key_is_a_final_configuration_error(services, fake_at):
    fake_at.api_key = "a-rotated-key"
    message_id = send(services)

    work(services)

    rec = record(services, message_id)
    assert rec["status"] == "failed" and "configuration" in rec["errors"]
    assert scheduled(services) == {}


def test_answer_without_recipients_is_a_final_configuration_error(services, fake_at):
    fake_at.script(TO, "no_recipients")
    message_id = send(services)

    work(services)

    rec = record(services, message_id)
    assert rec["status"] == "failed" and "InvalidSenderId" in rec["errors"]


def test_insufficient_balance_waits_long(services, fake_at):
    fake_at.fail_first(TO, 1, "insufficient_balance")
    message_id = send(services)

    work(services)

    assert record(services, message_id)["status"] == "retrying"
    [at] = scheduled(services).values()
    assert (at - datetime.now(timezone.utc)).total_seconds() > 600


def test_retries_are_bounded(services, fake_at):
    fake_at.script(TO, "gateway_error")
    message_id = send(services)

    for _ in range(10):
        work(services)
        if not time_passes(services):
            break

    rec = record(services, message_id)
    assert rec["status"] == "failed" and rec["errors"].startswith("gave up after 5 attempts")
    assert len(fake_at.sent_to(TO)) == int(rec["max_attempts"]) == 5


# ---- scheduling ----
def test_low_priority_waits_out_the_quiet_hours(services, fake_at):
    kolkata = ZoneInfo("Asia/Kolkata")
    late = datetime(2030, 3, 4, 22, 30, tzinfo=kolkata)  # quiet hours 21-08
    reminder = send(services, priority="low", now=late)
    reply = send(services, priority="high", now=late)

    work(services)

    assert record(services, reply)["status"] == "sent"
    assert record(services, reminder)["status"] == "queued"
    [(job_id, at)] = scheduled(services, QUEUE_LOW).items()
    assert job_id == f"sms-{reminder}-1"
    assert at == datetime(2030, 3, 5, 8, 0, tzinfo=kolkata)
    assert float(record(services, reminder)["due"]) == at.timestamp()


def test_low_priority_outside_quiet_hours_goes_now(services):
    noon = datetime(2030, 3, 4, 12, 0, tzinfo=ZoneInfo("Asia/Kolkata"))
    message_id = send(services, priority="low", now=noon)

    work(services)

    assert record(services, message_id)["status"] == "sent"


def test_rate_cap_is_shared_by_two_worker_processes(make_services, fake_at):
    services = make_services(sms_rate=10.0)
    numbers = [f"+9198000000{i:02d}" for i in range(25)]
    for number in numbers:
        send(services, to=number)

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=worker.work, args=(services.config, 8, True)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)

    times = sorted(r.at for r in fake_at.requests)
    assert len(times) == 25
    # a bucket of 10 (one second's worth), then 10 a second: 25 sends take 1.5 s, not a few ms;
    # any one second holds at most 20 (plus a little: a token is taken just before the request)
    assert times[-1] - times[0] >= 1.3
    busiest = max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times))
    assert busiest <= 24
    counts = [int(services.queue_redis.hget(k, "successful_job_count") or 0)
              for k in services.queue_redis.keys("rq:worker:*") if b"executions" not in k]
    assert len([c for c in counts if c]) == 2  # both processes sent some


# ---- delivery reports ----
def test_failed_report_on_a_code_message_sends_it_again_a_bounded_number_of_times(services, fake_at):
    message_id = send(services, purpose="code")
    work(services)

    assert report(services, message_id, "Failed", "DeliveryFailure") == "resend"
    assert report(services, message_id, "Failed", "DeliveryFailure") == "duplicate"
    rec = record(services, message_id)
    assert rec["status"] == "retrying" and rec["resends"] == "1"
    assert list(scheduled(services)) == [f"sms-{message_id}-2"]
    time_passes(services)
    work(services)
    rec = record(services, message_id)
    assert rec["status"] == "sent" and rec["attempts"] == "2"
    assert rec["provider_id"] == fake_at.message_ids(TO)[1]

    assert report(services, message_id, "Rejected") == "resend"
    time_passes(services)
    work(services)
    assert report(services, message_id, "Expired") == "failed"

    assert len(fake_at.sent_to(TO)) == 3
    assert record(services, message_id)["status"] == "failed"


def test_failed_report_on_a_reply_is_not_sent_again(services, fake_at):
    message_id = send(services, purpose="reply")
    work(services)

    assert report(services, message_id, "Failed") == "failed"
    assert scheduled(services) == {}
    assert len(fake_at.sent_to(TO)) == 1


def test_blacklist_in_a_report_is_denied_and_never_resent(services):
    message_id = send(services, purpose="code")
    work(services)

    assert report(services, message_id, "Failed", "UserInBlackList") == "denied"
    assert record(services, message_id)["status"] == "denied"
    assert scheduled(services) == {}


def test_late_success_for_the_previous_attempt_stops_the_resend(services, fake_at):
    message_id = send(services, purpose="booking")
    work(services)
    report(services, message_id, "Failed")

    assert report(services, message_id, "Success") == "delivered"
    time_passes(services)
    work(services)
    assert len(fake_at.sent_to(TO)) == 1


def test_unknown_report_values_are_recorded_verbatim_without_error(services):
    message_id = send(services)
    work(services)

    assert report(services, message_id, "Teleported") == "unknown_status"
    rec = record(services, message_id)
    assert rec["status"] == "sent" and rec["dlr_status"] == "Teleported"
    assert report(services, message_id, "Failed", "EatenByGoat") == "failed"
    assert record(services, message_id)["failure_reason"] == "EatenByGoat"
    assert outbox.apply_delivery_report(services, "ATXid_" + "0" * 32, "Success") == "unknown_id"


# ---- lost jobs ----
def test_requeue_gives_a_record_without_a_job_its_job(services, fake_at):
    pipe = services.redis.pipeline()
    lost = outbox.record(pipe, to=TO, body=BODY, template="sms/help", lang="en", purpose="reply",
                         priority="high", segments=1)
    pipe.execute()  # ... and the process died before enqueue()
    fine = send(services, to="+919812345000")

    assert outbox.requeue_stuck(services, now=time.time() + 120) == 1
    assert outbox.requeue_stuck(services, now=time.time() + 120) == 0
    work(services)

    assert record(services, lost)["status"] == record(services, fine)["status"] == "sent"
    assert len(fake_at.sent_to(TO)) == 1


def test_requeue_retries_an_attempt_interrupted_mid_request(services, fake_at):
    message_id = send(services)
    assert outbox.claim(services, message_id, 1) is not None  # the worker died after this

    assert outbox.requeue_stuck(services, now=time.time() + 700) == 1
    time_passes(services)
    work(services)

    rec = record(services, message_id)
    assert rec["status"] == "sent" and rec["attempts"] == "2"


# ---- the concurrent worker's RQ bookkeeping ----
def test_worker_sends_concurrently_and_keeps_rq_bookkeeping(services, fake_at):
    fake_at.delay = 0.3
    ids = [send(services, to=f"+9198000001{i:02d}") for i in range(24)]

    started = time.monotonic()
    w = work(services, concurrency=8)
    elapsed = time.monotonic() - started

    assert elapsed < 24 * 0.3 / 3  # eight at a time, not one
    assert 6 <= fake_at.max_in_flight() <= 8
    queue = services.queue(QUEUE_HIGH)
    assert all(Job.fetch(outbox.job_id(m, 1), connection=services.queue_redis).get_status() == JobStatus.FINISHED
               for m in ids)
    assert StartedJobRegistry(queue=queue).count == 0
    assert FailedJobRegistry(queue=queue).count == 0
    assert queue.finished_job_registry.count == 24
    assert int(services.queue_redis.hget(w.key, "successful_job_count")) == 24
    assert services.queue_redis.exists(w.executions_key) == 0
    assert services.queue_redis.hget(w.key, "death")  # registered its death on the way out
    assert Worker.count(connection=services.queue_redis) == 0


def test_high_priority_goes_first_whatever_the_order_of_arrival(services, fake_at):
    noon = datetime(2030, 3, 4, 12, 0, tzinfo=ZoneInfo("Asia/Kolkata"))  # outside the quiet hours
    low = [send(services, to=f"+9198000003{i:02d}", priority="low", now=noon) for i in range(6)]
    high = [send(services, to=f"+9198000004{i:02d}") for i in range(6)]
    fake_at.delay = 0.2  # sends go out in waves of 3, far enough apart to tell them apart

    work(services, concurrency=3)

    first_six = {r.form["to"] for r in sorted(fake_at.requests, key=lambda r: r.at)[:6]}
    assert first_six == {record(services, m)["to"] for m in high}
    assert all(record(services, m)["status"] == "sent" for m in low + high)


def test_failing_job_lands_in_the_failed_registry(services):
    queue = services.queue(QUEUE_HIGH)
    bad = queue.enqueue("builtins.int", "not a number")
    good = queue.enqueue("builtins.len", "four")

    w = work(services)

    assert bad.get_status() == JobStatus.FAILED and good.get_status() == JobStatus.FINISHED
    assert good.return_value() == 4
    assert bad.id in FailedJobRegistry(queue=queue)
    assert StartedJobRegistry(queue=queue).count == 0
    assert int(services.queue_redis.hget(w.key, "failed_job_count")) == 1


def test_periodic_jobs_are_scheduled_once_whoever_asks(services):
    now = 1_900_000_005.0
    periodic = [worker.Periodic("requeue-stuck", "gateway.jobs.requeue_stuck", every=30)]

    assert worker.schedule_periodic(services, periodic, now=now) == 2
    assert worker.schedule_periodic(services, periodic, now=now + 1) == 0

    registry = ScheduledJobRegistry(queue=services.queue("default"))
    times = sorted(registry.get_scheduled_time(j).timestamp() for j in registry.get_job_ids())
    assert times == [1_900_000_020.0, 1_900_000_050.0]  # the next two multiples of 30 s


def worker_process(redis_url, fake_at, concurrency: int) -> subprocess.Popen:
    """One worker process (`worker.run`) on the test store and the fake provider, in its own
    process group (with RQ's scheduler process), its output captured."""
    env = gateway_env(redis_url, GATEWAY_AT_API_KEY=fake_at.api_key, GATEWAY_AT_API_URL=fake_at.url,
                      PYTHONPATH=str(ROOT))
    run = f"from gateway import worker; worker.run(processes=1, concurrency={concurrency})"
    return subprocess.Popen([sys.executable, "-c", run], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_warm_shutdown_lets_sends_in_flight_finish(services, fake_at, redis_url):
    fake_at.delay = 1.5
    ids = [send(services, to=f"+9198000002{i:02d}") for i in range(4)]
    proc = worker_process(redis_url, fake_at, concurrency=8)
    try:
        deadline = time.monotonic() + 20
        while len(fake_at.requests) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(fake_at.requests) == 4
        [w] = Worker.all(connection=services.queue_redis)
        assert w.queue_names() == list(QUEUE_NAMES) and w.get_state() == "busy"
        assert w.last_heartbeat and services.queue_redis.ttl(w.key) > 60

        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # RQ's scheduler process too
            proc.communicate()
    assert proc.returncode == 0, output
    with pytest.raises(ProcessLookupError):  # the scheduler process went with it
        os.killpg(proc.pid, 0)
    assert [record(services, m)["status"] for m in ids] == ["sent"] * 4
    assert StartedJobRegistry(queue=services.queue(QUEUE_HIGH)).count == 0
    assert Worker.count(connection=services.queue_redis) == 0
    assert "Traceback" not in output


def test_worker_that_took_over_a_dead_scheduler_still_stops_cleanly(services, fake_at, redis_url):
    """A worker that found the scheduler's locks left by a killed worker runs the scheduler itself
    (scheduled jobs run again), and on SIGTERM stops it and exits, leaving no process behind."""
    for name in QUEUE_NAMES:  # a scheduler killed ~20 s ago: its locks still live, unrenewed
        services.queue_redis.set(f"rq:scheduler-lock:{name}", "dead-scheduler", ex=40)
    proc = worker_process(redis_url, fake_at, concurrency=4)
    try:
        queue = services.queue(QUEUE_HIGH)
        deadline = time.monotonic() + 40
        while services.queue_redis.get(f"rq:scheduler-lock:{QUEUE_HIGH}") == b"dead-scheduler":
            assert time.monotonic() < deadline, "the stale scheduler lock was never taken over"
            time.sleep(0.2)
        job = queue.enqueue_in(timedelta(seconds=1), "time.sleep", 0)
        deadline = time.monotonic() + 15
        while job.get_status(refresh=True) != JobStatus.FINISHED:
            assert time.monotonic() < deadline, "the taken-over scheduler did not enqueue a scheduled job"
            time.sleep(0.1)

        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, output
    assert "runs in this worker now" in output and "Traceback" not in output
    with pytest.raises(ProcessLookupError):  # nothing of the group outlived it (the scheduler included)
        os.killpg(proc.pid, 0)
    assert not any(services.queue_redis.exists(f"rq:scheduler-lock:{name}") for name in QUEUE_NAMES)
