"""The JSON form of a triage is every field of the dataclasses, plus ``escalate``."""

from dataclasses import asdict

from triage.protocol import SCORED, PiiSpan, Score, TriageOutput


def output(sensitivity: str) -> TriageOutput:
    def score(label: str) -> Score:
        return Score(label, 0.9, "m", "1", {label: 0.9, "other": 0.1}, ["'why'"])
    return TriageOutput(sentiment=score("negative"), sensitivity=score(sensitivity), issue_type=score("fraud"),
                        toxicity=score("not_offensive"), spam=score("ham"),
                        pii=[PiiSpan("card_number", 3, 22)], pii_exposed=True, language="en", priority=88.0,
                        priority_explanation=["+45 sensitivity fraud"], redacted_text="my [card_number]")


def test_to_dict_is_the_dataclass_form_plus_escalate():
    for level, escalate in (("fraud", True), ("account", False)):
        out = output(level)
        assert out.to_dict() == {**asdict(out), "escalate": escalate}


def test_to_dict_copies_so_a_stored_document_cannot_change_the_output():
    out = output("none")
    doc = out.to_dict()
    doc["sentiment"]["probabilities"]["negative"] = 0.0
    doc["sentiment"]["explanation"].append("edited")
    assert out.sentiment.probabilities["negative"] == 0.9 and out.sentiment.explanation == ["'why'"]
    assert set(SCORED) <= set(doc)
