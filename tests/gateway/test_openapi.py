"""docs/openapi.yaml is a valid OpenAPI document, and the running app keeps to it: every
request it accepts or refuses, and every answer it gives, as the document says."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_spec_validator import validate
from rq import Worker
from werkzeug.test import EnvironBuilder

from gateway import create_app, webhooks
from gateway.services import QUEUE_NAMES
from tests.conftest import data_keys, free_port

SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
SPEC = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
API = OpenAPI.from_dict(SPEC)
FORM = "application/x-www-form-urlencoded"
KEY = "openapi-Key_1"
# Pages for operators and people trying Teeka, not part of the partners' contract.
NOT_DOCUMENTED = ("/metrics", "/simulator", "/static")
FORMS = {"/ussd": webhooks.USSD, "/ussd/events": webhooks.USSD_EVENT,
         "/sms/incoming": webhooks.SMS_IN, "/sms/delivery": webhooks.DELIVERY}


def resolve(node: dict) -> dict:
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = {**SPEC["components"]["schemas"][name], **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def body_schema(path: str) -> dict:
    return resolve(SPEC["paths"][path]["post"]["requestBody"]["content"][FORM]["schema"])


def is_phone(path: str, field: str) -> bool:
    return body_schema(path)["properties"][field].get("$ref", "").endswith("/PhoneNumber")


def examples(path: str) -> dict[str, dict]:
    content = SPEC["paths"][path]["post"]["requestBody"]["content"][FORM]
    return {name: example["value"] for name, example in content["examples"].items()}


def first_example(path: str) -> dict:
    return next(iter(examples(path).values()))


WEBHOOK_PATHS = [p for p, item in SPEC["paths"].items() if "post" in item]
FIELDS = [(p, f) for p in WEBHOOK_PATHS for f in body_schema(p)["properties"]]
REQUIRED = [(p, f) for p in WEBHOOK_PATHS for f in body_schema(p)["required"]]
OPTIONAL = [(p, f) for p, f in FIELDS if (p, f) not in REQUIRED]
EXAMPLES = [(p, name) for p in WEBHOOK_PATHS for name in examples(p)]


class Exchange:
    """One request to the app, checked against the document on the way in and out."""

    def __init__(self, client, path: str, method: str = "POST", data: dict | None = None,
                 query: dict | None = None, headers: dict | None = None):
        def build():
            return EnvironBuilder(path=path, method=method, data=data, query_string=query, headers=headers)

        request = WerkzeugOpenAPIRequest(build().get_request())
        self.response = client.open(build())
        self.request_result = API.unmarshal_request(request)
        self.response_result = API.unmarshal_response(request, WerkzeugOpenAPIResponse(self.response))

    @property
    def status(self) -> int:
        return self.response.status_code

    @property
    def text(self) -> str:
        return self.response.get_data(as_text=True)

    def documented(self) -> None:
        """The answer's status, content type and body are ones the document lists for this request."""
        assert not self.response_result.errors, \
            f"{self.status} {self.response.mimetype} {self.text!r}: {self.response_result.errors!r}"

    def valid_request(self) -> None:
        assert not self.request_result.errors, repr(self.request_result.errors)

    def invalid_request(self) -> None:
        assert self.request_result.errors, "the document accepts a request the app refuses"


def post(client, path: str, data: dict, **kwargs) -> Exchange:
    return Exchange(client, path, data=data, **kwargs)


# ---- the document itself ----

def test_the_document_is_valid_openapi():
    validate(SPEC)
    assert SPEC["openapi"].startswith("3.")


def test_the_document_describes_every_route_of_the_app_and_no_other(app):
    routes = {(rule.rule, method.lower()) for rule in app.url_map.iter_rules()
              for method in rule.methods - {"HEAD", "OPTIONS"}
              if not rule.rule.startswith(NOT_DOCUMENTED)}
    documented = {(path, method) for path, item in SPEC["paths"].items() for method in item}
    assert routes == documented


