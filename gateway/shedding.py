"""Load shedding for launch days: a share of NEW USSD sessions is told to try again later.

The share lives in Redis (`keys.settings()`, field `ussd_shed_share`, a fraction 0..1) so an
operator changes it without a restart (`python -m gateway shed <percent>`); without it the
configured GATEWAY_USSD_SHED_SHARE applies. Each process keeps the value for a second, so a
hop pays no round trip for it. Whether a session is shed follows from a hash of its
sessionId, so a repeated first hop gets the same answer; a session already under way is
never shed (nor does its hop look at the share), and at a share of 0 nothing more is read.
"""
from __future__ import annotations

import hashlib
import time
import weakref

from flows.base import Reply

from . import keys

FIELD = "ussd_shed_share"
TEMPLATE = "ussd/shed"
CACHE_SECONDS = 1.0
BUCKETS = 10_000  # the share's resolution: 0.01 %

# data client -> (share, read at); one entry per app, gone with its client
_cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def parse_share(raw) -> float:
    """A stored or configured share as a fraction clamped to 0..1; unreadable means 0."""
    try:
        share = float(raw)
    except (TypeError, ValueError):
        return 0.0
    return min(max(share, 0.0), 1.0) if share == share else 0.0  # NaN is no share


def stored_share(r) -> str | None:
    """The operator's setting as stored, or None when none is set."""
    return r.hget(keys.settings(), FIELD)


def set_share(r, share: float | None) -> None:
    """Store the operator's share (a fraction); None removes it, so the config applies again."""
    if share is None:
        r.hdel(keys.settings(), FIELD)
    else:
        r.hset(keys.settings(), FIELD, repr(parse_share(share)))


def current_share(services) -> float:
    """The share in force, read from Redis at most once a second per process."""
    r = services.redis
    now = time.monotonic()
    held = _cache.get(r)
    if held is not None and now - held[1] < CACHE_SECONDS:
        return held[0]
    raw = stored_share(r)
    share = parse_share(services.config.ussd_shed_share if raw is None else raw)
    _cache[r] = (share, now)
    return share


def falls_in(session_id: str, share: float) -> bool:
    """Whether a session's hash lands in the shed share (the same answer every time)."""
    digest = hashlib.blake2b(session_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS < round(share * BUCKETS)


def shed_screen(services, session_id: str, phone: str, text: str) -> str | None:
    """The "busy, try again in 15 minutes" screen when this hop opens a session to be shed,
    else None (the hop goes on as usual).

    Only a first hop (empty `text`) can open a session; any later hop returns at once.
    """
    if text:
        return None
    share = current_share(services)
    if share <= 0 or not falls_in(session_id, share):
        return None
    r = services.redis
    pipe = r.pipeline(transaction=False)
    pipe.exists(keys.ussd_session(phone, session_id))
    pipe.hget(keys.citizen(phone), "lang")
    under_way, lang = pipe.execute()
    if under_way:
        return None
    from . import metrics

    metrics.count_shed(r)
    languages = services.config.languages
    return services.templates.screen(Reply(TEMPLATE, end=True, nav=False),
                                     lang if lang in languages else languages[0])
