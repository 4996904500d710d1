"""Answer templates rendered in a sandboxed Jinja2 environment, within each platform's limits.

Template authors are trusted less than code: the immutable sandbox refuses attribute access to
internals (``{{ ''.__class__ }}``) and any mutation. Values that come from the public (the
author's display name) are escaped for the platform before they are inserted, so a name cannot
inject Markdown links, HTML or @mentions into a brand reply.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

PLATFORM_LIMITS = {"x": 280, "reddit": 10_000, "discourse": 32_000}
DEFAULT_LIMIT = 2_000
MARKDOWN_PLATFORMS = frozenset({"reddit", "discourse"})
USER_FIELDS = ("author_name",)  # context values written by the public, escaped before rendering
DEFAULT_TONE = "friendly"
MAX_NAME = 50
_ENV = ImmutableSandboxedEnvironment(autoescape=False, undefined=StrictUndefined, trim_blocks=True)
COMPILED_CACHE = 512  # template bodies kept compiled (a brand has tens of templates and tones)
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~<&])")


class TemplateRenderError(ValueError):
    """A template that cannot render (syntax, unknown variable, sandbox violation)."""


def limit_for(platform: str) -> int:
    return PLATFORM_LIMITS.get(platform, DEFAULT_LIMIT)


_TAG_SIGNS = re.compile("[@#\uff20\uff03\ufe6b\ufe5f]")


def escape_user_value(value: Any, platform: str) -> str:
    """A public-supplied value made inert: no control characters, no @mention or #hashtag that
    would ping or tag someone, Markdown/HTML escaped where the platform renders it, bounded."""
    text = "".join(ch for ch in str(value) if unicodedata.category(ch)[0] != "C" or ch == " ")
    # every at and hash sign goes (the full-width ones too: X reads "＠name" and "＃tag" as well)
    text = re.sub(r"\s+", " ", _TAG_SIGNS.sub("", text)).strip()[:MAX_NAME]
    if platform in MARKDOWN_PLATFORMS:
        text = _MARKDOWN_SPECIAL.sub(r"\\\1", text)
    return text or "there"


def choose_tone(variants: dict[str, Any], tone: str | None = None) -> str:
    """The body for ``tone``, falling back to the default tone, then to the first variant."""
    if not variants:
        raise TemplateRenderError("template has no variants")
    for name in (tone, DEFAULT_TONE):
        if name and name in variants:
            return str(variants[name])
    return str(next(iter(variants.values())))


@lru_cache(maxsize=COMPILED_CACHE)
def compiled(body: str) -> Template:
    """``body`` parsed and compiled once: compiling (parse, generate and compile Python) cost ten
    times the rendering, and the act stage renders the same few bodies for every reply."""
    return _ENV.from_string(body)


def render(body: str, context: dict, *, platform: str, link: str | None = None) -> str:
    """Render ``body`` with ``context``; cut to the platform's limit, keeping ``link`` whole at the
    end so the reader can always reach the full article."""
    ctx = dict(context)
    for key in USER_FIELDS:
        if key in ctx and ctx[key] is not None:
            ctx[key] = escape_user_value(ctx[key], platform)
    try:
        text = compiled(body).render(**ctx).strip()
    except TemplateError as exc:
        raise TemplateRenderError(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - a template's own error (e.g. 1/0) must not kill a stage
        raise TemplateRenderError(f"{type(exc).__name__}: {exc}") from exc
    return fit(text, platform, link)


def fit(text: str, platform: str, link: str | None = None) -> str:
    """``text`` within the platform's limit; a cut text ends with an ellipsis and ``link``."""
    limit = limit_for(platform)
    if len(text) <= limit:
        return text
    tail = f"… {link}" if link else "…"
    if link and text.endswith(link):
        text = text[: -len(link)].rstrip()
    cut = text[: max(0, limit - len(tail))]
    if " " in cut[-20:]:  # end on a word boundary when one is near
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip() + tail


def render_template(variants: dict[str, Any], context: dict, *, platform: str, tone: str | None = None,
                    link: str | None = None) -> str:
    """Render one tone variant of a template (see :func:`render`)."""
    return render(choose_tone(variants, tone), context, platform=platform, link=link)
