"""Who did something, as a person reads it: the audit trail stores "session:mod1", "token:triagebot",
"bot" or "detector" (exact, for the log and filters); the console says "mod1", "a bot (triagebot)",
"the service"."""

from __future__ import annotations

SERVICE = frozenset({"bot", "system", "detector", "service", "worker", "scheduler", "sweeper", "retention"})


def actor_name(actor: str | None) -> str:
    """A stored actor string in words; an unknown form is shown as it is."""
    if not actor:
        return "the service"
    via, _, name = actor.partition(":")
    if name and via == "session":
        return name
    if name and via == "token":
        return f"a bot ({name})"
    if actor in SERVICE:
        return "the service"
    if actor == "customer":
        return "the customer"
    return actor


GLOBALS = {"actor_name": actor_name}
