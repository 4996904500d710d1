"""Rendering the digest as a standalone HTML file or e-mail, and mailing it over SMTP.

The e-mail is multipart/alternative (plain text, then HTML whose charts are ``cid:`` images in
a multipart/related part) with the CSV attached; clients that block remote or data: images
still show the charts.
"""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

from console.charts import Chart, all_charts
from console.digest import Digest, last_day, to_csv
from console.render import _JINJA


class _Img:
    def __init__(self, chart: Chart, src: str) -> None:
        self.title, self.src = chart.title, src


def render_html(d: Digest, charts: list[Chart], *, cids: dict[str, str] | None = None) -> str:
    """The e-mail/HTML-file form; charts inline as data URIs unless content ids are given."""
    imgs = [_Img(c, f"cid:{cids[c.name]}" if cids else c.data_uri) for c in charts]
    return _JINJA.get_template("digest_email.html").render(d=d, charts=imgs)


def page_charts(charts: list[Chart]) -> list[_Img]:
    return [_Img(c, c.data_uri) for c in charts]


async def charts_for(d: Digest) -> list[Chart]:
    return await asyncio.to_thread(all_charts, d)


def plain_text(d: Digest) -> str:
    lines = [f"Sentiment digest ({d.period}) {d.start:%Y-%m-%d %H:%M} – {d.end:%Y-%m-%d %H:%M} UTC",
             f"Mentions: {d.total} (previous {d.prev_total})"]
    for label, (c, p) in d.sentiment.items():
        lines.append(f"{label}: {c} (previous {p})")
    lines += [f"{ch}: {c} (previous {p})" for ch, (c, p) in d.volume.items()]
    lines.append("The charts and posts are in the HTML part; the numbers are attached as CSV.")
    return "\n".join(lines)


def build_email(d: Digest, charts: list[Chart], *, sender: str, recipients: list[str]) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = f"Sentiment digest ({'daily' if d.period == 'day' else 'weekly'}) — {last_day(d):%Y-%m-%d}"
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg.set_content(plain_text(d))
    cids = {c.name: make_msgid(domain="socialcare.invalid")[1:-1] for c in charts}
    msg.add_alternative(render_html(d, charts, cids=cids), subtype="html")
    html_part = msg.get_payload()[1]
    for c in charts:
        html_part.add_related(c.png, maintype="image", subtype="png", cid=f"<{cids[c.name]}>",
                              filename=f"{c.name}.png")
    msg.add_attachment(to_csv(d).encode(), maintype="text", subtype="csv",
                       filename=f"digest-{d.period}-{last_day(d):%Y%m%d}.csv")
    return msg


def _send_sync(settings: Any, msg: EmailMessage) -> None:
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=30) as smtp:
        smtp.ehlo()
        if smtp.has_extn("starttls"):
            smtp.starttls()
            smtp.ehlo()
        password = settings.secret("smtp_password") if hasattr(settings, "secret") else None
        if settings.smtp_username and password:
            smtp.login(settings.smtp_username, password)
        smtp.send_message(msg)


async def send(settings: Any, msg: EmailMessage) -> None:
    """Send over SMTP (STARTTLS when offered, login when configured), in a thread."""
    await asyncio.to_thread(_send_sync, settings, msg)
