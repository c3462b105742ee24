"""The centres list over USSD stays true while a process keeps its copy of the catalogue:
a re-import shows on the next dial; seats taken elsewhere show within SEAT_VIEW_SECONDS, and
at once when this process took them."""
from __future__ import annotations

import io
import time
from datetime import timedelta

import pytest

from gateway import create_app, importer, keys, store
from gateway.conversation import handle_ussd, now_in

AREA = "560077"
SLOT = "10:00-12:00"
WALK = ["", "1", "1*1", "1*1*Asha Devi", "1*1*Asha Devi*1990", "1*1*Asha Devi*1990*1",
        f"1*1*Asha Devi*1990*1*{AREA}"]


@pytest.fixture
def services(app_config, rdb):
    return create_app(app_config).extensions["teeka"]


def load(services, kind: str, rows: str) -> None:
    header = ",".join(importer.COLUMNS[kind])
    report = importer.import_csv(services.redis, kind, io.StringIO(f"{header}\n{rows}"))
    assert report.ok, report.bad


def centres_screen(services, dial: int) -> str:
    """What a new citizen sees after typing the area code, on a fresh dial."""
    screen = ""
    for text in WALK:
        screen, _ = handle_ussd(services, f"ATUid_copy{dial}", f"+91987654{dial:04d}", text)
    return screen


def clinic(services, centre_id: str, name: str, capacity: int) -> None:
    tomorrow = now_in(services).date() + timedelta(days=1)
    load(services, "centres", f"{centre_id},{name},Test District,{AREA},Main Road\n")
    load(services, "sessions", f"{centre_id},{tomorrow},Covishield,18,1|2,{SLOT},{capacity}\n")


def test_a_centre_imported_after_the_area_was_listed_shows_on_the_next_dial(services):
    clinic(services, "801", "Alpha Clinic", 5)
    first = centres_screen(services, 1)
    assert "Alpha Clinic" in first and "Beta Clinic" not in first
    clinic(services, "802", "Beta Clinic", 5)
    second = centres_screen(services, 2)
    assert "Alpha Clinic" in second and "Beta Clinic" in second


def test_a_slot_that_just_filled_is_not_offered_and_a_raised_capacity_is(services):
    clinic(services, "801", "Alpha Clinic", 1)
    assert "Alpha Clinic" in centres_screen(services, 1)
    tomorrow = (now_in(services).date() + timedelta(days=1)).isoformat()
    session_id = store.session_id("801", tomorrow, "Covishield")
    services.redis.hincrby(keys.session(session_id), "t:" + SLOT, 1)  # booked by another process
    time.sleep(store.SEAT_VIEW_SECONDS)
    assert "Alpha Clinic" not in centres_screen(services, 2)
    load(services, "sessions", f"801,{tomorrow},Covishield,18,1|2,{SLOT},2\n")
    assert "Alpha Clinic" in centres_screen(services, 3)


def test_the_last_seat_booked_by_this_process_leaves_its_lists_at_once(services):
    clinic(services, "801", "Alpha Clinic", 1)
    # past the centres: centre 1, date 1, slot 1, confirm
    for text in WALK + [WALK[-1] + "*1" * n for n in range(1, 5)]:
        screen, end = handle_ussd(services, "ATUid_copy_booker", "+919876540101", text)
    assert end and "Ref" in screen, screen
    assert "Alpha Clinic" not in centres_screen(services, 4)
