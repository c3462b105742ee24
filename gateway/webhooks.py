"""The four Africa's Talking webhooks (DESIGN 4.1): check the key, validate, hand over, answer."""
from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl

from flask import Blueprint, Response, current_app, g, request
from redis.exceptions import ClusterDownError, RedisClusterException
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError as RedisReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError
from werkzeug.exceptions import HTTPException

from . import conversation, metrics
from .logs import log_event
from .phones import InvalidPhone, normalise

bp = Blueprint("webhooks", __name__)

MAX_FIELD = 1000
BUSY = "Service busy, please try again later."
# a primary that just became a replica refuses writes (READONLY): as good as down for us; a
# cluster with a master down, or no node reachable, is down for the keys it cannot serve
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, RedisReadOnlyError, ClusterDownError,
              RedisClusterException)


@dataclass(frozen=True)
class Form:
    """A webhook's fields: required ones must be present, phones must parse."""

    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    may_be_empty: tuple[str, ...] = ()


USSD = Form(required=("sessionId", "serviceCode", "phoneNumber", "text"), optional=("networkCode",),
            phones=("phoneNumber",), may_be_empty=("text",))
USSD_EVENT = Form(required=("sessionId", "status"),
                  optional=("phoneNumber", "durationInMillis", "hopsCount", "input", "lastAppResponse",
                            "errorMessage", "networkCode", "cost", "date", "serviceCode"),
                  phones=("phoneNumber",))
SMS_IN = Form(required=("from", "id", "text"), optional=("to", "date", "linkId", "networkCode", "cost"),
              phones=("from",), may_be_empty=("text",))
DELIVERY = Form(required=("id", "status"), optional=("phoneNumber", "networkCode", "failureReason", "retryCount"),
                phones=("phoneNumber",))


class BadRequest(Exception):
    """A malformed webhook; the message names the field."""


def services():
    return current_app.extensions["teeka"]


FORM_TYPE = "application/x-www-form-urlencoded"  # what Africa's Talking posts


def form_fields() -> dict[str, str]:
    """The request's form fields (the first value of each), read once per request.

    Africa's Talking posts urlencoded bodies: those are split here with the standard library,
    for about 40% less than Werkzeug's general form parser, which still reads any other body.
    A body over MAX_CONTENT_LENGTH raises 413, as `request.form` does.
    """
    fields = g.get("webhook_form")
    if fields is None:
        if request.mimetype == FORM_TYPE:
            fields = {}
            for name, value in parse_qsl(request.get_data(as_text=True), keep_blank_values=True):
                fields.setdefault(name, value)
        else:
            fields = request.form.to_dict()
        g.webhook_form = fields
    return fields


def parse(form: Form) -> dict[str, str]:
    """The known fields of the request, phones in E.164; raises BadRequest naming the field."""
    values: dict[str, str] = {}
    given = form_fields()
    for name in form.required + form.optional:
        value = given.get(name)
        if value is None or (value == "" and name not in form.may_be_empty):
            if name in form.required:
                raise BadRequest(f"field '{name}' required")
            continue
        if len(value) > MAX_FIELD:
            raise BadRequest(f"field '{name}' longer than {MAX_FIELD} characters")
        values[name] = value
    region = services().config.default_region
    for name in form.phones:
        if name in values:
            try:
                values[name] = normalise(values[name], region)
            except InvalidPhone:
                raise BadRequest(f"field '{name}' is not a phone number") from None
    return values


def plain(body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="text/plain")


@bp.before_request
def check_key():
    g.webhook_started = time.perf_counter()
    key = services().config.webhook_key
    if not key:
        return None
    given = request.args.get("key") or request.headers.get("X-Webhook-Key") or ""
    if not hmac.compare_digest(given.encode(), key.encode()):
        g.webhook_reason = "webhook key missing or wrong"
        return plain(g.webhook_reason, 403)
    return None


@bp.after_request
def log_request(response: Response) -> Response:
    req = request._get_current_object()  # one context lookup instead of one per use
    try:
        form = form_fields()
    except HTTPException:  # a body too large to read: already answered 413
        form = {}
    seconds = time.perf_counter() - g.get("webhook_started", time.perf_counter())
    rule = req.url_rule
    endpoint = rule.rule if rule else req.path
    metrics.after_response(response, services().redis, endpoint, seconds)
    log_event("webhook", path=req.path, status=response.status_code,
              ms=round(seconds * 1000, 1),
              session=form.get("sessionId"), id=form.get("id"),
              phone=form.get("phoneNumber") or form.get("from"), reason=g.get("webhook_reason"))
    return response


@bp.errorhandler(BadRequest)
def bad_request(error: BadRequest):
    g.webhook_reason = str(error)
    return plain(str(error), 400)


@bp.errorhandler(RedisConnectionError)
@bp.errorhandler(RedisTimeoutError)
@bp.errorhandler(RedisReadOnlyError)
@bp.errorhandler(ClusterDownError)
@bp.errorhandler(RedisClusterException)
def redis_down(error: Exception):
    g.webhook_reason = "redis unavailable"
    log_event("redis_unavailable", level=logging.WARNING, path=request.path,
              error=type(error).__name__, session=form_fields().get("sessionId"))
    if request.endpoint == "webhooks.ussd":
        return plain(f"END {BUSY}")
    return plain("service unavailable, retry later", 503)


@bp.post("/ussd")
def ussd():
    f = parse(USSD)
    later = []  # the hop's SMS jobs (a booking slip): queued once the screen is sent
    screen, end = conversation.handle_ussd(services(), f["sessionId"], f["phoneNumber"], f["text"],
                                           f["serviceCode"], f.get("networkCode", ""),
                                           after=later.append)
    response = plain(("END " if end else "CON ") + screen)
    for task in later:
        response.call_on_close(task)  # the server calls it after writing the response
    return response


@bp.post("/ussd/events")
def ussd_events():
    f = parse(USSD_EVENT)
    conversation.handle_ussd_event(services(), f)  # Redis down: 503, the notice is retried
    return plain("OK")


@bp.post("/sms/incoming")
def sms_incoming():
    f = parse(SMS_IN)
    conversation.handle_sms(services(), f["from"], f["text"], f["id"], f.get("to", ""))
    return plain("OK")


@bp.post("/sms/delivery")
def sms_delivery():
    f = parse(DELIVERY)
    from . import outbox  # written alongside; imported here so the webhooks load without it

    retry = f.get("retryCount", "")
    outbox.apply_delivery_report(
        services(), provider_id=f["id"], status=f["status"], failure_reason=f.get("failureReason", ""),
        phone=f.get("phoneNumber", ""), network_code=f.get("networkCode", ""),
        retry_count=int(retry) if retry.isdigit() else None)
    return plain("OK")
