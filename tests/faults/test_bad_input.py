"""Bad input: generated bodies posted to each webhook (hypothesis, through the Flask test client
for speed, on a real Redis with real data). Missing and extra fields, huge and empty values,
every Unicode plane, `*` and `#` runs, repeated fields, invalid phone numbers.

Whatever arrives, the gateway never answers 5xx; a 4xx is a 400 that names the offending field,
and it is the only answer a request that breaks DESIGN 4.1 gets; a USSD answer is a
`CON`/`END` screen within its budget; and the store's invariants hold after every request.
"""
from __future__ import annotations

import re
import secrets
import urllib.parse
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway import create_app, gsm, worker
from gateway.phones import InvalidPhone, normalise
from tests.fakes.fake_at import FORM, fake_at  # noqa: F401 (fixture)
from tests.fakes.network import CODE_RE, REF_RE, ServerLikeClient, option
from tests.faults.invariants import check
from tests.faults.test_races import ALL_DAY, code_violations, figures, load_world

EXAMPLES = 60  # per webhook: enough to find the classic breakages, quick enough for CI
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MAX_FIELD = 1000
CITIZENS = ["+919876560001", "+919876560002", "9876560003", "+91 98765 60004"]
VACCINATORS = ["+919810000101", "+919810000102"]  # demo: centres 101 and 102
GSM7_SCREEN, UCS2_SCREEN = 160, 80


@dataclass(frozen=True)
class Contract:
    """A webhook's fields as DESIGN 4.1 lists them."""

    path: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    phones: tuple[str, ...]
    may_be_empty: tuple[str, ...] = ()

    @property
    def fields(self) -> tuple[str, ...]:
        return self.required + self.optional


USSD = Contract("/ussd", ("sessionId", "serviceCode", "phoneNumber", "text"), ("networkCode",),
                ("phoneNumber",), ("text",))
EVENTS = Contract("/ussd/events", ("sessionId", "status"),
                  ("phoneNumber", "durationInMillis", "hopsCount", "input", "lastAppResponse",
                   "errorMessage", "networkCode", "cost", "date", "serviceCode"), ("phoneNumber",))
SMS_IN = Contract("/sms/incoming", ("from", "id", "text"),
                  ("to", "date", "linkId", "networkCode", "cost"), ("from",), ("text",))
DELIVERY = Contract("/sms/delivery", ("id", "status"),
                    ("phoneNumber", "networkCode", "failureReason", "retryCount"), ("phoneNumber",))


# ---------------------------------------------------------------- what to send
# text from every plane (hypothesis draws from all of Unicode, surrogates aside), weighted
# toward what breaks parsers: empty, spaces, `*`/`#` runs, control characters, the far planes
ANY_TEXT = st.text(max_size=40)
FAR_PLANES = st.text(st.characters(min_codepoint=0x10000), max_size=12)
RUNS = st.builds(lambda chunk, n: chunk * n, st.sampled_from(["*", "#", "*#", "**1", "#*", " ", "9"]),
                 st.integers(1, 1200))
SHORT_RUNS = st.builds(lambda chunk, n: chunk * n, st.sampled_from(["*", "#", "*#", "1*", "#*"]),
                      st.integers(1, 300))
AROUND_LIMIT = st.builds(lambda ch, n: ch * n, st.sampled_from(["a", "1", "é", "ह", "😀", "\x00"]),
                         st.integers(MAX_FIELD - 2, MAX_FIELD + 2))
ODD = st.sampled_from(["", " ", "\t", "\r\n", "\x00", "%", "+", "&", "=", "?key=x", "null",
                       "None", "-1", "1e309", "NaN", "١٢٣", "٠", "\u202e1", "\ufeff", "ﷺ"])
VALUE = st.one_of(ODD, ANY_TEXT, FAR_PLANES, RUNS, AROUND_LIMIT)
PHONE = st.one_of(st.sampled_from(CITIZENS + VACCINATORS),
                  st.sampled_from(["", "+", "0", "123", "+91", "+919", "1-800-FLOWERS", "+9198765abcde",
                                   "+99912345678", " 919876560001", "+91 (98765) 60-001",
                                   "0000000000", "+1" + "2" * 30]),
                  st.from_regex(r"\+?[0-9 ()\-.]{0,18}", fullmatch=True), VALUE)


