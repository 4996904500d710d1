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
from jinja2.exceptions import SecurityError
from jinja2.nodes import Call, For, Getattr, Getitem, Name, Node
from jinja2.sandbox import ImmutableSandboxedEnvironment

PLATFORM_LIMITS = {"x": 280, "reddit": 10_000, "discourse": 32_000}
DEFAULT_LIMIT = 2_000
MARKDOWN_PLATFORMS = frozenset({"reddit", "discourse"})
USER_FIELDS = ("author_name",)  # context values written by the public, escaped before rendering
DEFAULT_TONE = "friendly"
MAX_NAME = 50
# Bounds on the work one template may ask for: a template is saved by any agent or bot with the
# templates scope, and it renders inside the service (nested loops over range(100000), or "x" * 10**8,
# would stall a stage and the event loop beside it).
MAX_RANGE = 200  # items of one range()
MAX_LOOP_DEPTH = 2  # loops inside loops, each over a context value or a range(): at most 40,000 steps
MAX_PRODUCT = 20_000  # characters or items one * may make
MAX_OUTPUT = 100_000  # characters a rendering may produce before it is cut short (X takes 280)


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > 64:
            raise SecurityError("exponent too large in a template")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int) and len(seq) * times > MAX_PRODUCT:
                    raise SecurityError(f"a template may not build more than {MAX_PRODUCT} characters or items at once")
        return super().call_binop(context, operator, left, right)


def _bounded_range(*args: int) -> range:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise SecurityError(f"range() in a template is limited to {MAX_RANGE} items")
    return r


_ENV = _Sandbox(autoescape=False, undefined=StrictUndefined, trim_blocks=True)
_ENV.globals["range"] = _bounded_range
COMPILED_CACHE = 512  # template bodies kept compiled (a brand has tens of templates and tones)
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~<&])")


class TemplateRenderError(ValueError):
    """A template that cannot render (syntax, unknown variable, sandbox violation)."""


def limit_for(platform: str) -> int:
    return PLATFORM_LIMITS.get(platform, DEFAULT_LIMIT)


_TAG_SIGNS = re.compile("[@#\uff20\uff03\ufe6b\ufe5f]")
# Where a display name stops being a name: a separator, or a word that introduces contact details
# ("Sam · call 206-555-0177", "Dana | dana.k@example.com").
_NAME_END = re.compile(r"\s*(?:[|·•,;:/\\()\[\]{}<>=+~]|\s[-–—]\s|\b(?:call|text|ring|dm|e-?mail|mail|tel|"
                       r"phone|contact|whats ?app)\b)", re.IGNORECASE)
_DIGIT_RUN = re.compile(r"\d[\d\s.()-]{3,}\d")  # five or more digits in a row: a number, not a name


def greeting_name(value: Any) -> str:
    """The part of a display name a reply may greet someone by: what comes before any separator and
    any personal data, "" when no name is left. People put phone numbers and e-mail addresses in
    their display names, and a greeting must not repeat them in public."""
    from triage.pii import detect_pii

    text = str(value)
    spans = detect_pii(text)
    if spans:
        text = text[:spans[0].start]
    text = _DIGIT_RUN.split(_NAME_END.split(text, maxsplit=1)[0], maxsplit=1)[0]
    return text.strip() if any(ch.isalpha() for ch in text) else ""


def escape_user_value(value: Any, platform: str) -> str:
    """A public-supplied name made inert: only its greetable part (no contact details), no control
    characters, no @mention or #hashtag that would ping or tag someone, Markdown/HTML escaped where
    the platform renders it, bounded."""
    text = "".join(ch for ch in str(value) if unicodedata.category(ch)[0] != "C" or ch == " ")
    text = greeting_name(text)
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
    check(body)
    return _ENV.from_string(body)


def check(body: str) -> None:
    """Refuse a body that cannot be a template (syntax) or asks for too much work (loops nested
    deeper than MAX_LOOP_DEPTH): where templates are saved or imported, and before compiling."""
    try:
        tree = _ENV.parse(body)
    except TemplateError as exc:
        raise TemplateRenderError(getattr(exc, "message", None) or str(exc)) from None
    if _loop_depth(tree) > MAX_LOOP_DEPTH:
        raise TemplateRenderError(f"a template may nest loops at most {MAX_LOOP_DEPTH} deep")
    for loop in tree.find_all(For):  # not over a literal or a computed sequence ("x" * 20000)
        it = loop.iter
        if not (isinstance(it, (Name, Getattr, Getitem))
                or (isinstance(it, Call) and isinstance(it.node, Name) and it.node.name == "range")):
            raise TemplateRenderError("a template loops over a value it is given or a range(), nothing else")


def _loop_depth(node: Node) -> int:
    inner = max((_loop_depth(child) for child in node.iter_child_nodes()), default=0)
    return inner + (1 if isinstance(node, For) else 0)


def render(body: str, context: dict, *, platform: str, link: str | None = None) -> str:
    """Render ``body`` with ``context``; cut to the platform's limit, keeping ``link`` whole at the
    end so the reader can always reach the full article."""
    ctx = dict(context)
    for key in USER_FIELDS:
        if key in ctx:  # an author with no display name is greeted as "there", never "None"
            ctx[key] = escape_user_value("" if ctx[key] is None else ctx[key], platform)
    try:
        parts, size = [], 0
        for chunk in compiled(body).generate(**ctx):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise TemplateRenderError(f"a template may not write more than {MAX_OUTPUT} characters")
            parts.append(chunk)
        text = "".join(parts).strip()
    except TemplateRenderError:
        raise
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