@pytest.mark.parametrize("path", WEBHOOK_PATHS)
def test_the_document_lists_exactly_the_fields_the_app_reads(path):
    form, schema = FORMS[path], body_schema(path)
    assert set(schema["required"]) == set(form.required)
    assert set(schema["properties"]) == set(form.required) | set(form.optional)
    assert {f for f in schema["properties"] if is_phone(path, f)} == set(form.phones)
    may_be_empty = {f for f in schema["required"] if "minLength" not in resolve(schema["properties"][f])}
    assert may_be_empty == set(form.may_be_empty)
    assert all(resolve(p)["maxLength"] == webhooks.MAX_FIELD for p in schema["properties"].values())


def test_webhooks_take_the_key_in_the_query_or_a_header_and_health_checks_need_none():
    schemes = SPEC["components"]["securitySchemes"]
    assert {(s["in"], s["name"]) for s in schemes.values()} == {("query", "key"), ("header", "X-Webhook-Key")}
    for path in WEBHOOK_PATHS:
        assert "security" not in SPEC["paths"][path]["post"]  # the document-wide key applies
    assert SPEC["paths"]["/healthz"]["get"]["security"] == []
    assert SPEC["paths"]["/readyz"]["get"]["security"] == []


# ---- valid requests ----

@pytest.mark.parametrize("path, name", EXAMPLES)
def test_each_example_of_the_document_is_answered_as_documented(client, path, name):
    exchange = post(client, path, examples(path)[name])
    exchange.valid_request()
    assert exchange.status == 200
    exchange.documented()


def test_the_first_ussd_hop_answers_the_screen_the_document_shows(client):
    exchange = post(client, "/ussd", examples("/ussd")["firstHop"])
    shown = SPEC["paths"]["/ussd"]["post"]["responses"]["200"]["content"]["text/plain"]["examples"]
    assert exchange.text == shown["languageMenu"]["value"]
    assert exchange.response.mimetype == "text/plain"


@pytest.mark.parametrize("path, field", OPTIONAL)
def test_an_optional_field_may_be_left_out(client, path, field):
    data = {k: v for k, v in first_example(path).items() if k != field}
    exchange = post(client, path, data)
    exchange.valid_request()
    assert exchange.status == 200
    exchange.documented()


@pytest.mark.parametrize("path, field", [(p, f) for p, f in FIELDS if not is_phone(p, f)])
def test_a_field_of_1000_characters_is_accepted(client, path, field):
    exchange = post(client, path, dict(first_example(path), **{field: "7" * 1000}))
    exchange.valid_request()
    assert exchange.status == 200
    exchange.documented()


@pytest.mark.parametrize("path", WEBHOOK_PATHS)
def test_a_field_the_document_does_not_list_is_ignored(client, path):
    exchange = post(client, path, dict(first_example(path), somethingNew="x"))
    exchange.valid_request()
    assert exchange.status == 200
    exchange.documented()


# ---- invalid requests ----

@pytest.mark.parametrize("path, field", REQUIRED)
def test_a_request_without_a_required_field_is_refused_as_documented(client, rdb, path, field):
    data = {k: v for k, v in first_example(path).items() if k != field}
    exchange = post(client, path, data)
    exchange.invalid_request()
    assert exchange.status == 400 and exchange.text == f"field '{field}' required"
    exchange.documented()
    assert data_keys(rdb) == []


@pytest.mark.parametrize("path, field", FIELDS)
def test_a_field_over_1000_characters_is_refused_as_documented(client, rdb, path, field):
    exchange = post(client, path, dict(first_example(path), **{field: "7" * 1001}))
    exchange.invalid_request()
    assert exchange.status == 400 and exchange.text == f"field '{field}' longer than 1000 characters"
    exchange.documented()
    assert data_keys(rdb) == []


@pytest.mark.parametrize("path, field", [(p, f) for p, f in FIELDS if is_phone(p, f)])
def test_a_phone_field_that_does_not_parse_is_refused_as_documented(client, rdb, path, field):
    exchange = post(client, path, dict(first_example(path), **{field: "call me"}))
    assert exchange.status == 400 and exchange.text == f"field '{field}' is not a phone number"
    exchange.documented()
    assert data_keys(rdb) == []


