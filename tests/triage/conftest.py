"""One engine per mode for the whole triage test session (loading the encoder takes seconds)."""

import pytest

from triage.engine import TriageEngine

_ENGINES: dict[str, TriageEngine] = {}


def engine_for(mode: str) -> TriageEngine:
    if mode not in _ENGINES:
        _ENGINES[mode] = TriageEngine(mode=mode)
    return _ENGINES[mode]


@pytest.fixture
def transformer_engine() -> TriageEngine:
    return engine_for("transformer")


@pytest.fixture
def cascade_engine() -> TriageEngine:
    return engine_for("cascade")
