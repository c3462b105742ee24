"""The operator's commands as an operator runs them (`python -m gateway ...` in a subprocess, on
the test Redis), next to the live gateway: import vaccinators, unlock, disputes, export-audit."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from flows.text import day_label
from gateway import keys, operations
from tests.conftest import gateway_env
from tests.fakes.fake_at import fake_at  # noqa: F401 (fixture)
from tests.fakes.network import CERT_RE, option
from tests.gateway.test_verification import (CITIZEN, NEIGHBOUR, TOMORROWS_SLOT, VACCINATOR_101,
                                             gateway, wrong)  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(redis_url):
    """Run `python -m gateway <args>` against the test database; returns the finished process."""

    def run(*args: str) -> subprocess.CompletedProcess:
        env = gateway_env(redis_url, GATEWAY_CODE_SECRET="test-secret")
        return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)

    return run


def csv_file(tmp_path: Path, text: str, name: str = "vaccinators.csv") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# ---- import vaccinators ----


def test_bad_vaccinator_rows_are_reported_by_line_and_nothing_is_imported(gateway, cli, tmp_path):
    r = gateway.services.redis
    before = r.scard(keys.vaccinators())
    path = csv_file(tmp_path, "phone,name,centre_id\n"
                              "+919810000501,Lata Shah,101\n"
                              "12345,Bad Phone,101\n"
                              "+919810000502,Nowhere Centre,999\n"
                              "+919810000503,,101\n"
                              "+919810000504,Ok Two,102\n")
    result = cli("import", "vaccinators", path)
    assert result.returncode == 1
    assert f"{path}:3: phone '12345'" in result.stderr
    assert f"{path}:4: centre 999 is not imported" in result.stderr
    assert f"{path}:5: name is empty" in result.stderr
    assert "3 bad row(s) of 5: nothing imported" in result.stderr
    assert r.scard(keys.vaccinators()) == before
    assert "not registered as a vaccinator" in gateway.sms("+919810000501", "TODAY")

    result = cli("import", "vaccinators", path, "--skip-bad")
    assert result.returncode == 0, result.stderr
    assert "imported 2 vaccinators row(s)" in result.stdout and "skipped 3 bad row(s)" in result.stdout
    assert "Teeka today" in gateway.sms("+919810000501", "TODAY")


def test_reimporting_vaccinators_is_safe_and_moves_a_vaccinator_to_another_centre(gateway, cli, tmp_path):
    r = gateway.services.redis
    ref, code = gateway.book()
    path = csv_file(tmp_path, "phone,name,centre_id\n98100 00501,Lata Shah,101\n")
    for _ in range(2):
        result = cli("import", "vaccinators", path)
        assert result.returncode == 0, result.stderr
    assert r.hgetall(keys.vaccinator("+919810000501")) == {"name": "Lata Shah", "centre": "101",
                                                           "active": "1"}
    count = r.scard(keys.vaccinators())
    assert cli("import", "vaccinators", path).returncode == 0
    assert r.scard(keys.vaccinators()) == count

    moved = csv_file(tmp_path, "phone,name,centre_id\n+919810000501,Lata Shah,102\n", "moved.csv")
    assert cli("import", "vaccinators", moved).returncode == 0
    assert "another centre" in gateway.sms("+919810000501", f"V {ref} {code}")


def test_the_same_number_twice_in_one_file_is_a_bad_row(gateway, cli, tmp_path):
    path = csv_file(tmp_path, "phone,name,centre_id\n+919810000501,Lata Shah,101\n"
                              "9810000501,Lata Shah,102\n")
    result = cli("import", "vaccinators", path)
    assert result.returncode == 1
    assert f"{path}:3: phone +919810000501 is also on line 2" in result.stderr


def test_a_vaccinator_deactivated_by_the_active_column_can_no_longer_verify(gateway, cli, tmp_path):
    ref, code = gateway.book()
    off = csv_file(tmp_path, "phone,name,centre_id,active\n+919810000101,Sunita Rao,101,0\n")
    result = cli("import", "vaccinators", off)
    assert result.returncode == 0, result.stderr

    for text in (f"V {ref} {code}", f"DONE {ref}", "TODAY"):
        assert "not registered as a vaccinator" in gateway.sms(VACCINATOR_101, text)
    assert gateway.status(ref) == "booked"

    # a file without the column (re)activates: active is the default
    on = csv_file(tmp_path, "phone,name,centre_id\n+919810000101,Sunita Rao,101\n", "on.csv")
    assert cli("import", "vaccinators", on).returncode == 0
    assert "Asha Devi" in gateway.sms(VACCINATOR_101, f"V {ref} {code}")


def test_an_active_value_other_than_1_or_0_is_a_bad_row(gateway, cli, tmp_path):
    path = csv_file(tmp_path, "phone,name,centre_id,active\n+919810000101,Sunita Rao,101,maybe\n")
    result = cli("import", "vaccinators", path)
    assert result.returncode == 1
    assert f"{path}:2: active must be 1 or 0" in result.stderr
    assert gateway.services.redis.hget(keys.vaccinator(VACCINATOR_101), "active") == "1"


def test_a_file_without_a_required_column_is_refused(gateway, cli, tmp_path):
    path = csv_file(tmp_path, "phone,name\n+919810000501,Lata Shah\n")
    result = cli("import", "vaccinators", path)
    assert result.returncode == 1
    assert "missing column(s): centre_id" in result.stderr


# ---- unlock ----


def test_unlock_lets_the_right_code_through_after_a_lock(gateway, cli):
    ref, code = gateway.book()
    for _ in range(5):
        gateway.phone(VACCINATOR_101).sms(f"V {ref} {wrong(code)}")
    gateway.deliver()
    assert any("now locked" in text for text in gateway.texts(VACCINATOR_101))  # replies go out in parallel
    kinds = [a["kind"] for _, a in gateway.services.redis.xrange(keys.alerts())]
    assert kinds == ["locked"]

    result = cli("unlock", ref)
    assert result.returncode == 0, result.stderr
    assert f"Unlocked {ref}" in result.stdout
    assert "Asha Devi" in gateway.sms(VACCINATOR_101, f"V {ref} {code}")

    again = cli("unlock", ref)
    assert again.returncode == 1 and "verified, not locked" in again.stdout


def test_unlock_of_a_mistyped_or_unknown_ref(gateway, cli):
    mistyped = cli("unlock", "48213 90574")
    assert mistyped.returncode == 2 and "not a valid ref" in mistyped.stderr
    unknown = cli("unlock", "48213 90575")
    assert unknown.returncode == 1 and "No appointment has ref 48213 90575" in unknown.stdout


# ---- disputes ----


def test_disputes_lists_what_citizens_disputed_with_the_number_masked(gateway, cli):
    assert cli("disputes").stdout.strip() == "no disputes"
    ref, code = gateway.book()
    gateway.sms(VACCINATOR_101, f"V {ref} {code}")
    gateway.sms(VACCINATOR_101, f"DONE {ref}")
    cert = CERT_RE.search(gateway.last_text(CITIZEN)).group(1).replace(" ", "")
    gateway.sms(CITIZEN, f"NOTME {ref}")

    result = cli("disputes")
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if ref.replace(" ", "") in line)
    assert "Asha Devi" in line and "Connaught" in line and cert in line
    assert CITIZEN not in result.stdout and "9876500001" not in result.stdout
    assert "1 dispute(s)" in result.stdout


# ---- export-audit ----


def cancel_over_ussd(gateway, number: str, label: str) -> None:
    """Main menu 4, the appointment listed with `label` (initials and day), 1 Yes."""
    phone = gateway.phone(number)
    phone.dial()
    phone.answer("4")
    if "Yes" not in phone.screen:
        phone.answer(option(phone.screen, label))
    phone.answer(option(phone.screen, "Yes"))
    assert phone.ended and "ancel" in phone.screen, phone.screen


def test_export_audit_writes_who_how_and_when_for_every_change(gateway, cli, tmp_path):
    today = gateway.today
    done_ref, done_code = gateway.book(name="Asha Devi")
    locked_ref, locked_code = gateway.book(name="Ravi Kumar")
    missed_ref, _ = gateway.book(number=NEIGHBOUR, name="Meena Lal")
    cancelled_ref, _ = gateway.book(number=NEIGHBOUR, name="Kiran Lal", day=today + timedelta(days=1),
                                    slot=TOMORROWS_SLOT)
    gateway.sms(VACCINATOR_101, f"V {done_ref} {wrong(done_code)}")
    gateway.sms(VACCINATOR_101, f"V {done_ref} {done_code}")
    gateway.sms(VACCINATOR_101, f"DONE {done_ref}")
    gateway.sms(CITIZEN, f"NOTME {done_ref}")
    for _ in range(5):
        gateway.phone(VACCINATOR_101).sms(f"V {locked_ref} {wrong(locked_code)}")
    gateway.deliver()
    assert cli("unlock", locked_ref).returncode == 0
    cancel_over_ussd(gateway, NEIGHBOUR, f"K.L. {day_label(today + timedelta(days=1))}")
    operations.sweep_no_shows(gateway.services, today=today + timedelta(days=1))

    out = tmp_path / "audit.jsonl"
    result = cli("export-audit", "--output", str(out))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert f"exported {len(events)} audit event(s)" in result.stderr
    for event in events:
        assert event["actor"] and event["channel"] and event["at"].endswith("+00:00"), event

    def happened(ref):
        return [(e["status"], e["actor"], e["channel"]) for e in events if e["ref"] == ref.replace(" ", "")]

    assert happened(done_ref) == [("booked", CITIZEN, "ussd"), ("wrong_code", VACCINATOR_101, "sms"),
                                  ("verified", VACCINATOR_101, "sms"), ("vaccinated", VACCINATOR_101, "sms"),
                                  ("disputed", CITIZEN, "sms")]
    assert happened(locked_ref) == [("booked", CITIZEN, "ussd")] \
        + [("wrong_code", VACCINATOR_101, "sms")] * 5 + [("locked", VACCINATOR_101, "sms"),
                                                         ("unlocked", "operator", "cli"),
                                                         ("no_show", "sweep", "system")]
    assert happened(missed_ref) == [("booked", NEIGHBOUR, "ussd"), ("no_show", "sweep", "system")]
    assert happened(cancelled_ref) == [("booked", NEIGHBOUR, "ussd"), ("cancelled", NEIGHBOUR, "ussd")]
    vaccinated = next(e for e in events if e["status"] == "vaccinated")
    assert vaccinated["cert"] and len(vaccinated["cert"]) == 12

    # to standard output as well, the same lines
    stdout = cli("export-audit")
    assert [json.loads(line) for line in stdout.stdout.splitlines()] == events
