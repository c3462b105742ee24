"""The network side of a test: the gateway served over real HTTP, a phone that dials USSD and
sends SMS the way Africa's Talking delivers them, and helpers to read screens and messages."""
from __future__ import annotations

import re
import secrets
import threading
import urllib.parse

import requests
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from .fake_at import FORM

REF_RE = re.compile(r"Ref (\d{5} \d{5})")
CODE_RE = re.compile(r"Code (\d{4})")
CERT_RE = re.compile(r"Cert (\d{4} \d{4} \d{4})")


def closed_before_sent(app):
    """`app`, with what it leaves for after a response (its close(): the booking SMS's job)
    run before the response goes out. A server runs it a moment after sending; a test that
    has the answer in hand then finds the job already queued instead of racing it."""

    def wsgi(environ, start_response):
        body = app(environ, start_response)
        try:
            return list(body)
        finally:
            if hasattr(body, "close"):
                body.close()

    return wsgi


class ServerLikeClient(FlaskClient):
    """Flask's test client, closing each response as a server does once it has sent it, so
    what the app runs then (the booking SMS's job) has run when the test reads the answer.
    Set it as an app's `test_client_class`."""

    def open(self, *args, buffered: bool = True, **kwargs):
        return super().open(*args, buffered=buffered, **kwargs)


class LiveServer:
    """A Flask app on a real loopback port, in a thread."""

    def __init__(self, app):
        self._server = make_server("127.0.0.1", 0, closed_before_sent(app), threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "LiveServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()


class Phone:
    """A handset: dials USSD (text accumulates, joined by `*`) and sends SMS by webhook."""

    def __init__(self, base_url: str, number: str, key: str = ""):
        self.base_url, self.number, self.key = base_url, number, key
        self.session_id = ""
        self.inputs: list[str] = []
        self.screen = ""

    def _post(self, path: str, fields: dict) -> requests.Response:
        params = {"key": self.key} if self.key else None
        return requests.post(self.base_url + path, params=params, timeout=10,
                             data=urllib.parse.urlencode(fields), headers={"Content-Type": FORM})

    def dial(self, service_code: str = "*384*123#") -> str:
        self.session_id = "ATUid_" + secrets.token_hex(16)
        self.inputs = []
        self.service_code = service_code
        return self._hop()

    def answer(self, text: str) -> str:
        self.inputs.append(text)
        return self._hop()

    def _hop(self) -> str:
        response = self._post("/ussd", {
            "sessionId": self.session_id, "serviceCode": self.service_code,
            "phoneNumber": self.number, "networkCode": "99999", "text": "*".join(self.inputs),
        })
        assert response.status_code == 200, response.text
        assert response.text.startswith(("CON ", "END ")), response.text
        self.screen = response.text
        return response.text

    @property
    def ended(self) -> bool:
        return self.screen.startswith("END ")

    def sms(self, text: str, message_id: str | None = None) -> requests.Response:
        return self._post("/sms/incoming", {
            "from": self.number, "to": "12345", "text": text,
            "id": message_id or secrets.token_hex(16), "networkCode": "99999",
            "date": "2026-11-26 10:00:00",
        })


def option(screen: str, label_part: str) -> str:
    """The number in front of the first line of a screen that contains `label_part`."""
    for line in screen.splitlines():
        match = re.match(r"^(?:CON |END )?(\d+)[ .)]+(.*)$", line)
        if match and label_part in match.group(2):
            return match.group(1)
    raise AssertionError(f"no option {label_part!r} on screen:\n{screen}")