def body_of(contract: Contract, known: dict, drawn):
    """A form body, some extra fields, some repeats. Two bodies in three take every field with a
    known meaning from its plausible values (so the request goes deep); in the others each
    field is plausible, odd or absent."""
    plausible = drawn(st.sampled_from((True, True, False)))
    pairs = []
    for name in contract.fields:
        choice = "good" if plausible and name in known else \
            drawn(st.sampled_from(("good", "good", "odd", "absent")))
        if choice == "absent":
            continue
        if choice == "good" and name in known:
            value = drawn(known[name])
        elif name in contract.phones:
            value = drawn(PHONE)
        else:
            value = drawn(VALUE)
        pairs.append((name, value))
    extra = drawn(st.lists(st.tuples(st.one_of(st.sampled_from(contract.fields + ("key", "Text", "")),
                                               st.text(max_size=8)), VALUE), max_size=3))
    return pairs + extra


def faults_of(contract: Contract, pairs, region: str = "IN") -> set[str]:
    """The fields DESIGN 4.1 makes the request malformed by (none: it is well formed)."""
    first = {}
    for name, value in pairs:
        first.setdefault(name, value)  # a repeated field: the first one counts
    faults = []
    for name in contract.fields:
        value = first.get(name)
        if value is None or (value == "" and name not in contract.may_be_empty):
            if name in contract.required:
                faults.append(name)
            continue
        if len(value) > MAX_FIELD:
            faults.append(name)
        elif name in contract.phones:
            try:
                normalise(value, region)
            except InvalidPhone:
                faults.append(name)
    return set(faults)


def screen_fits(screen: str) -> bool:
    if gsm.is_gsm7_basic(screen):
        return len(screen) <= GSM7_SCREEN
    return gsm.units(screen) <= UCS2_SCREEN


# ---------------------------------------------------------------- the app, with data
class Target:
    """The app on the test database, a booked appointment, a sent SMS, a dropped session."""

    def __init__(self, app, services, fake):
        self.client, self.services, self.fake = app.test_client(), services, fake
        self.sent = 0
        self.checked = 0
        self.answers: dict[int, int] = {}

    def post(self, path: str, pairs) -> tuple[int, str]:
        data = urllib.parse.urlencode(pairs).encode()
        response = self.client.post(path, data=data, content_type=FORM)
        self.sent += 1
        self.answers[response.status_code] = self.answers.get(response.status_code, 0) + 1
        return response.status_code, response.get_data(as_text=True)

    def violations(self) -> list[str]:
        self.checked += 1
        return check(self.services.redis).violations + code_violations(self.services.redis)

    def hop(self, session_id: str, number: str, inputs: list[str]) -> str:
        status, screen = self.post("/ussd", [("sessionId", session_id), ("serviceCode", "*384*123#"),
                                             ("phoneNumber", number), ("text", "*".join(inputs))])
        assert status == 200, screen
        return screen


@pytest.fixture
def target(app_config, rdb, fake_at):  # noqa: F811
    config = fake_at.configure(app_config, quiet_hours=(0, 0))
    app = create_app(config)
    app.test_client_class = ServerLikeClient
    services = app.extensions["teeka"]
    load_world(services)
    t = Target(app, services, fake_at)
    session_id, inputs = "ATUid_" + secrets.token_hex(8), []
    screen = t.hop(session_id, CITIZENS[0], inputs)
    for answer in (lambda s: option(s, "English"), "1", "Asha Devi", "1990", "1", "110001",
                   lambda s: option(s, "Connaught"), "1", lambda s: option(s, ALL_DAY), "1"):
        inputs.append(answer(screen) if callable(answer) else answer)
        screen = t.hop(session_id, CITIZENS[0], inputs)
    assert REF_RE.search(screen), screen
    t.dropped = "ATUid_" + secrets.token_hex(8)
    t.hop(t.dropped, CITIZENS[1], [])
    t.hop(t.dropped, CITIZENS[1], ["1"])
    worker.work(config, concurrency=2, burst=True, services=services)
    slip = fake_at.sent_to(CITIZENS[0])[0].message
    t.ref, t.code = REF_RE.search(slip).group(1), CODE_RE.search(slip).group(1)
    t.provider_ids = fake_at.message_ids(CITIZENS[0])
    t.sent = 0
    yield t
    services.redis.close()
    services.queue_redis.close()


