"""Seeding the bundled demo: knowledge base, templates and customers (idempotent)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from community.knowledge import import_folder
from escalation.customers import import_customers_csv
from models import Customer

DEMO = Path(__file__).resolve().parent / "demo"
DEMO_MENTIONS = DEMO / "mentions.jsonl"
DEMO_SUBREDDITS = ["acme"]  # the demo brand's own community, as its settings would name it


def demo_settings(settings):  # noqa: ANN001, ANN201
    """The settings a demo runs with: the demo brand's own subreddit named where none is, so its
    moderators' answers count as theirs (community.trust); no connector starts without credentials."""
    if settings.reddit_subreddits:
        return settings
    return settings.model_copy(update={"reddit_subreddits": DEMO_SUBREDDITS})


async def seed_demo(db) -> dict[str, int]:  # noqa: ANN001
    async with db.session() as session:
        articles, templates = await import_folder(session, DEMO / "kb", DEMO / "templates")
        customers = 0
        if not await session.scalar(select(func.count()).select_from(Customer)):
            customers = await import_customers_csv(session, DEMO / "customers.csv")
        await session.commit()
    return {"articles": articles, "templates": templates, "customers": customers}
