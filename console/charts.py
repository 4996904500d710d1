"""Digest charts rendered on the server as PNG (matplotlib, no JavaScript, no CDN).

PNG rather than SVG because e-mail clients that strip SVG still show images; the HTML embeds
them as data URIs (browser, saved file) or as ``cid:`` parts of a multipart e-mail. Charts use
the object API (no pyplot global state), so they may be drawn in worker threads.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from console.digest import Digest

COLORS = {"negative": "#d1495b", "neutral": "#8d99ae", "positive": "#2e933c"}
DPI = 100


@dataclass
class Chart:
    name: str  # also the e-mail content id
    title: str  # the alt text
    png: bytes

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode()


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def count_axis(axis: Axis, top: float) -> None:
    """A count axis: from 0, whole numbers only (no "0.25 mentions"), at least 0-1 when empty (not
    matplotlib's -0.04 to 0.04 around nothing)."""
    axis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    limits = (0, max(1, top) * 1.05)
    (axis.axes.set_ylim if axis.axis_name == "y" else axis.axes.set_xlim)(*limits)


def sentiment_over_time(d: Digest) -> Chart:
    return Chart("sentiment", "Sentiment over time", _png(sentiment_figure(d)))


def sentiment_figure(d: Digest) -> Figure:
    fig = Figure(figsize=(7.2, 2.8))
    ax = fig.subplots()
    xs = [at for at, _ in d.series]
    bottom = [0] * len(xs)
    width = (xs[1] - xs[0]).total_seconds() / 86400 * 0.9 if len(xs) > 1 else 0.03
    for label in ("negative", "neutral", "positive"):
        ys = [b.get(label, 0) for _, b in d.series]
        ax.bar(xs, ys, width=width, bottom=bottom, color=COLORS[label], label=label, align="edge")
        bottom = [a + b for a, b in zip(bottom, ys)]
    ax.set_ylabel("mentions")
    count_axis(ax.yaxis, max(bottom, default=0))
    ax.set_title("Sentiment over time (UTC)", fontsize=10)
    ax.legend(loc="upper left", fontsize=8, frameon=False, ncols=3)
    ax.spines[["top", "right"]].set_visible(False)
    fig.autofmt_xdate()
    return fig


def volume_by_channel(d: Digest) -> Chart:
    return Chart("volume", "Volume per channel, this and the previous period", _png(volume_figure(d)))


def volume_figure(d: Digest) -> Figure:
    fig = Figure(figsize=(7.2, 2.4))
    ax = fig.subplots()
    names = list(d.volume) or ["(none)"]
    cur = [d.volume.get(n, (0, 0))[0] for n in names]
    prev = [d.volume.get(n, (0, 0))[1] for n in names]
    ys = range(len(names))
    ax.barh([y + 0.2 for y in ys], cur, height=0.4, color="#3a6df0", label="this period")
    ax.barh([y - 0.2 for y in ys], prev, height=0.4, color="#c5d2f6", label="previous period")
    ax.set_yticks(list(ys), names)
    ax.invert_yaxis()
    ax.set_xlabel("mentions")
    count_axis(ax.xaxis, max(cur + prev, default=0))
    ax.set_title("Volume per channel", fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def issue_shares(d: Digest, top: int = 8) -> Chart:
    fig = Figure(figsize=(7.2, 2.6))
    ax = fig.subplots()
    rows = d.issues[:top] or [("(none)", 0, 0.0, 0.0)]
    names = [r[0] for r in rows]
    ys = range(len(rows))
    ax.barh([y + 0.2 for y in ys], [r[2] * 100 for r in rows], height=0.4, color="#7b2cbf", label="this period")
    ax.barh([y - 0.2 for y in ys], [r[3] * 100 for r in rows], height=0.4, color="#d8c3f0", label="previous period")
    ax.set_yticks(list(ys), names)
    ax.invert_yaxis()
    ax.set_xlabel("% of mentions")
    ax.set_xlim(0, max(1.0, *(max(r[2], r[3]) * 100 for r in rows)) * 1.05)  # from 0, also when empty
    shown = f"the {len(rows)} largest of {len(d.issues)}" if len(d.issues) > len(rows) else ""
    ax.set_title(f"Issue types ({shown})" if shown else "Issue types", fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    alt = "Share of issue types, this and the previous period" + (f": {shown}, the rest in the table" if shown else "")
    return Chart("issues", alt, _png(fig))


def all_charts(d: Digest) -> list[Chart]:
    return [sentiment_over_time(d), volume_by_channel(d), issue_shares(d)]
