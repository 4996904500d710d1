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


TWCS_HEADER = "tweet_id,author_id,inbound,created_at,text,response_tweet_id,in_response_to_tweet_id"
WHEN = "Tue Oct 31 22:10:47 +0000 2017"


def twcs(tmp_path: Path, rows: list[str], header: str = TWCS_HEADER, name: str = "twcs.csv") -> Path:
    src = tmp_path / name
    src.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return src


async def test_a_twcs_row_ingest_would_refuse_is_rejected_by_its_line_and_the_others_kept(tmp_path):
    """An empty tweet_id or an author_id longer than the column used to reach the service, which
    refused the whole batch: every good row of it was lost and the replay stopped."""
    src = twcs(tmp_path, [f"1,u1,True,{WHEN},first,,", f",u2,True,{WHEN},no id,,", f"3,{'u' * 80},True,{WHEN},long,,",
                          f"4,u4,True,{WHEN},text with a NUL \x00 inside,,", f"5,u5,True,{WHEN},last,,"])
    connector = ReplayConnector(src)
    mentions, _ = await connector.poll_once(None)
    assert [m.external_id for m in mentions] == ["1", "4", "5"]  # a NUL in the text is cleaned at ingest
    reasons = {r.line: r.reason for r in connector.stats.rejected}
    assert set(reasons) == {3, 4}
    assert reasons[3].startswith("tweet_id:") and reasons[4].startswith("author_id:")  # the file's column names


@pytest.mark.parametrize("missing", ["inbound", "created_at"])
async def test_a_twcs_file_without_a_required_column_is_refused_naming_it(tmp_path, missing):
    """Without ``inbound`` the brand's own tweets would pass as customers'; without ``created_at``
    every SLA clock would start at the replay. Both used to fall back to the generic CSV reading:
    ids hashed, reply links lost, outbound tweets stored as mentions."""
    columns = TWCS_HEADER.split(",")
    keep = [i for i, c in enumerate(columns) if c != missing]
    rows = [f"1,u1,True,{WHEN},hi,,", f"2,Brand,False,{WHEN},@u1 hello,,1"]
    src = twcs(tmp_path, [",".join(r.split(",")[i] for i in keep) for r in rows], ",".join(columns[i] for i in keep))
    connector = ReplayConnector(src)
    mentions, _ = await connector.poll_once(None)
    assert mentions == []
    (bad,) = connector.stats.rejected
    assert bad.line == 1 and f"needs a column {missing}" in bad.reason


async def test_the_twcs_layout_is_told_by_its_columns_in_any_order_and_case_the_reply_links_optional(tmp_path):
    src = twcs(tmp_path, [f"hi there,{WHEN},true,u1,849.0"], header=" Text ,Created_At,INBOUND,Author_ID,Tweet_Id")
    (m,), _ = await ReplayConnector(src).poll_once(None)
    assert (m.platform, m.external_id, m.author_id, m.text, m.in_reply_to) == ("x", "849", "u1", "hi there", None)


@pytest.mark.parametrize(("value", "inbound"), [
    ("True", True), ("true", True), ("TRUE", True), ("t", True), ("T", True), ("1", True), ("yes", True), ("Y", True),
    (" y ", True), ("False", False), ("FALSE", False), ("f", False), ("0", False), ("no", False), ("n", False)])
async def test_inbound_is_read_in_the_usual_spellings_of_true_and_false(tmp_path, value, inbound):
    """PostgreSQL's COPY writes t/f: those rows were all taken as the brand's own, nothing sent."""
    connector = ReplayConnector(twcs(tmp_path, [f"1,u1,{value},{WHEN},hi,,"]))
    mentions, _ = await connector.poll_once(None)
    assert (len(mentions), connector.stats.skipped, connector.stats.rejected) == (int(inbound), int(not inbound), [])


@pytest.mark.parametrize("value", ["maybe", "", "2", "inbound"])
async def test_an_inbound_value_that_is_neither_true_nor_false_rejects_its_row(tmp_path, value):
    connector = ReplayConnector(twcs(tmp_path, [f"1,u1,True,{WHEN},first,,", f"2,u2,{value},{WHEN},second,,"]))
    mentions, _ = await connector.poll_once(None)
    assert [m.external_id for m in mentions] == ["1"] and connector.stats.skipped == 0
    (bad,) = connector.stats.rejected
    assert bad.line == 3 and "inbound" in bad.reason


@pytest.mark.parametrize("name", ["tweets.txt", "export", "tweets.csv"])
async def test_json_lines_are_told_by_their_content_not_the_files_name(tmp_path, name):
    """A .txt or extension-less JSON lines file used to be read as CSV: "CSV has no 'text' column"."""
    src = write(tmp_path / name, [b"", good(1), json.dumps({"tweet_id": 849, "author_id": 115887, "inbound": True,
                                                          "created_at": WHEN, "text": "hi"}).encode()])
    connector = ReplayConnector(src)
    mentions, _ = await connector.poll_once(None)
    assert [(m.platform, m.external_id) for m in mentions] == [("x", "1"), ("x", "849")]
    assert mentions[1].author_id == "115887" and not connector.stats.rejected


async def test_csv_headers_match_in_any_case_and_with_stray_spaces(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("External_ID , TEXT,Created_At\n1,hello,2026-11-20T08:00:00Z\n")
    connector = ReplayConnector(src)
    (m,), _ = await connector.poll_once(None)
    assert (m.external_id, m.text) == ("1", "hello") and not connector.stats.rejected


async def test_numeric_ids_in_json_lines_are_taken_as_the_strings_they_stand_for(tmp_path):
    """An integer external_id was converted while an integer in_reply_to rejected the line."""
    src = write(tmp_path / "in.jsonl", [odd(1, in_reply_to=7, conversation_id=7.0), odd(2, in_reply_to="7")])
    connector = ReplayConnector(src)
    mentions, _ = await connector.poll_once(None)
    assert [(m.in_reply_to, m.conversation_id) for m in mentions] == [("7", "7"), ("7", None)]
    assert not connector.stats.rejected


async def test_a_rejected_row_is_numbered_by_its_line_in_the_file_blank_lines_and_line_breaks_counted(tmp_path):
    src = twcs(tmp_path, [f"1,u1,True,{WHEN},ok,,", "", "", "2,u2,True,,no date,,", "",
                          f'3,u3,True,{WHEN},"two\nlines",,', "4,u4,True,yesterday,bad date,,"])
    connector = ReplayConnector(src)
    mentions, _ = await connector.poll_once(None)
    assert [m.external_id for m in mentions] == ["1", "3"]
    assert [r.line for r in connector.stats.rejected] == [5, 9]  # as `sed -n 5p` finds it