def post_and_judge(t: Target, contract: Contract, pairs) -> tuple[int, str]:
    """Post one generated body and check the answer against the contract."""
    status, body = t.post(contract.path, pairs)
    faults = faults_of(contract, pairs)
    assert status < 500, (status, body, pairs)
    if faults:
        assert status == 400, (status, body, pairs)
        named = re.search(r"field '([^']+)'", body)
        assert named and named.group(1) in faults, (faults, body)
    else:
        assert status == 200, (status, body, pairs)
    if status == 200 and contract is USSD:
        assert body.startswith(("CON ", "END ")), body
        assert screen_fits(body[4:]), body
    return status, body


def report(case: str, t: Target, violations: list[str]) -> None:
    figures(case, faults=t.sent, requests_sent=t.sent,
            messages=t.sent, violations=violations, invariant_checks=t.checked,
            answered_400=t.answers.get(400, 0), answered_5xx=sum(n for s, n in t.answers.items() if s >= 500))


# ---------------------------------------------------------------- one property per webhook
def test_ussd_hops_with_generated_bodies(target):
    t = target
    known = {"sessionId": st.one_of(st.just(t.dropped), st.text("abcdef0123456789_", min_size=1, max_size=40)),
             "serviceCode": st.sampled_from(["*384*123#", "*384*123*1#"]), "phoneNumber": st.sampled_from(CITIZENS),
             "text": st.one_of(st.just(""), st.sampled_from(["1", "1*2", "1*1*Asha*1990", "98*98*98", "0*00"]),
                               SHORT_RUNS, ANY_TEXT), "networkCode": st.sampled_from(["99999", "63902"])}

    @SETTINGS
    @given(st.data())
    @example([("sessionId", "s"), ("serviceCode", "*1#"), ("phoneNumber", "+91"), ("text", "")])
    def prop(data):
        pairs = data if isinstance(data, list) else body_of(USSD, known, data.draw)
        post_and_judge(t, USSD, pairs)
        assert t.violations() == []

    prop()
    violations = t.violations()
    report("bad-input/ussd", t, violations)
    assert violations == []


