"""Security codes: 4 digits derived by HMAC from a server secret and a random nonce.

The plain code is never stored: an appointment keeps only its nonce, and the code is the HMAC
of (ref, nonce) under GATEWAY_CODE_SECRET reduced to 4 digits. Without the secret a copy of
the database reveals no code; with it the shell can show and resend the code.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets

CODE_MASK = "####"  # stands in for the code in stored message bodies


def new_nonce() -> str:
    return secrets.token_hex(8)


def derive(secret: str, ref: str, nonce: str) -> str:
    digest = hmac.new(secret.encode(), f"code:{ref}:{nonce}".encode(), hashlib.sha256).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 10000:04d}"


def matches(secret: str, ref: str, nonce: str, typed: str) -> bool:
    """Constant-time comparison of a typed code with the appointment's code."""
    return hmac.compare_digest(derive(secret, ref, nonce), typed.strip())


def fill(body: str, code_at: int, code: str) -> str:
    """Put the real code where the stored body carries the mask."""
    if code_at < 0 or body[code_at : code_at + len(CODE_MASK)] != CODE_MASK:
        raise ValueError("message body has no code mask at the recorded offset")
    return body[:code_at] + code + body[code_at + len(CODE_MASK) :]
