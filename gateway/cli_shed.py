"""Operator command: `shed [percent]`, the share of new USSD sessions told to try again later."""
from __future__ import annotations

import sys

from .cli import arg, command
from .config import Config
from .services import build


def _percent(value: str) -> float:
    return float(value.strip().rstrip("%"))


def _show(share: float) -> str:
    return f"{share * 100:g}%"


@command("shed", "show or set the share of new USSD sessions answered 'busy, try again'",
         arg("percent", nargs="?", default=None,
             help="0-100 (e.g. 30 or 30%%); 'default' goes back to GATEWAY_USSD_SHED_SHARE"))
def shed(args, config: Config) -> int:
    """On launch days, answer a share of NEW USSD sessions "busy, please try again in 15
    minutes"; sessions under way always continue. Every web process follows a change within
    about a second, without a restart. Without an argument, show the share in force."""
    from . import shedding

    services = build(config)
    try:
        r = services.redis
        configured = shedding.parse_share(config.ussd_shed_share)
        if args.percent is None:
            stored = shedding.stored_share(r)
            if stored is None:
                print(f"load shedding: {_show(configured)} of new USSD sessions "
                      "(GATEWAY_USSD_SHED_SHARE; no operator setting)")
            else:
                print(f"load shedding: {_show(shedding.parse_share(stored))} of new USSD sessions "
                      "(set with `shed`)")
            return 0
        if args.percent.strip().lower() == "default":
            shedding.set_share(r, None)
            print(f"load shedding: operator setting removed; {_show(configured)} of new USSD "
                  "sessions (GATEWAY_USSD_SHED_SHARE), in force within a second")
            return 0
        try:
            percent = _percent(args.percent)
        except ValueError:
            percent = -1.0
        if not 0 <= percent <= 100:
            print(f"error: percent must be a number from 0 to 100, not {args.percent!r}",
                  file=sys.stderr)
            return 2
        before = shedding.parse_share(shedding.stored_share(r) or configured)
        shedding.set_share(r, percent / 100)
        after = shedding.parse_share(shedding.stored_share(r))
        print(f"load shedding: {_show(before)} -> {_show(after)} of new USSD sessions answered "
              "'busy, please try again in 15 minutes', in force within a second; "
              "sessions under way continue")
        return 0
    finally:
        services.redis.close()
        services.queue_redis.close()
