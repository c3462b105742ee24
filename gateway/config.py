"""Configuration: defaults plus the GATEWAY_* environment. Nothing else reads os.environ."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Mapping

PREFIX = "GATEWAY_"


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _languages(value: str) -> tuple[str, ...]:
    langs = tuple(part.strip() for part in value.split(",") if part.strip())
    if not langs:
        raise ValueError("GATEWAY_LANGUAGES must name at least one language")
    return langs


def _quiet_hours(value: str) -> tuple[int, int]:
    start, _, end = value.partition("-")
    hours = (int(start), int(end))
    if not all(0 <= h <= 23 for h in hours):
        raise ValueError("GATEWAY_QUIET_HOURS must look like 21-08")
    return hours


def _optional_float(value: str) -> float | None:
    return float(value) if value.strip() else None


@dataclass(frozen=True)
class Config:
    """Every setting of one gateway installation; the names follow DESIGN 5.1."""

    redis_url: str = ""
    redis_cluster: bool = False
    queue_redis_url: str = ""
    data_dir: str = "./var"
    at_username: str = "sandbox"
    at_api_key: str = ""
    at_sender_id: str = ""
    at_api_url: str = ""
    sms_backend: str = ""
    sms_rate: float | None = None
    webhook_key: str = ""
    code_secret: str = ""
    simulator: bool = False
    default_region: str = "IN"
    timezone: str = "Asia/Kolkata"
    languages: tuple[str, ...] = ("en", "hi", "ur")
    ussd_code: str = "*384*123#"
    max_per_mobile: int = 4
    quiet_hours: tuple[int, int] = (21, 8)
    sms_flood_limit: int = 30
    ussd_shed_share: float = 0.0
    redis_timeout: float = 0.5
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def effective_sms_backend(self) -> str:
        """`outbox` keeps messages locally; it is the default when no API key is set."""
        if self.sms_backend:
            return self.sms_backend
        return "africastalking" if self.at_api_key else "outbox"

    def with_overrides(self, **changes) -> "Config":
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "Config":
        """Read GATEWAY_* variables; keyword overrides win (used by tests and the CLI)."""
        env = os.environ if environ is None else environ
        parsers = {
            "redis_cluster": _bool,
            "simulator": _bool,
            "sms_rate": _optional_float,
            "languages": _languages,
            "max_per_mobile": int,
            "quiet_hours": _quiet_hours,
            "sms_flood_limit": int,
            "ussd_shed_share": float,
            "redis_timeout": float,
        }
        values = {}
        for f in fields(cls):
            if f.name == "extra":
                continue
            raw = env.get(PREFIX + f.name.upper())
            if raw is None:
                continue
            try:
                values[f.name] = parsers.get(f.name, str)(raw)
            except ValueError as exc:
                raise ValueError(f"{PREFIX}{f.name.upper()}: {exc}") from None
        values.update(overrides)
        return cls(**values)

    @property
    def queue_url(self) -> str:
        return self.queue_redis_url or self.redis_url


def get_env(name: str, default: str = "") -> str:
    """For the few non-GATEWAY variables the shell needs (PORT for `web`)."""
    return os.environ.get(name, default)
