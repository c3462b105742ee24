"""The simulator in headless Chromium: a person books on the citizen's phone, reads the code in
its inbox, the vaccinator verifies and records the dose from the second phone, and the
completion SMS arrives, all in the browser, with the gateway, its RQ worker and Redis real.

Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them); skipped without them.
Set TEEKA_SIMULATOR_SCREENSHOT=/some/file.png to keep a picture of the page at the end.
"""
from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from gateway import create_app, demo, importer, store
from gateway.conversation import now_in
from tests.conftest import gateway_env
from tests.fakes.network import CERT_RE, CODE_RE, REF_RE, LiveServer, option

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ROOT = Path(__file__).resolve().parents[2]
FIRST_NUMBER = "+919876500001"  # the number the citizen's phone starts with
CITIZEN = "+919876500042"  # the number the test picks for it
VACCINATOR = "+919810000101"  # demo: Sunita Rao, Connaught Place UPHC (101)
ALL_DAY = "00:00-23:59"
WAIT = 20  # seconds for anything that crosses the gateway and the worker

pytestmark = pytest.mark.skipif(
    not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
    reason=f"headless browser test: needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)")


@pytest.fixture
def gateway(app_config, rdb, redis_url, tmp_path):
    """The app over real HTTP with the simulator on and a webhook key, and an RQ worker process."""
    config = app_config.with_overrides(simulator=True, webhook_key="sim-key", sms_backend="outbox")
    app = create_app(config)
    services = app.extensions["teeka"]
    today = now_in(services).date()
    demo.load(services, today)
    # a slot that is open whenever the test runs, so today can always be booked and verified
    rows = f"centre_id,date,vaccine,min_age,dose,slot,capacity\n101,{today},Covishield,18,1|2,{ALL_DAY},5\n"
    assert importer.import_csv(services.redis, "sessions", io.StringIO(rows)).ok
    log = tmp_path / "worker.log"
    with LiveServer(app) as server, worker_process(config, log):
        yield server, services
    services.redis.close()
    services.queue_redis.close()


class worker_process:
    """`python -m gateway worker` on the test database, stopped gently (then firmly) on exit."""

    def __init__(self, config, log: Path):
        self.config, self.log = config, log

    def __enter__(self):
        env = gateway_env(self.config.redis_url, GATEWAY_CODE_SECRET=self.config.code_secret,
                          GATEWAY_SMS_BACKEND="outbox")
        self.out = self.log.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway", "worker", "--processes", "1"],
                                     cwd=ROOT, env=env, stdout=self.out, stderr=subprocess.STDOUT)
        return self

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.out.close()


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-dev-shm-usage", "--no-first-run", "--disable-component-update", "--disable-sync",
                 "--window-size=1480,1000", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    # An explicit driver: Selenium never looks for (or downloads) one of its own.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


class SimulatedPhone:
    """One phone of the page, used as a person would: its keys, the keyboard, its screen."""

    def __init__(self, driver, station: str):
        self.driver = driver
        self.station = driver.find_element(By.ID, station)
        self.phone = self.station.find_element(By.CSS_SELECTOR, ".phone")

    def text(self, selector: str = ".content") -> str:
        return self.station.find_element(By.CSS_SELECTOR, selector).get_attribute("textContent")

    @property
    def mode(self) -> str:
        return self.phone.get_attribute("data-mode")

    @property
    def number(self) -> str:
        return self.station.find_element(By.CSS_SELECTOR, "input.number").get_attribute("value")

    def pick_number(self, raw: str) -> None:
        field = self.station.find_element(By.CSS_SELECTOR, "input.number")
        field.clear()
        field.send_keys(raw + Keys.ENTER)

    def click(self, *keys: str) -> None:
        """Press keys of the phone with the mouse: digits, * and #, or left/right/ok/green/red."""
        for key in keys:
            self.phone.find_element(By.CSS_SELECTOR, f'[data-key="{key}"]').click()

    def type(self, text: str) -> None:
        self.phone.send_keys(text)

    def wait(self, what, message: str):
        try:
            return WebDriverWait(self.driver, WAIT, poll_frequency=0.1).until(lambda _: what())
        except TimeoutException:
            raise AssertionError(f"{message}; the screen shows: {self.text()!r}") from None

    def ussd_screen(self, previous: str | None = None) -> str:
        """The USSD screen once the gateway has answered (different from `previous`)."""
        def answered():
            if self.mode not in ("ussd", "ussd-end"):
                return None
            screen = self.text(".ussd-screen") if self.mode == "ussd" else self.text()
            return screen if screen != previous else None
        return self.wait(answered, "no USSD answer")

    def answer(self, text: str, previous: str) -> str:
        """Type an answer on the computer's keyboard and send it with Enter (the green key)."""
        self.type(text + Keys.ENTER)
        return self.ussd_screen(previous)

    def wait_for_unread(self) -> None:
        self.wait(lambda: self.text(".envelope").strip(), "no new message arrived")

    def read_newest(self) -> str:
        """Open the newest message from the standby screen's Read key; its text."""
        self.wait(lambda: self.mode == "idle" and self.text(".soft-left") == "Read", "phone not on standby")
        self.click("left")
        self.wait(lambda: self.mode == "message", "message did not open")
        return self.text(".message-text")

    def log_badges(self) -> list[str]:
        return [b.get_attribute("textContent") for b in self.station.find_elements(By.CSS_SELECTOR, ".thread .in .badge")]


