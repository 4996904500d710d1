"""The message bus between pipeline stages (see :mod:`service.bus.base`)."""

from service.bus.base import Bus, BusUnavailable, DeadLetter, Envelope

__all__ = ["Bus", "BusUnavailable", "DeadLetter", "Envelope", "make_bus"]


def make_bus(settings) -> Bus:  # noqa: ANN001 - Settings, imported lazily to keep this light
    """The backend the settings choose: ``inprocess`` (default) or ``redis``."""
    if settings.bus == "redis":
        from service.bus.redis_streams import RedisStreamsBus

        return RedisStreamsBus(
            settings.redis_url,
            prefix=settings.bus_prefix,
            max_deliveries=settings.bus_max_deliveries,
            claim_idle_ms=settings.bus_claim_idle_ms,
        )
    from service.bus.memory import InProcessBus

    return InProcessBus(max_deliveries=settings.bus_max_deliveries, claim_idle_ms=settings.bus_claim_idle_ms)
