"""Triage: sentiment, sensitivity, issue type, toxicity, spam, PII, language and priority."""

from __future__ import annotations

from triage.pii import detect_pii, redact


def build_triager(settings):  # noqa: ANN001, ANN201
    """The triage engine the settings describe (mode, batching, cache, custom heads)."""
    from triage.engine import TriageEngine

    return TriageEngine(mode=settings.triage_mode, custom_dir=settings.triage_model_dir,
                        cache_size=settings.triage_cache_size, batch_size=settings.triage_batch_size,
                        max_wait_ms=settings.triage_max_wait_ms)


__all__ = ["build_triager", "detect_pii", "redact"]
