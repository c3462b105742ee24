"""`stats`, `messages` and `requeue` as an operator runs them (`python -m gateway ...` in a
subprocess on the test Redis), next to a live gateway that books and sends through the fake
Africa's Talking."""
from __future__ import annotations

import re

import pytest

from gateway.phones import mask
from gateway.services import QUEUE_HIGH
from tests.fakes.fake_at import fake_at  # noqa: F401 (fixture)
from tests.gateway.test_operator_cli import cli  # noqa: F401 (fixture)
from tests.gateway.test_verification import (CITIZEN, NEIGHBOUR, VACCINATOR_101,  # noqa: F401
                                             gateway)


def ok(result) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def row(stdout: str, *starts: str) -> list[str]:
    """The table row whose first columns are `starts`, split into its columns."""
    for line in stdout.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells[:len(starts)] == list(starts):
            return cells
    raise AssertionError(f"no row {starts} in:\n{stdout}")


@pytest.mark.parametrize("name, words", [
    ("stats", ["centre", "funnel", "queue"]),
    ("messages", ["--failed", "--to", "--limit", "####"]),
    ("requeue", ["stuck", "--failed", "denied"]),
])
def test_every_command_explains_itself_with_help(cli, name, words):  # noqa: F811
    text = ok(cli(name, "--help"))
    for word in words:
        assert word in text, (word, text)


def test_stats_counts_appointments_per_centre_and_day_messages_and_queues(gateway, cli):  # noqa: F811
    ref, code = gateway.book()
    gateway.book(NEIGHBOUR, name="Ravi Kumar")
    gateway.sms(VACCINATOR_101, f"V {ref} {code}")

    out = ok(cli("stats"))
    today = gateway.today.isoformat()
    cells = row(out, "101", "Connaught Place UPHC", today)
    header = row(out, "centre", "name", "day")
    counts = dict(zip(header, cells))
    assert (counts["booked"], counts["verified"], counts["total"]) == ("1", "1", "2")
    funnel = dict(zip(row(out, "purpose"), row(out, "booking")))
    assert (funnel["queued"], funnel["sent"], funnel["pending"]) == ("2", "2", "0")
    assert row(out, "reply")[1:3] == ["1", "1"]
    assert row(out, "sms-high")[1] == "0"


def test_stats_refuses_a_bad_date_and_says_why(gateway, cli):  # noqa: F811
    result = cli("stats", "--from", "26/11/2026")
    assert result.returncode == 2 and "YYYY-MM-DD" in result.stderr


def test_messages_shows_the_newest_first_with_phone_and_code_masked(gateway, cli):  # noqa: F811
    ref, code = gateway.book()
    gateway.sms(CITIZEN, "STATUS")

    out = ok(cli("messages"))
    assert out.index("reply") < out.index("booking")  # newest first
    assert mask(CITIZEN) in out and CITIZEN not in out
    assert f"Ref {ref}" in out and "Code ####" in out and f"Code {code}" not in out
    assert out.strip().endswith("2 message(s)")

    out = ok(cli("messages", "--to", CITIZEN.replace("+91", ""), "--limit", "1"))
    assert "reply" in out and "booking" not in out
    assert out.strip().endswith(f"1 message(s) to {mask(CITIZEN)}")


def test_messages_failed_lists_only_failed_ones_with_their_error(gateway, cli):  # noqa: F811
    gateway.fake.script(NEIGHBOUR, "invalid_phone")
    gateway.book()
    gateway.book(NEIGHBOUR, name="Ravi Kumar")

    out = ok(cli("messages", "--failed"))
    assert mask(NEIGHBOUR) in out and mask(CITIZEN) not in out
    assert "InvalidPhoneNumber" in out
    assert out.strip().endswith("1 failed message(s)")
    assert ok(cli("messages", "--failed", "--to", CITIZEN)).strip().endswith("0 failed message(s) to "
                                                                               + mask(CITIZEN))


def test_messages_refuses_a_number_that_is_not_one(gateway, cli):  # noqa: F811
    result = cli("messages", "--to", "12")
    assert result.returncode == 2 and "not a phone number" in result.stderr


def test_requeue_gives_a_message_whose_job_was_lost_its_job_back(gateway, cli):  # noqa: F811
    gateway.phone(CITIZEN).sms("STATUS")
    gateway.services.queue(QUEUE_HIGH).empty()  # the job is gone, the record still says queued
    gateway.deliver()
    assert gateway.fake.sent_to(CITIZEN) == []

    assert "requeued 1 stuck message(s)" in ok(cli("requeue", "--older-than", "0"))
    gateway.deliver()
    assert len(gateway.fake.accepted_to(CITIZEN)) == 1
    assert "requeued 0 stuck message(s)" in ok(cli("requeue", "--older-than", "0"))


def test_requeue_failed_sends_a_failed_code_again_but_never_a_denied_one(gateway, cli):  # noqa: F811
    gateway.fake.script(CITIZEN, "invalid_phone", times=1)
    gateway.fake.script(NEIGHBOUR, "blacklist")
    gateway.book()
    gateway.book(NEIGHBOUR, name="Ravi Kumar")
    assert gateway.fake.accepted_to(CITIZEN) == []

    out = ok(cli("requeue"))
    assert "requeued 0 stuck message(s)" in out and "failed" not in out
    gateway.deliver()
    assert gateway.fake.accepted_to(CITIZEN) == []

    out = ok(cli("requeue", "--failed"))
    assert "sent 1 failed message(s) of the last 24 h again as a new attempt" in out
    gateway.deliver()
    (slip,) = gateway.fake.accepted_to(CITIZEN)
    assert re.search(r"Code \d{4}", slip.message) and "####" not in slip.message
    assert len(gateway.fake.sent_to(NEIGHBOUR)) == 1  # denied: not tried again
    assert "sent 0 failed message(s)" in ok(cli("requeue", "--failed"))