@pytest.mark.parametrize("path", WEBHOOK_PATHS)
def test_a_request_over_64_kib_is_refused_as_documented(client, path):
    exchange = post(client, path, dict(first_example(path), somethingNew="x" * 70_000))
    assert exchange.status == 413
    exchange.documented()


# ---- the webhook key ----

@pytest.fixture
def keyed(app_config, rdb):
    app = create_app(app_config.with_overrides(webhook_key=KEY))
    yield app.test_client()
    app.extensions["teeka"].redis.close()
    app.extensions["teeka"].queue_redis.close()


@pytest.mark.parametrize("path", WEBHOOK_PATHS)
def test_the_key_is_taken_in_the_query_as_documented(keyed, path):
    exchange = post(keyed, path, first_example(path), query={"key": KEY})
    assert exchange.request_result.security == {"webhookKeyQuery": KEY}
    assert exchange.status == 200
    exchange.documented()


@pytest.mark.parametrize("path", WEBHOOK_PATHS)
def test_the_key_is_taken_in_a_header_as_documented(keyed, path):
    exchange = post(keyed, path, first_example(path), headers={"X-Webhook-Key": KEY})
    assert exchange.request_result.security == {"webhookKeyHeader": KEY}
    assert exchange.status == 200
    exchange.documented()


@pytest.mark.parametrize("path", WEBHOOK_PATHS)
@pytest.mark.parametrize("how", ["missing", "wrong"])
def test_without_the_key_the_answer_is_the_documented_403(keyed, rdb, path, how):
    query = {"key": KEY + "x"} if how == "wrong" else None
    exchange = post(keyed, path, first_example(path), query=query)
    assert exchange.status == 403
    exchange.documented()
    assert data_keys(rdb) == []


# ---- Redis down ----

@pytest.fixture
def down(app_config):
    """An app whose Redis port has nobody listening."""
    return create_app(app_config.with_overrides(redis_url=f"redis://127.0.0.1:{free_port()}/0")).test_client()


def test_ussd_answers_the_documented_busy_screen_when_redis_is_down(down):
    exchange = post(down, "/ussd", first_example("/ussd"))
    assert exchange.status == 200
    shown = SPEC["paths"]["/ussd"]["post"]["responses"]["200"]["content"]["text/plain"]["examples"]
    assert exchange.text == shown["busy"]["value"]
    exchange.documented()


@pytest.mark.parametrize("path", [p for p in WEBHOOK_PATHS if p != "/ussd"])
def test_other_webhooks_answer_the_documented_503_when_redis_is_down(down, path):
    exchange = post(down, path, first_example(path))
    assert exchange.status == 503
    exchange.documented()


def test_readyz_answers_the_documented_503_when_redis_is_down(down):
    exchange = Exchange(down, "/readyz", method="GET")
    assert exchange.status == 503
    exchange.documented()


# ---- health checks ----

def test_healthz_is_answered_as_documented(client):
    exchange = Exchange(client, "/healthz", method="GET")
    assert exchange.status == 200
    exchange.valid_request()
    exchange.documented()


def test_readyz_without_a_worker_is_the_documented_503(client):
    exchange = Exchange(client, "/readyz", method="GET")
    assert exchange.status == 503
    exchange.documented()


def test_readyz_with_a_worker_is_the_documented_200(app, client):
    services = app.extensions["teeka"]
    worker = Worker([services.queue(name) for name in QUEUE_NAMES], connection=services.queue_redis)
    worker.register_birth()
    try:
        exchange = Exchange(client, "/readyz", method="GET")
    finally:
        worker.register_death()
    assert exchange.status == 200
    exchange.documented()


def test_an_undocumented_answer_would_be_caught(client):
    """The checker itself: a 200 for a request the document says must be refused is an error."""
    exchange = post(client, "/sms/delivery", {"id": "ATXid_1", "status": "Success"})
    assert exchange.status == 200
    exchange.documented()
    other = API.unmarshal_response(
        WerkzeugOpenAPIRequest(EnvironBuilder(path="/sms/delivery", method="POST").get_request()),
        WerkzeugOpenAPIResponse(client.post("/ussd", data=first_example("/ussd"))))
    assert other.errors, "a USSD screen is not a documented answer of /sms/delivery"