def book_on_the_citizens_phone(citizen: SimulatedPhone) -> str:
    """Dial with the mouse, answer the screens with the keyboard; returns the ref on the END screen."""
    citizen.click(*"*384*123#", "green")
    screen = citizen.ussd_screen()
    assert "English" in screen
    citizen.click(option(screen, "English"), "left")
    screen = citizen.ussd_screen(screen)
    assert "Book" in screen
    for answer in ("1", "Asha Devi", "1990", "1", "110001"):
        screen = citizen.answer(answer, screen)
    screen = citizen.answer(option(screen, "Connaught"), screen)
    screen = citizen.answer("1", screen)  # the first date: today
    screen = citizen.answer(option(screen, ALL_DAY), screen)
    screen = citizen.answer("1", screen)
    assert citizen.mode == "ussd-end", screen
    ref = REF_RE.search(screen) or re.search(r"(\d{5} \d{5})", screen)
    assert ref, screen
    citizen.click("left")  # OK: back to standby
    return ref.group(1)


def write_sms_by_multitap(phone: SimulatedPhone, word: str, digits: str) -> None:
    """Menu > Write message, then `word` letter by letter on the keypad, a space, and `digits`."""
    keys = {"D": ("3", 1), "O": ("6", 3), "N": ("6", 2), "E": ("3", 2)}
    phone.click("left", "2")  # Menu, 2 Write message (upper-case letters by default)
    previous = None
    for letter in word:
        key, presses = keys[letter]
        if key == previous:
            time.sleep(1.2)  # let the last letter settle, as on a real phone
        phone.click(*[key] * presses)
        previous = key
    phone.click("0")  # a space
    phone.click("#", "#")  # ABC -> abc -> 123
    phone.click(*digits)


def test_a_person_books_gets_the_code_is_verified_and_gets_the_completion_sms_in_the_browser(gateway, browser):
    server, services = gateway
    browser.get(server.url + "/simulator")
    citizen, vaccinator = SimulatedPhone(browser, "citizen"), SimulatedPhone(browser, "vaccinator")
    citizen.wait(lambda: citizen.number == FIRST_NUMBER, "citizen's number not set")
    citizen.pick_number("98765 00042")
    citizen.wait(lambda: citizen.number == CITIZEN and citizen.text(".log-number") == CITIZEN,
                 "the picked number is not the phone's")
    vaccinator.wait(lambda: vaccinator.number == VACCINATOR, "vaccinator's number not set")

    ref = book_on_the_citizens_phone(citizen)
    citizen.wait_for_unread()
    slip = citizen.read_newest()
    assert REF_RE.search(slip).group(1) == ref
    code = CODE_RE.search(slip).group(1)
    assert code == store.code_for(services, ref.replace(" ", ""))  # the real code, as the phone gets it
    assert citizen.log_badges() == ["sent"]
    citizen.click("red")  # back to standby

    vaccinator.click("left", "2")  # Menu, 2 Write message
    vaccinator.type(f"V {ref} {code}" + Keys.ENTER)
    vaccinator.wait_for_unread()
    reply = vaccinator.read_newest()
    assert "Asha Devi" in reply and "1990" in reply and code not in reply

    vaccinator.click("red")
    write_sms_by_multitap(vaccinator, "DONE", ref.replace(" ", ""))
    assert vaccinator.text(".entry").strip() == f"DONE {ref.replace(' ', '')}"
    vaccinator.click("green")

    citizen.wait_for_unread()
    completion = citizen.read_newest()
    assert CERT_RE.search(completion), completion
    assert f"NOTME {ref}" in completion
    citizen.wait(lambda: citizen.log_badges() == ["sent", "sent"], "the log does not show both messages sent")

    shot = os.environ.get("TEEKA_SIMULATOR_SCREENSHOT")
    if shot:
        browser.save_screenshot(shot)
