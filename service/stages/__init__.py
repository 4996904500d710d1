"""Pipeline stages: ingest → triage → route → act. Each stage's name is its topic, consumer group
and metric label."""

from service.stages.base import STAGES, Outgoing, Stage, StageContext

__all__ = ["STAGES", "Outgoing", "Stage", "StageContext"]
