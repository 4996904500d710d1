"""Importing the brand's customer table: who the customer is, and since when."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from escalation.customers import import_customers_csv
from models import Customer
from models.db import Database

HEADER = "customer_id,name,email,phone,plan,created_at,x_handle,reddit_username,discourse_username\n"


@pytest.fixture
async def db(sqlite_url):
    database = Database(sqlite_url)
    await database.upgrade()
    yield database
    await database.close()


async def test_customer_since_comes_from_the_crm_not_the_day_of_the_import(db, tmp_path):
    path = tmp_path / "customers.csv"
    path.write_text(HEADER + "C-1,Aisha Greco,a@example.com,,premium,2017-01-01,,,\n"
                    "C-2,Chen Moss,,,,2019-03-04T10:30:00+02:00,,,\n"
                    "C-3,Dana Aziz,,,,,,,\n", encoding="utf-8")
    async with db.session() as s:
        assert await import_customers_csv(s, path) == 3
        await s.commit()
        since = {c.external_ref: c.created_at for c in await s.scalars(select(Customer))}
    assert since["C-1"] == datetime(2017, 1, 1, tzinfo=UTC)
    assert since["C-2"] == datetime(2019, 3, 4, 8, 30, tzinfo=UTC)
    assert since["C-3"].date() == datetime.now(UTC).date()  # not given: the record is new to us


async def test_a_re_import_corrects_the_date_and_a_malformed_one_names_its_row(db, tmp_path):
    path = tmp_path / "customers.csv"
    path.write_text(HEADER + "C-1,Aisha Greco,,,,2015-06-30,,,\n", encoding="utf-8")
    async with db.session() as s:
        await import_customers_csv(s, path)
        await s.commit()
    path.write_text(HEADER + "C-1,Aisha Greco,,,,2016-06-30,,,\nC-2,Chen Moss,,,,30/06/2016,,,\n",
                    encoding="utf-8")
    async with db.session() as s:
        with pytest.raises(ValueError, match=r"line 3: created_at '30/06/2016' is not a date"):
            await import_customers_csv(s, path)
    path.write_text(HEADER + "C-1,Aisha Greco,,,,2016-06-30,,,\n", encoding="utf-8")
    async with db.session() as s:
        await import_customers_csv(s, path)
        await s.commit()
        assert (await s.scalar(select(Customer.created_at))) == datetime(2016, 6, 30, tzinfo=UTC)
