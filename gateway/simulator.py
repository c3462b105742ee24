"""The feature-phone simulator at /simulator: phones in a browser page that use the webhooks.

Operator-only. `create_app` registers it only when GATEWAY_SIMULATOR is on (`run` turns it on),
because the page carries the webhook key and its inbox shows every number's messages with the
security code filled in, as the handset would receive them. Never turn it on for a public address.
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, render_template, request, url_for

from . import codes, keys, outbox, store
from .phones import InvalidPhone, normalise

bp = Blueprint("simulator", __name__, url_prefix="/simulator", static_folder="simulator_assets",
               static_url_path="/assets", template_folder="simulator_assets")

CITIZEN = "+919876500001"  # the number the citizen's phone starts with; any number can be picked
NETWORK_CODE = "99999"  # what Africa's Talking's sandbox sends as the network
MAX_VACCINATORS = 200  # offered in the vaccinator phone's number list
RECEIVED = frozenset({outbox.SENT, outbox.DELIVERED})  # the handset has it (or the provider says it went)


def services():
    return current_app.extensions["teeka"]


@bp.after_request
def no_store(response):
    # Pages and inboxes carry the webhook key and security codes: never cache them.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("")
def page():
    """The two phones, with what the page needs to talk to the webhooks."""
    return render_template("simulator.html", setup=setup(services()))


@bp.get("/api/inbox")
def inbox():
    """Every message the gateway sent one number, oldest first, as the handset shows it."""
    s = services()
    try:
        phone = normalise(request.args.get("phone", ""), s.config.default_region)
    except InvalidPhone:
        return jsonify(error="not a phone number"), 400
    return jsonify(phone=phone, messages=[handset_view(s, rec) for rec in outbox.list_for(s, phone)])


def setup(s) -> dict:
    """Settings for the page's script: where the webhooks are, their key, numbers to start with."""
    config = s.config
    return {
        "key": config.webhook_key,
        "ussdCode": config.ussd_code,
        "shortCode": config.at_sender_id or "Teeka",
        "networkCode": NETWORK_CODE,
        "backend": config.effective_sms_backend,
        "citizen": CITIZEN,
        "vaccinators": vaccinators(s),
        "received": sorted(RECEIVED),
        "urls": {name: url_for(endpoint) for name, endpoint in (
            ("ussd", "webhooks.ussd"), ("ussdEvents", "webhooks.ussd_events"),
            ("smsIncoming", "webhooks.sms_incoming"), ("inbox", "simulator.inbox"))},
    }


def vaccinators(s) -> list[dict]:
    """The active registered vaccinators, by phone number."""
    phones = sorted(s.redis.smembers(keys.vaccinators()))[:MAX_VACCINATORS]
    found = (store.load_vaccinator(s.redis, phone) for phone in phones)
    return [{"phone": v.phone, "name": v.name, "centre": v.centre_id} for v in found if v and v.active]


def handset_view(s, rec: dict) -> dict:
    """A message record as the phone shows it: the real text, and where delivery stands."""
    return {
        "id": rec.get("id", ""),
        "text": real_text(s, rec),
        "status": rec.get("status", ""),
        "purpose": rec.get("purpose", ""),
        "segments": int(rec.get("segments") or 1),
        "created": float(rec.get("created") or 0),
        "sent": float(rec.get("sent_at") or 0),
        "delivered": float(rec.get("delivered_at") or 0),
        "error": rec.get("errors", ""),
    }


def real_text(s, rec: dict) -> str:
    """The body with the security code where the record keeps its mask."""
    body = rec.get("body", "")
    if not rec.get("code_of"):
        return body
    try:
        return codes.fill(body, int(rec.get("code_at") or -1), store.code_for(s, rec["code_of"]))
    except (LookupError, ValueError):  # the appointment is gone or the record is odd: keep the mask
        return body
