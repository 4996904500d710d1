"""service.privacy_export and secure links, on SQLite and PostgreSQL, the in-process bus and a real
Redis: a link is a credential to the person's private channel, never handed out, not even to them
(the document's ``not_included`` says so). However they quoted it, with its scheme or URL-encoded as a
share button, a tracker or a shortener writes it (``%2F``, ``%2f``, ``%252F``), it is masked in
every text the export holds: their posts and the posts' payloads, their case messages, the brand's
replies, their dead letters."""

from __future__ import annotations

import json

from privacy_support import SECRET_KEY, bury_posts

from escalation import chat
from escalation.cases import open_or_join
from models import Mention, Reply
from service.erasure import Subject
from service.privacy_export import export, json_default

TOKEN = "GzycuqYjFZPD7Al3RrbQtYQ83YLjDlKSOJZ10j7xWYU"
ENCODED = f"https%3A%2F%2Fcare.example.com%2Fsecure%2F{TOKEN}"
TWICE = f"https%253A%252F%252Fcare.example.com%252Fsecure%252F{TOKEN}"
LOWER = f"care.example.com%2fsecure%2f{TOKEN}"
PLAIN = f"https://care.example.com/secure/{TOKEN}"


async def test_a_secure_link_she_quoted_url_encoded_is_masked_wherever_the_export_holds_it(world, make_bus):
    w, bus = world, await make_bus(max_deliveries=1)
    said = f"my link {ENCODED} fails, and {PLAIN} too"
    mid = await w.ingest(w.post(said, author="MariaL", name="Maria Lopez", user_id="id-marial",
                                raw={"urls": [f"https://t.example/r?u={TWICE}"]}),
                         issue="account_access", sensitivity="security", words=["link"])
    async with w.db.session() as s:
        case, _ = await open_or_join(s, await s.get(Mention, mid), "security")
        await chat.post(s, case, "customer", f"again: {LOWER}")
        s.add(Reply(dedup_key=f"quote:{mid}", mention_id=mid, platform="x", visibility="private", kind="reply",
                    text=f"We could not open {ENCODED}", status="sent", sent_by="alice"))
        await s.commit()
    await bury_posts(bus, w.post(f"still failing {TWICE}", author="MariaL", user_id="id-marial"))

    doc = await export(w.db, Subject(platform="x", handle="MariaL"), actor="dpo", reason="r", secret=SECRET_KEY,
                       bus=bus)
    [post] = doc["posts"]
    assert post["text"] == post["raw"]["text"] == "my link [secure link] fails, and [secure link] too"
    assert post["raw"]["urls"] == ["[secure link]"]
    assert [r["text"] for r in post["replies"]] == ["We could not open [secure link]"]
    [case_doc] = doc["cases"]
    assert [m["body"] for m in case_doc["messages"]] == [post["text"], "again: [secure link]"]  # the post opened it
    [letter] = doc["dead_letters"]
    assert letter["payload"]["mention"]["text"] == "still failing [secure link]"
    assert TOKEN not in json.dumps(doc, default=json_default)
