"""The replay connector reads JSONL, CSV and the twcs layout, and survives bad lines."""

import hashlib
import json
from pathlib import Path

import pytest

from listener.replay import MAX_LINE_TEXT, ReplayConnector


def write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def good(i: int) -> bytes:
    return json.dumps({"platform": "x", "external_id": str(i), "text": f"post {i}",
                       "created_at": "2026-11-20T08:00:00Z", "author_handle": f"u{i}"}).encode()


async def test_bad_lines_are_reported_with_their_number_and_the_rest_continues(tmp_path):
    rejects = tmp_path / "rejects.jsonl"
    src = write(tmp_path / "in.jsonl", [
        good(1),
        b'{"platform": "x", "external_id": "2", "text": "broken',  # broken JSON
        json.dumps({"platform": "x", "external_id": "3", "created_at": "2026-11-20T08:00:00Z"}).encode(),  # no text
        json.dumps({"platform": "x", "external_id": "4", "text": "a" * (MAX_LINE_TEXT * 10)}).encode(),  # 1 MB
        b'{"platform": "x", "external_id": "5", "text": "caf\xe9 \xff"}',  # invalid UTF-8
        good(6),
    ])
    connector = ReplayConnector(src, rejects_path=rejects)
    mentions, cursor = await connector.poll_once(None)
    assert [m.external_id for m in mentions] == ["1", "6"]
    assert cursor == "6"
    reasons = {r.line: r.reason for r in connector.stats.rejected}
    assert set(reasons) == {2, 3, 4, 5}
    assert "broken JSON" in reasons[2] and "missing text" in reasons[3]
    assert "exceeds" in reasons[4] and "UTF-8" in reasons[5]
    kept = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [k["line"] for k in kept] == [2, 3, 4, 5]  # every bad line is recorded: where and why
    assert kept[2]["length"] > MAX_LINE_TEXT and len(rejects.read_text()) < 2000  # not what
    assert kept[1]["fields"] == ["created_at", "external_id", "platform"]  # what the record had: no text
    line3 = src.read_bytes().splitlines()[2]
    assert kept[1]["sha256"] == hashlib.sha256(line3).hexdigest()  # tells the line in the input again


async def test_the_rejects_file_never_holds_a_rejected_post(tmp_path):
    """A bad line is someone's post: the rejects file (outside erasure and retention) says where and
    why, and holds none of its words, names or numbers; neither do the stats in memory."""
    rejects = tmp_path / "rejects.jsonl"
    post = {"platform": "x", "external_id": "2", "author_handle": "zqxmaria", "author_name": "Maria Lopez",
            "text": "zqxword my card 4111 1111 1111 1111, mail maria@example.com", "author_followers": -1}
    src = write(tmp_path / "in.jsonl", [
        good(1), json.dumps(post).encode(),
        b'{"text": "zqxbroken my address is 9 Elm Road", "author_handle": "zqxmaria"',  # broken JSON
        json.dumps({"zqxmaria@example.com": "zqxkey"}).encode(),  # no text; personal data in a key
    ])
    csv_src = tmp_path / "in.csv"
    csv_src.write_text("text,created_at,author_handle\nzqxcsv hello,not a time zqxmaria,zqxmaria\n")
    for path in (src, csv_src):
        connector = ReplayConnector(path, rejects_path=rejects)
        await connector.poll_once(None)
        assert connector.stats.rejected
        assert "zqx" not in repr(connector.stats.rejected).lower()
    assert connector.stats.rejected[0].reason == "unreadable created_at of the form 'aaa a aaaa aaaaaaaa'"
    kept = rejects.read_text()
    assert len(kept.splitlines()) == 4
    for value in ("zqx", "maria", "4111", "elm road"):
        assert value not in kept.lower(), value


def odd(i: int, **fields) -> bytes:
    return json.dumps({"platform": "x", "external_id": str(i), "text": f"post {i}",
                       "created_at": "2026-11-20T08:00:00Z", **fields}).encode()


async def test_a_field_of_the_wrong_kind_rejects_its_line_and_loses_none_of_the_good_ones(tmp_path):
    """One bad value used to end the replay with a traceback, and the good lines batched with it never
    left; a negative follower count got through and failed in triage."""
    src = write(tmp_path / "in.jsonl", [
        good(1),
        odd(2, author_followers="abc"), odd(3, author_followers=-5), odd(4, author_followers="1e400"),
        odd(5, author_followers=1.5),
        b'{"platform": "x", "external_id": "6", "text": "t", "created_at": 1e20}',
        b'{"platform": "x", "external_id": "7", "text": "t", "created_at": NaN}',
        odd(8, created_at="9999-12-31T23:59:59-14:00"),
        odd(9, created_at="card 4111 1111 1111 1111 jane.doe@example.com"),
        odd(10, author_followers="12"),
        good(11),
    ])
    connector = ReplayConnector(src, rejects_path=tmp_path / "rejects.jsonl")
    mentions, _ = await connector.poll_once(None)
    assert [m.external_id for m in mentions] == ["1", "10", "11"]
    assert mentions[1].author_followers == 12
    reasons = {r.line: r.reason for r in connector.stats.rejected}
    assert set(reasons) == {2, 3, 4, 5, 6, 7, 8, 9}
    assert all("author_followers" in reasons[n] for n in (2, 3, 4, 5))
    assert all("created_at" in reasons[n] for n in (6, 7, 8, 9))
    assert "4111" not in reasons[9] and "jane.doe" not in reasons[9]  # the reason is printed: redacted


