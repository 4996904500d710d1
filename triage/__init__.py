"""Triage: sentiment, sensitivity, issue type, toxicity, spam, PII, language and priority."""

from __future__ import annotations

from triage.pii import detect_pii, redact


def configure_encoder(settings) -> None:  # noqa: ANN001
    """The process's shared encoder as the settings choose it (backend, where its export is kept)."""
    from triage.encoder import configure_shared_encoder

    configure_shared_encoder(backend=settings.encoder_backend, cache_dir=settings.model_cache_dir)


def build_triager(settings):  # noqa: ANN001, ANN201
    """The triage engine the settings describe (mode, batching, cache, custom heads)."""
    from triage.engine import TriageEngine

    configure_encoder(settings)
    return TriageEngine(mode=settings.triage_mode, custom_dir=settings.triage_model_dir,
                        cache_size=settings.triage_cache_size, batch_size=settings.triage_batch_size,
                        max_wait_ms=settings.triage_max_wait_ms, encoder_backend=settings.encoder_backend)


__all__ = ["build_triager", "configure_encoder", "detect_pii", "redact"]
