"""The Africa's Talking adapter: the only place that imports the `africastalking` SDK.

It turns every way the SDK can answer into one `SendResult`: a dict (only when the provider's
content type is exactly `application/json`) or a string that is JSON; an
`AfricasTalkingException` carrying the body of a non-2xx answer (the HTTP status is not
exposed; a wrong key reads "The supplied authentication is invalid"); raw `requests`
exceptions for timeouts and refused connections; a 2xx with no recipient rows (an account
error such as InvalidSenderId). What to do about each answer is decided in `jobs.py`.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import requests
from africastalking.SMS import SMSService
from africastalking.Service import AfricasTalkingException

from .config import Config

log = logging.getLogger(__name__)

# (connect, read) seconds; the SDK's own default is (3.05, 9.05), AT usually answers in < 2 s
DEFAULT_TIMEOUT = (3.05, 10.0)
AUTH_FAILED = "The supplied authentication is invalid"

# SendResult.error values
TIMEOUT = "timeout"  # the request was written, no answer in time: it may have been sent
CONNECT = "connect"  # the request never reached the provider
HTTP = "http"  # a non-2xx answer other than an authentication failure
AUTH = "auth"  # the provider refused the username/API key (HTTP 401)
NO_RECIPIENTS = "no_recipients"  # a 2xx without recipient rows: an account-level error
MALFORMED = "malformed"  # a 2xx we cannot read
INVALID_NUMBER = "invalid_number"  # the SDK refused the number before any HTTP


@dataclass(frozen=True)
class Recipient:
    """One row of the provider's answer: its status for one number."""

    number: str
    status_code: int
    status: str
    message_id: str
    cost: str = ""
    parts: int = 0


@dataclass(frozen=True)
class SendResult:
    """The provider's answer to one send, or why there is none."""

    recipients: tuple[Recipient, ...] = ()
    summary: str = ""  # SMSMessageData.Message, e.g. "Sent to 1/1 Total Cost: KES 0.8000"
    error: str = ""
    detail: str = ""  # short, never the message body

    def recipient(self, number: str) -> Recipient | None:
        """The row for `number` (or the only row: the provider may reformat the number)."""
        for row in self.recipients:
            if row.number == number:
                return row
        return self.recipients[0] if len(self.recipients) == 1 else None


class AfricasTalking:
    """Sends one SMS through the SDK's SMSService, built per adapter (no SDK globals)."""

    def __init__(self, username: str, api_key: str, sender_id: str = "", api_url: str = "",
                 timeout: tuple[float, float] = DEFAULT_TIMEOUT):
        self._sms = SMSService(username, api_key)
        if api_url:
            # The SDK has no base-URL option; its private attribute is the documented way in.
            self._sms._baseUrl = api_url.rstrip("/") + "/version1"
        self._sender_id = sender_id or None
        self.timeout = timeout

    @classmethod
    def from_config(cls, config: Config, timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> "AfricasTalking":
        return cls(config.at_username, config.at_api_key, config.at_sender_id, config.at_api_url, timeout)

    @property
    def endpoint(self) -> str:
        return self._sms._baseUrl + "/messaging"

    def send(self, to: str, body: str) -> SendResult:
        """Send `body` to one E.164 number; never raises for a provider or network failure."""
        try:
            answer = self._sms.send(body, [to], sender_id=self._sender_id, timeout=self.timeout)
        except ValueError:
            return SendResult(error=INVALID_NUMBER, detail="number refused by the SDK")
        except AfricasTalkingException as exc:
            text = str(exc).strip()
            if text.startswith(AUTH_FAILED):
                return SendResult(error=AUTH, detail=AUTH_FAILED)
            return SendResult(error=HTTP, detail=text[:200])
        except requests.exceptions.ConnectTimeout:
            return SendResult(error=CONNECT, detail="connect timeout")
        except requests.exceptions.Timeout:
            return SendResult(error=TIMEOUT, detail="read timeout")
        except requests.exceptions.ConnectionError as exc:
            return SendResult(error=CONNECT, detail=type(exc).__name__)
        except requests.exceptions.RequestException as exc:
            return SendResult(error=HTTP, detail=type(exc).__name__)
        return parse_answer(answer)


def parse_answer(answer: dict | str) -> SendResult:
    """Read a 2xx answer, given as a dict or (other content types) as a JSON string."""
    if isinstance(answer, str):
        try:
            answer = json.loads(answer)
        except ValueError:
            return SendResult(error=MALFORMED, detail="answer is not JSON")
    try:
        data = answer["SMSMessageData"]
        summary = str(data.get("Message", ""))
        rows = data.get("Recipients") or []
        recipients = tuple(
            Recipient(
                number=str(row.get("number", "")),
                status_code=int(row["statusCode"]),
                status=str(row.get("status", "")),
                message_id=str(row.get("messageId", "")),
                cost=str(row.get("cost", "")),
                parts=int(row.get("messageParts") or 0),
            )
            for row in rows
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return SendResult(error=MALFORMED, detail="unexpected answer shape")
    if not recipients:
        return SendResult(summary=summary, error=NO_RECIPIENTS, detail=summary[:200])
    return SendResult(recipients=recipients, summary=summary)
