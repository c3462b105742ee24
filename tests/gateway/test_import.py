"""`python -m gateway import centres|sessions|vaccinators FILE.csv` as an operator runs it."""
from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from gateway import keys, store
from tests.conftest import gateway_env

ROOT = Path(__file__).resolve().parents[2]
DAY = date(2031, 3, 10)  # sessions on a fixed day: the import does not care about the clock

CENTRES = """centre_id,name,district,area_code,address
101,Connaught Place UPHC,New Delhi,110001,Block A
102,Gole Market Dispensary,New Delhi,110001,Gole Market
201,Karol Bagh PHC,Central Delhi,110005,Ajmal Khan Road
"""


def gateway_import(redis_url: str, *args: str) -> subprocess.CompletedProcess:
    env = gateway_env(redis_url, GATEWAY_CODE_SECRET="t")
    return subprocess.run([sys.executable, "-m", "gateway", "import", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def run(redis_url, rdb, tmp_path):
    """run(kind, csv_text, *flags) -> the finished command; the file is written first."""

    def run(kind: str, text: str, *flags: str, name: str | None = None):
        path = tmp_path / (name or f"{kind}.csv")
        path.write_text(text, encoding="utf-8")
        return gateway_import(redis_url, kind, str(path), *flags)

    return run


def free(rdb, centre_id: str, day: date) -> dict[str, tuple[int, int]]:
    """slot -> (capacity, taken) of a centre's sessions on a day, as the menu reads them."""
    catalog = store.StoreCatalog(rdb)
    return {s.name: (s.capacity, s.taken) for session in catalog.sessions([centre_id], [day])
            for s in session.slots}


def test_centres_import_and_can_be_found_by_area_code(run, rdb):
    result = run("centres", CENTRES)
    assert result.returncode == 0, result.stderr
    assert "imported 3 centres row(s)" in result.stdout
    names = [c.name for c in store.StoreCatalog(rdb).centres_in_area("110001")]
    assert names == ["Connaught Place UPHC", "Gole Market Dispensary"]


def test_bad_rows_are_reported_by_line_and_reason_and_nothing_is_imported(run, rdb):
    text = CENTRES + "abc,Bad Id,X,110009,x\n301,,Mumbai,400005,x\n302,Short Area,Mumbai,12,x\n"
    result = run("centres", text)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert any(line.endswith("centres.csv:5: centre_id must be 1-12 digits, got 'abc'")
               for line in lines), result.stderr
    assert any("centres.csv:6: name is empty" in line for line in lines)
    assert any("centres.csv:7: area_code must be 3-10 digits" in line for line in lines)
    assert "3 bad row(s) of 6: nothing imported" in result.stderr
    assert store.StoreCatalog(rdb).centres_in_area("110001") == []
    assert not rdb.exists(keys.centres())


def test_skip_bad_imports_the_good_rows_and_still_reports_the_bad(run, rdb):
    result = run("centres", CENTRES + "abc,Bad Id,X,110009,x\n", "--skip-bad")
    assert result.returncode == 0, result.stderr
    assert "centres.csv:5: centre_id must be 1-12 digits" in result.stderr
    assert "imported 3 centres row(s)" in result.stdout and "skipped 1 bad row(s)" in result.stdout
    assert len(store.StoreCatalog(rdb).centres_in_area("110001")) == 2


def test_a_missing_column_is_named_and_nothing_is_imported(run, rdb):
    result = run("centres", "centre_id,name,district,address\n101,A,B,C\n")
    assert result.returncode == 1
    assert "missing column(s): area_code" in result.stderr
    assert not rdb.exists(keys.centres())


def test_a_missing_file_is_an_error_not_a_traceback(redis_url, rdb, tmp_path):
    result = gateway_import(redis_url, "centres", str(tmp_path / "nope.csv"))
    assert result.returncode == 2 and "no such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_sessions_rows_are_checked_against_the_centres_and_each_other(run, rdb):
    assert run("centres", CENTRES).returncode == 0
    text = ("centre_id,date,vaccine,min_age,dose,slot,capacity\n"
            f"101,{DAY},Covishield,18,1|2,09:00-11:00,10\n"
            f"999,{DAY},Covishield,18,1,09:00-11:00,10\n"
            f"101,{DAY},Covishield,18,1|2,09:00-11:00,20\n"
            f"101,10/03/2031,Covishield,18,1,09:00-11:00,10\n"
            f"101,{DAY},Covishield,18,3,11:00-13:00,10\n"
            f"101,{DAY},Covishield,18,1|2,13:00-11:00,10\n"
            f"101,{DAY},Covishield,18,1|2,14:00-16:00,lots\n"
            f"101,{DAY},Covishield,45,1|2,16:00-17:00,10\n")
    result = run("sessions", text)
    assert result.returncode == 1
    for line, reason in [(3, "centre 999 is not imported yet"),
                         (4, "also on line 2"),
                         (5, "date must be YYYY-MM-DD"),
                         (6, "dose must be 1, 2 or 1|2"),
                         (7, "start before end"),
                         (8, "capacity must be a whole number"),
                         (9, "min_age/dose differ from line 2")]:
        assert f"sessions.csv:{line}: " in result.stderr and reason in result.stderr, \
            (line, reason, result.stderr)
    assert free(rdb, "101", DAY) == {}


def test_vaccinators_with_a_bad_phone_or_unknown_centre_are_refused(run, rdb):
    assert run("centres", CENTRES).returncode == 0
    text = ("phone,name,centre_id\n"
            "+919810000101,Sunita Rao,101\n"
            "12,Nobody,101\n"
            "9810000102,Imran Qureshi,555\n"
            "09810000201,Meena Iyer,201\n")
    result = run("vaccinators", text, "--skip-bad")
    assert result.returncode == 0, result.stderr
    assert "vaccinators.csv:3: phone '12' is not a valid number" in result.stderr
    assert "vaccinators.csv:4: centre 555 is not imported yet" in result.stderr
    assert store.load_vaccinator(rdb, "+919810000101").centre_id == "101"
    # a national number is stored in E.164 with the configured region
    assert store.load_vaccinator(rdb, "+919810000201").name == "Meena Iyer"
    assert store.load_vaccinator(rdb, "+919810000102") is None


def test_reimporting_is_an_upsert_and_keeps_the_seats_already_taken(run, rdb):
    assert run("centres", CENTRES).returncode == 0
    sessions = ("centre_id,date,vaccine,min_age,dose,slot,capacity\n"
                f"101,{DAY},Covishield,18,1|2,09:00-11:00,10\n"
                f"101,{DAY},Covishield,18,1|2,11:00-13:00,10\n")
    assert run("sessions", sessions).returncode == 0
    session_key = keys.session(store.session_id("101", DAY.isoformat(), "Covishield"))
    rdb.hincrby(session_key, "t:09:00-11:00", 4)  # four seats booked meanwhile

    renamed = CENTRES.replace("Connaught Place UPHC", "CP Urban PHC").replace(
        "201,Karol Bagh PHC,Central Delhi,110005", "201,Karol Bagh PHC,Central Delhi,110001")
    assert run("centres", renamed).returncode == 0
    catalog = store.StoreCatalog(rdb)
    assert [c.name for c in catalog.centres_in_area("110001")] == [
        "CP Urban PHC", "Gole Market Dispensary", "Karol Bagh PHC"]
    assert catalog.centres_in_area("110005") == []  # moved, not listed twice

    more = sessions.replace("11:00-13:00,10", "11:00-13:00,25")
    result = run("sessions", more)
    assert result.returncode == 0, result.stderr
    assert run("sessions", more).returncode == 0  # and again: nothing changes
    assert free(rdb, "101", DAY) == {"09:00-11:00": (10, 4), "11:00-13:00": (25, 0)}


def test_capacity_below_the_seats_already_booked_is_a_bad_row(run, rdb):
    assert run("centres", CENTRES).returncode == 0
    sessions = ("centre_id,date,vaccine,min_age,dose,slot,capacity\n"
                f"101,{DAY},Covishield,18,1|2,09:00-11:00,10\n")
    assert run("sessions", sessions).returncode == 0
    rdb.hincrby(keys.session(store.session_id("101", DAY.isoformat(), "Covishield")),
                "t:09:00-11:00", 6)
    result = run("sessions", sessions.replace(",10\n", ",5\n"))
    assert result.returncode == 1
    assert "sessions.csv:2: capacity 5 is below the 6 seats already booked" in result.stderr
    assert free(rdb, "101", DAY) == {"09:00-11:00": (10, 6)}


def test_a_large_file_shows_progress_and_imports_every_row(run, rdb):
    assert run("centres", CENTRES).returncode == 0
    rows = ["centre_id,date,vaccine,min_age,dose,slot,capacity"]
    for n in range(3000):
        day = DAY + timedelta(days=n // 3)
        rows.append(f"101,{day},Covishield,18,1|2,{('09:00-11:00', '11:00-13:00', '14:00-16:00')[n % 3]},10")
    result = run("sessions", "\n".join(rows) + "\n")
    assert result.returncode == 0, result.stderr
    assert "imported 3000 sessions row(s)" in result.stdout
    assert "3000/3000 rows" in result.stderr and "[###" in result.stderr
    assert result.stderr.endswith("\n")
    assert len(free(rdb, "101", DAY + timedelta(days=999))) == 3


def test_progress_finishes_its_line_when_bad_rows_were_skipped(run, rdb):
    assert run("centres", CENTRES).returncode == 0
    rows = ["centre_id,date,vaccine,min_age,dose,slot,capacity"]
    rows += [f"101,{DAY + timedelta(days=n)},Covishield,18,1|2,09:00-11:00,10" for n in range(2500)]
    rows.append(f"101,{DAY},Covishield,18,1|2,09:00-11:00,oops")
    result = run("sessions", "\n".join(rows) + "\n", "--skip-bad")
    assert result.returncode == 0, result.stderr
    assert "sessions.csv:2502: capacity must be a whole number" in result.stderr
    bar = [line for line in result.stderr.splitlines() if "rows" in line and "[" in line]
    assert bar and bar[-1] == "[##############################] 2500/2500 rows"
    assert "imported 2500 sessions row(s)" in result.stdout
