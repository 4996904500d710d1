"""Seeding the bundled demo: knowledge base, templates and customers (idempotent)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from community.knowledge import import_folder
from escalation.customers import import_customers_csv
from models import Customer

DEMO = Path(__file__).resolve().parent / "demo"
DEMO_MENTIONS = DEMO / "mentions.jsonl"


async def seed_demo(db) -> dict[str, int]:  # noqa: ANN001
    async with db.session() as session:
        articles, templates = await import_folder(session, DEMO / "kb", DEMO / "templates")
        customers = 0
        if not await session.scalar(select(func.count()).select_from(Customer)):
            customers = await import_customers_csv(session, DEMO / "customers.csv")
        await session.commit()
    return {"articles": articles, "templates": templates, "customers": customers}
