"""Listening: connectors that stream normalized mentions from public channels and act on them."""

from listener.protocol import Action, ActionResult, Connector, NormalizedMention

__all__ = ["Action", "ActionResult", "Connector", "NormalizedMention"]