async def test_a_byte_order_mark_is_not_part_of_the_first_column_and_utf16_is_named(tmp_path):
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbftext,created_at,external_id\nhello,2026-11-20T08:00:00Z,1\n")
    connector = ReplayConnector(bom)
    mentions, _ = await connector.poll_once(None)
    assert [m.text for m in mentions] == ["hello"] and not connector.stats.rejected
    jsonl = write(tmp_path / "bom.jsonl", [b"\xef\xbb\xbf" + good(1), good(2)])
    mentions, _ = await ReplayConnector(jsonl).poll_once(None)
    assert [m.external_id for m in mentions] == ["1", "2"]
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes("text,external_id\nhello,1\n".encode("utf-16"))
    connector = ReplayConnector(utf16)
    assert (await connector.poll_once(None))[0] == []
    assert "UTF-16" in connector.stats.rejected[0].reason


async def test_a_line_ingest_would_refuse_is_rejected_here_not_sent_to_fail_its_batch(tmp_path):
    src = write(tmp_path / "in.jsonl", [good(1), odd(2, kind="shout"), odd(3, author_handle="x" * 5000), good(4)])
    connector = ReplayConnector(src)
    mentions, _ = await connector.poll_once(None)
    assert [m.external_id for m in mentions] == ["1", "4"]
    reasons = {r.line: r.reason for r in connector.stats.rejected}
    assert "kind" in reasons[2] and "author_handle" in reasons[3]


async def test_resumes_after_its_cursor(tmp_path):
    src = write(tmp_path / "in.jsonl", [good(i) for i in range(1, 6)])
    connector = ReplayConnector(src)
    first, cursor = await connector.poll_once("3")
    assert [m.external_id for m in first] == ["4", "5"] and cursor == "5"


async def test_jsonl_without_ids_gets_a_stable_derived_id(tmp_path):
    src = write(tmp_path / "in.jsonl", [b'{"text": "no id here", "created_at": "2026-11-20T08:00:00Z"}'])
    a, _ = await ReplayConnector(src).poll_once(None)
    b, _ = await ReplayConnector(src).poll_once(None)
    assert a[0].external_id == b[0].external_id and a[0].external_id.startswith("sha1:")
    assert a[0].platform == "replay"


async def test_csv_with_invalid_utf8_row_is_rejected_alone(tmp_path):
    src = tmp_path / "in.csv"
    src.write_bytes(b"external_id,text,created_at\n1,hello,2026-11-20T08:00:00Z\n2,bad \xff byte,2026-11-20T08:00:00Z\n"
                    b"3,world,2026-11-20T08:01:00Z\n")
    connector = ReplayConnector(src, platform="forum")
    mentions, _ = await connector.poll_once(None)
    assert [m.external_id for m in mentions] == ["1", "3"]
    assert [(r.line, r.reason) for r in connector.stats.rejected] == [(3, "invalid UTF-8")]


async def test_twcs_layout_replays_inbound_tweets_as_x_mentions(tmp_path):
    src = tmp_path / "twcs.csv"
    src.write_text(
        "tweet_id,author_id,inbound,created_at,text,response_tweet_id,in_response_to_tweet_id\n"
        "10,115712,True,Tue Oct 31 22:10:47 +0000 2017,@SpotifyCares my playlist vanished,11,\n"
        "11,SpotifyCares,False,Tue Oct 31 22:12:00 +0000 2017,@115712 sorry to hear that,,10\n"
        "12,115712,True,Tue Oct 31 22:15:00 +0000 2017,@SpotifyCares still gone &amp; no reply &lt;3,,11.0\n",
        encoding="utf-8",
    )
    connector = ReplayConnector(src)
    mentions, _ = await connector.poll_once(None)
    assert [m.external_id for m in mentions] == ["10", "12"]
    assert connector.stats.skipped == 1  # the brand's own reply is not a mention
    first, second = mentions
    assert first.platform == "x" and first.author_handle == "115712"
    assert first.created_at.isoformat() == "2017-10-31T22:10:47+00:00"
    assert second.in_reply_to == "11"
    assert second.text == "@SpotifyCares still gone & no reply <3"  # as written, not as X escapes it


async def test_the_shared_twcs_sample_replays_without_rejects(shared_data):
    path = shared_data("twcs/spotifycares_inbound.csv")
    connector = ReplayConnector(path)
    mentions, _ = await connector.poll_once(None)
    assert len(mentions) > 15_000 * 0.95
    assert len({m.external_id for m in mentions}) == len(mentions)
    assert len(connector.stats.rejected) < 10


async def test_speed_factor_spaces_mentions_in_real_time(tmp_path):
    lines = [json.dumps({"platform": "x", "external_id": str(i), "text": "t",
                         "created_at": f"2026-11-20T08:00:0{i}Z"}).encode() for i in range(3)]
    src = write(tmp_path / "in.jsonl", lines)
    import time

    started = time.monotonic()
    got = [m async for batch, _ in ReplayConnector(src, speed=10.0).stream(None) for m in batch]
    elapsed = time.monotonic() - started
    assert len(got) == 3
    assert elapsed >= 0.18  # two seconds of traffic at ten times real time


@pytest.mark.parametrize("value", ["2026-11-20T08:00:00Z", "2026-11-20T09:00:00+01:00", 1795161600])
async def test_created_at_formats(tmp_path, value):
    src = write(tmp_path / "in.jsonl", [json.dumps({"external_id": "1", "text": "t", "created_at": value}).encode()])
    (m,), _ = await ReplayConnector(src).poll_once(None)
    assert m.created_at.tzinfo is not None