def test_ussd_sessions_walked_with_generated_answers(target):
    """Whole sessions: a first dial, then generated answers, each hop's text accumulating."""
    t = target
    answer = st.one_of(st.sampled_from(["1", "2", "3", "4", "5", "0", "00", "98", "99", "", "110001",
                                        "1990", "2030", "Asha Devi"]), ANY_TEXT, FAR_PLANES, RUNS)

    @settings(SETTINGS, max_examples=EXAMPLES // 2)
    @given(st.sampled_from(CITIZENS), st.lists(answer, max_size=12))
    def prop(number, answers):
        session_id = "ATUid_" + secrets.token_hex(8)
        for n in range(len(answers) + 1):
            text = "*".join(answers[:n])
            pairs = [("sessionId", session_id), ("serviceCode", "*384*123#"), ("phoneNumber", number),
                     ("text", text)]
            status, screen = post_and_judge(t, USSD, pairs)
            if status != 200 or screen.startswith("END "):
                break
        assert t.violations() == []

    prop()
    violations = t.violations()
    report("bad-input/ussd-walks", t, violations)
    assert violations == []


def command_texts(t: Target):
    keyword = st.sampled_from(["V", "v", "VERIFY", "DONE", "done", "BOOK", "STATUS", "CODE", "CANCEL",
                               "CERT", "NOTME", "LANG", "STOP", "START", "HELP", "CHECK", "TODAY", "YES",
                               "1", "*384*123#", "बुक", ""])
    arg = st.one_of(st.sampled_from([t.ref, t.ref.replace(" ", ""), t.ref.replace(" ", "-"), t.code,
                                     "0000", "99999 99999", "4821 3905 7610", "hi", "ur", "xx"]),
                    ANY_TEXT, FAR_PLANES, SHORT_RUNS)
    return st.builds(lambda k, a: " ".join([k, *a]), keyword, st.lists(arg, max_size=4))


def test_inbound_sms_with_generated_bodies(target):
    t = target
    known = {"from": st.sampled_from(CITIZENS + VACCINATORS), "id": st.text("0123456789abcdef", min_size=1,
                                                                           max_size=32),
             "text": command_texts(t), "to": st.just("12345")}

    @SETTINGS
    @given(st.data())
    @example([("from", "+919810000101"), ("id", "x"), ("text", "V " + "*" * 1000)])
    def prop(data):
        pairs = data if isinstance(data, list) else body_of(SMS_IN, known, data.draw)
        post_and_judge(t, SMS_IN, pairs)
        assert t.violations() == []

    prop()
    worker.work(t.services.config, concurrency=4, burst=True, services=t.services)  # the replies go out
    violations = check(t.services.redis, sent=t.fake.requests).violations + code_violations(t.services.redis)
    report("bad-input/sms-incoming", t, violations)
    assert violations == []


def test_delivery_reports_with_generated_bodies(target):
    t = target
    statuses = ["Sent", "Submitted", "Buffered", "Rejected", "Success", "Failed", "AbsentSubscriber", "Expired"]
    known = {"id": st.one_of(st.sampled_from(t.provider_ids), st.text(max_size=40)),
             "status": st.one_of(st.sampled_from(statuses), ANY_TEXT),
             "failureReason": st.sampled_from(["", "DeliveryFailure", "UserInBlackList", "Odd"]),
             "retryCount": st.one_of(st.sampled_from(["0", "1", "-1", "99999999999999999999"]), ANY_TEXT),
             "phoneNumber": st.sampled_from(CITIZENS)}

    @SETTINGS
    @given(st.data())
    def prop(data):
        post_and_judge(t, DELIVERY, body_of(DELIVERY, known, data.draw))
        assert t.violations() == []

    prop()
    violations = t.violations()
    report("bad-input/sms-delivery", t, violations)
    assert violations == []


def test_session_end_notices_with_generated_bodies(target):
    t = target
    known = {"sessionId": st.one_of(st.just(t.dropped), st.text(max_size=40)),
             "status": st.one_of(st.sampled_from(["Success", "Incomplete", "Failed"]), ANY_TEXT),
             "phoneNumber": st.sampled_from(CITIZENS), "hopsCount": st.sampled_from(["1", "-3", "x"]),
             "durationInMillis": st.sampled_from(["0", "41000", "1e9"])}

    @SETTINGS
    @given(st.data())
    def prop(data):
        post_and_judge(t, EVENTS, body_of(EVENTS, known, data.draw))
        assert t.violations() == []

    prop()
    worker.work(t.services.config, concurrency=2, burst=True, services=t.services)
    violations = check(t.services.redis, sent=t.fake.requests).violations + code_violations(t.services.redis)
    report("bad-input/ussd-events", t, violations)
    assert violations == []


def readable_form(data: bytes) -> list[tuple[str, str]]:
    """The fields of a form body as the app reads them: none when it is not UTF-8."""
    try:
        return urllib.parse.parse_qsl(data.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        return []


def test_a_body_that_is_not_a_form_is_refused_naming_a_field(target):
    """JSON, raw bytes, invalid UTF-8, no body at all: 400 naming the first required field."""
    t = target
    bodies = [(b'{"sessionId": "x", "from": "x"}', "application/json"), (b"", FORM),
              (b"\xff\xfe\x00sessionId=\xff&id=\xc3", FORM), (b"sessionId", FORM), (b"=&=&&", FORM),
              (b"%%%", FORM), (b"sessionId=a&id=b&" * 1500, FORM), (b"from=%2B&id=%ZZ", FORM)]
    sent = 0
    for contract in (USSD, EVENTS, SMS_IN, DELIVERY):
        for data, content_type in bodies:
            as_form = readable_form(data) if content_type == FORM else []
            response = t.client.post(contract.path, data=data, content_type=content_type)
            sent += 1
            assert response.status_code == 400, (contract.path, data[:40], response.status_code)
            named = re.search(r"field '([^']+)'", response.get_data(as_text=True))
            assert named and named.group(1) in faults_of(contract, as_form), response.data
    # a body over the size limit is refused before it is read: 413, nothing stored
    huge = urllib.parse.urlencode({"sessionId": "x", "text": "1" * 70_000}).encode()
    response = t.client.post(USSD.path, data=huge, content_type=FORM)
    sent += 1
    assert response.status_code == 413, response.status_code
    violations = t.violations()
    figures("bad-input/not-a-form", faults=sent, requests_sent=sent, messages=sent, violations=violations)
    assert violations == []
