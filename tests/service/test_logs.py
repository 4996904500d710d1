"""Logs never carry personal data: cards, e-mails and phones are redacted from the message, its
arguments and tracebacks, in plain and in JSON output; every JSON line parses."""

from __future__ import annotations

import io
import json
import logging

import pytest

from service.logs import _CONFIGURED, JsonFormatter, RedactingFilter, configure_logging
from service.settings import load_settings

CARD, EMAIL, PHONE = "4111 1111 1111 1111", "jane.doe@example.com", "+1 415 555 0134"
SECRETS = (CARD, EMAIL, PHONE, "4111", "jane.doe", "555 0134")


def make_logger(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test.logs.{id(out)}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger, out


def emit_all(logger: logging.Logger) -> None:
    logger.info(f"customer wrote: my card {CARD}, mail {EMAIL}, call {PHONE}")  # in the message
    logger.warning("reply to %s (phone %s) about card %s", EMAIL, PHONE, CARD)  # in the arguments
    logger.error("details: %(who)s", {"who": f"{EMAIL} / {CARD}"})  # mapping arguments
    try:
        raise ValueError(f"cannot charge {CARD} for {EMAIL}")
    except ValueError:
        logger.exception("payment failed")  # in a traceback


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, secret


def test_plain_lines_are_redacted():
    logger, out = make_logger(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    emit_all(logger)
    text = out.getvalue()
    assert_clean(text)
    lines = text.splitlines()
    assert lines[0].endswith("customer wrote: my card [card_number], mail [email], call [phone]")
    assert lines[1].endswith("reply to [email] (phone [phone]) about card [card_number]")
    assert lines[2].endswith("details: [email] / [card_number]")
    assert "Traceback" in text and "ValueError: cannot charge [card_number] for [email]" in text


def test_json_lines_parse_and_are_redacted():
    logger, out = make_logger(JsonFormatter())
    emit_all(logger)
    text = out.getvalue()
    assert_clean(text)
    docs = [json.loads(line) for line in text.splitlines()]  # one JSON object per line
    assert len(docs) == 4
    assert [d["level"] for d in docs] == ["INFO", "WARNING", "ERROR", "ERROR"]
    assert all(d["logger"] == logger.name and d["ts"].endswith("Z") for d in docs)
    assert docs[1]["msg"] == "reply to [email] (phone [phone]) about card [card_number]"
    assert docs[3]["msg"] == "payment failed"
    assert "ValueError: cannot charge [card_number] for [email]" in docs[3]["exc"]


def test_a_broken_format_string_keeps_the_line_and_redacts_it():
    logger, out = make_logger(JsonFormatter())
    logger.info("two placeholders %s %s but one argument " + EMAIL, CARD)
    doc = json.loads(out.getvalue())
    assert "[email]" in doc["msg"]
    assert_clean(out.getvalue())


def test_unicode_and_newlines_stay_one_json_line():
    logger, out = make_logger(JsonFormatter())
    logger.info("line one\nline two ✓ \u2028 \x85 \u2029 \x1b[31m %s", EMAIL)
    lines = out.getvalue().splitlines()  # splitlines also breaks on U+2028, U+2029 and NEL
    assert len(lines) == 1
    assert json.loads(lines[0])["msg"] == "line one\nline two ✓ \u2028 \x85 \u2029 \x1b[31m [email]"


@pytest.fixture
def fresh_root(monkeypatch):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    monkeypatch.setitem(_CONFIGURED, "done", False)
    yield root
    root.handlers[:], level = saved
    root.setLevel(level)


@pytest.mark.parametrize("log_json", [True, False])
def test_configured_logging_redacts_every_line(fresh_root, capsys, log_json):
    configure_logging(load_settings(log_json=log_json, log_level="INFO"))
    emit_all(logging.getLogger("socialcare.test"))
    err = capsys.readouterr().err
    assert_clean(err)
    assert "[card_number]" in err and "[email]" in err and "[phone]" in err
    if log_json:
        docs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        assert len(docs) == 4 and docs[0]["logger"] == "socialcare.test"


def test_json_lines_carry_the_structured_fields_a_log_call_adds_and_no_others():
    """``extra={"stage": ..., "message_key": ..., "attempt": ...}`` become keys of the JSON line, so logs
    can be searched by message; anything else passed as extra (aiohttp's access log passes the client
    address and request line) stays out, and so does a field of the wrong type."""
    logger, out = make_logger(JsonFormatter())
    logger.error("stage %s: message %s failed", "act", "x:123", extra={
        "stage": "act", "message_key": "x:123", "entry_id": "1700000000000-0", "attempt": 3, "dead_letter": True,
        "error_type": "RuntimeError", "remote_address": "203.0.113.9", "first_request_line": "GET /secure/abc",
        "batch_size": "many"})
    doc = json.loads(out.getvalue())
    assert {k: doc[k] for k in ("stage", "message_key", "entry_id", "attempt", "dead_letter", "error_type")} == {
        "stage": "act", "message_key": "x:123", "entry_id": "1700000000000-0", "attempt": 3, "dead_letter": True,
        "error_type": "RuntimeError"}
    assert not {"remote_address", "first_request_line", "batch_size"} & set(doc)
    assert "203.0.113.9" not in out.getvalue() and "/secure/" not in out.getvalue()


# a token as secrets.token_urlsafe(32) writes it, with a phone-like run of digits in the middle
TOKEN = "bNq0bvImk2Jha_HeZ415555013472gihMm4v3r_0_YDqSpBQ4"


@pytest.mark.parametrize("formatter", [JsonFormatter(), logging.Formatter("%(message)s")])
def test_secure_links_are_masked_in_messages_arguments_and_tracebacks(formatter):
    """A secure link opens a customer's private channel: whoever reads the logs must not get one,
    whole or quoted without its scheme or URL-encoded."""
    logger, out = make_logger(formatter)
    logger.error("unhandled error on GET /secure/%s", TOKEN)
    logger.info("sent https://care.example.com/secure/" + TOKEN + " to @maria")
    logger.info("tracker: https%3A%2F%2Fcare.example.com%2Fsecure%2F" + TOKEN)
    try:
        raise RuntimeError(f"cannot open care.example.com:8443/secure/{TOKEN}")
    except RuntimeError:
        logger.exception("link failed")
    text = out.getvalue()
    assert TOKEN[:20] not in text and TOKEN[-20:] not in text and "55501347" not in text
    assert text.count("[secure link]") == 4 and "to @maria" in text
