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


# --- ids the code writes into its lines -------------------------------------------------------------

TWEET_KEY, ENTRY = "x:1055770290377846785", "1796617995651-0"  # both pass the card check (Luhn)


@pytest.mark.parametrize("formatter", [JsonFormatter(), logging.Formatter("%(message)s")])
def test_ids_a_log_call_passes_stay_whole_and_a_card_a_customer_wrote_is_still_redacted(formatter):
    """A 19-digit tweet id and a Redis entry id look like card numbers: passed with ``log_id`` they
    survive; the customer's card in the same line (in a reason, in the template, in an argument that
    is not an id's exact form, even one holding the filter's own placeholder) does not."""
    from service.logs import log_id

    logger, out = make_logger(formatter)
    logger.error("stage %s: message %s failed (attempt %d): %s", "ingest", log_id(TWEET_KEY), 1,
                 f"ValueError: card {CARD}")
    logger.error("dead letter on %s (entry %s): card %s", "ingest", log_id(ENTRY), CARD)
    logger.error("message %s / %s", log_id(f"reddit:t3_abc {CARD}"), log_id(f"x:{CARD}"))
    logger.error("message %s: \ue000\ue100\ue001 %s", log_id("reddit:t3_abc"), f"wrote {CARD}")
    text = out.getvalue()
    assert TWEET_KEY in text and ENTRY in text and "reddit:t3_abc" in text
    assert_clean(text)
    assert text.count("[card_number]") >= 4


async def test_the_worker_and_the_bus_name_the_message_and_entry_in_their_lines(redis_url, bus_prefix):
    """The real call sites on a real Redis: a worker's failure (message key), the bus's burial and
    its claim of a stale entry (entry ids) keep their ids in a plain-text line, which carries no
    structured fields."""
    import asyncio

    from service.bus.redis_streams import RedisStreamsBus
    from service.workers import StageWorker
    from tests.redis_keys import delete_redis_keys

    class Failing:
        name, ctx = "ingest", None

        async def handle(self, batch):
            raise ValueError(f"customer wrote {CARD}")

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    loggers = [logging.getLogger(n) for n in ("socialcare.worker", "socialcare.bus")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    bus = RedisStreamsBus(redis_url, prefix=bus_prefix, max_deliveries=1, claim_idle_ms=50)
    try:
        await bus.ensure_group("ingest", "ingest")
        first = await bus.publish("ingest", {"n": 1}, TWEET_KEY)
        assert await bus.read("ingest", "ingest", "gone", 1, 0)  # its consumer dies: claimed later
        await asyncio.sleep(0.2)
        worker = StageWorker(bus, Failing(), consumer="live", block_ms=10, timeout=None)
        while await worker.run_once():
            pass
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
        await bus.close()
        delete_redis_keys(redis_url, bus_prefix)
    text = out.getvalue()
    assert f"claimed stale ingest entry {first} for live" in text
    assert f"message {TWEET_KEY} failed" in text
    assert f"dead letter on ingest (entry {first}, " in text
    assert_clean(text)
