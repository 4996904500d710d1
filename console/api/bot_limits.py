"""The operator's bot policy for the replies bots post through the API (kind ``bot_api``): the
switches and limits the service's own automatic answers obey (:mod:`community.replybot`), per
channel (``bot_*`` settings, ``bot_channels`` overrides):

* ``enabled`` off (the kill switch): refused with a 423 and nothing recorded;
* ``dry_run`` (``bot_dry_run_channels``): recorded ``dry_run``, nothing sent, as the bot's own;
* ``rate_per_hour``: every bot reply of the channel in the last hour counts, API bots' included
  (:func:`community.replybot.rate_used`); at the limit a 429 with ``Retry-After``;
* the channel's pace (``incident_broadcast_per_minute``, shared with incident status replies:
  :func:`service.pacer.pace_used`): at the limit a 429 with ``Retry-After``, for a reply that
  would really go out (not in dry run, not without a connector).

A reply is checked before it is written and again once committed (:func:`over_after_write`): two
requests that passed the first check together cannot both go over a limit.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from community.replybot import ChannelPolicy, rate_used
from console.api.common import ApiError
from escalation.public_guard import platform_name
from service.pacer import pace_used

DISABLED_STATUS = 423  # Locked: the operator switched bot replies off on the channel


def policy_for(settings: Any, platform: str) -> ChannelPolicy:
    return ChannelPolicy.for_channel(settings, platform)


def refuse_if_disabled(policy: ChannelPolicy, platform: str) -> None:
    if not policy.enabled:
        raise ApiError(DISABLED_STATUS, f"bot replies are switched off on {platform_name(platform)} by the operator "
                                        "(bot_enabled): nothing was recorded or sent; a person can still answer "
                                        "in the console")


def goes_out(rt: Any, policy: ChannelPolicy, platform: str) -> bool:
    """Will a reply on this channel reach the platform (the pace counts only those)?"""
    return not (rt.settings.dry_run or policy.dry_run) and any(c.platform == platform for c in rt.connectors)


def too_many(message: str, frees_at: datetime | None, now: datetime) -> ApiError:
    """A 429 with ``Retry-After`` (whole seconds, at least 1) in the header and the body."""
    wait = max(1, math.ceil((frees_at - now).total_seconds())) if frees_at is not None else 1
    exc = ApiError(429, f"{message}: nothing was recorded or sent; try again in {wait} s", retry_after=wait)
    exc.response.headers["Retry-After"] = str(wait)
    return exc


async def check(session: Any, rt: Any, platform: str, policy: ChannelPolicy, now: datetime) -> None:
    """429 when one more bot reply on ``platform`` would go over its hourly rate or its pace."""
    used, frees_at = await rate_used(session, platform, policy.rate_per_hour, now)
    if frees_at is not None:
        raise too_many(f"the hourly rate of bot replies on {platform_name(platform)} "
                       f"({policy.rate_per_hour} an hour) is reached", frees_at, now)
    if goes_out(rt, policy, platform):
        per_minute = rt.settings.incident_broadcast_per_minute
        used, frees_at = await pace_used(session, platform, per_minute, now)
        if frees_at is not None:
            raise too_many(f"the pace of replies on {platform_name(platform)} ({per_minute} a minute) is "
                           "reached", frees_at, now)


async def over_after_write(session: Any, rt: Any, platform: str, policy: ChannelPolicy, now: datetime) -> bool:
    """Once the reply is committed (it counts itself): are the channel's limits exceeded? Then the
    reply is withdrawn; a concurrent one committed at the same moment may be too (never too many)."""
    used, _ = await rate_used(session, platform, policy.rate_per_hour, now)
    if used > policy.rate_per_hour:
        return True
    if goes_out(rt, policy, platform):
        used, _ = await pace_used(session, platform, rt.settings.incident_broadcast_per_minute, now)
        return used > rt.settings.incident_broadcast_per_minute
    return False
