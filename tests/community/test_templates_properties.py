"""Template rendering under any input (hypothesis): any Unicode, very long text and control
characters in the author's name or other values never make it raise, never exceed the platform's
limit, are never evaluated as template code, and the public's values are escaped as promised."""

from __future__ import annotations

import re
import unicodedata

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from community.templates import MARKDOWN_PLATFORMS, MAX_NAME, escape_user_value, fit, limit_for, render

PLATFORMS = ("x", "reddit", "discourse", "forum")  # "forum": an unknown platform, the default limit
MARKDOWN_SPECIAL = set("\\`*_{}[]()#+-.!|>~<&")
TEMPLATE_SYNTAX = ["{{ 7*7 }}", "{% for i in range(9**9) %}x{% endfor %}", "{{ ''.__class__.__mro__ }}",
                   "{# c #}", "{{", "}}", "{%", "%}", "{{ author_name }}", "${7*7}", "#{7*7}"]
# twitter-text's sign sets: a full-width @ or # starts a mention or hashtag on X as well
AT_SIGNS, HASH_SIGNS = "@\uff20", "#\uff03"

any_char = st.characters(codec=None, categories=None)  # everything, lone surrogates included
controls = st.sampled_from(["\x00", "\x07", "\x1b[31m", "\r\n", "\t", "\u202e", "\u200b", "\u2028", "\x85",
                            "\ufeff", "\U000e0041"])
nasty = st.lists(st.one_of(st.text(any_char, max_size=40), controls, st.sampled_from(TEMPLATE_SYNTAX),
                           st.sampled_from(["@everyone", "#fail", "＠brand", "[x](https://evil.example)",
                                            "<b>", "&amp;", "\\", "*", "_"])),
                 max_size=12).map("".join)
very_long = st.integers(300, 40_000).map(lambda n: ("lorem ipsum " * (n // 12 + 1))[:n])
value = st.one_of(nasty, very_long, st.integers(), st.none())
link = st.one_of(st.none(), st.sampled_from(["https://help.acme.example/a/reset-password",
                                             "https://help.acme.example/" + "p" * 80]))
BODIES = ["Hi {{ author_name }}, {{ detail }}!",
          "{{ detail }} — see {{ article_url }}",
          "Hello {{ author_name }}. " + "We are on it and will update you soon. " * 30 + "{{ article_url }}",
          "{% if author_name %}Hey {{ author_name }}{% endif %} {{ detail }} {{ article_url }}"]


def literal(body: str, ctx: dict, platform: str) -> str:
    """What rendering must give: each placeholder replaced, in one pass, by its value as plain text."""
    values = dict(ctx)  # an author without a name is greeted as "there" (escape_user_value of "")
    values["author_name"] = escape_user_value("" if values["author_name"] is None else values["author_name"], platform)
    body = body.replace("{% if author_name %}Hey {{ author_name }}{% endif %}", "Hey {{ author_name }}")
    return re.sub(r"\{\{ (\w+) \}\}", lambda m: str(values[m.group(1)]), body).strip()


common = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@common
@given(body=st.sampled_from(BODIES), platform=st.sampled_from(PLATFORMS), author=value, detail=value,
       article=st.one_of(st.none(), st.text(any_char, max_size=100)), link=link)
@example(body=BODIES[0], platform="x", author="{{ 7*7 }}", detail="{% if %}", article=None, link=None)
@example(body=BODIES[2], platform="x", author="a" * 10_000, detail="\x00" * 500, article="u", link="u")
def test_rendering_never_raises_fits_the_limit_and_inserts_values_literally(body, platform, author, detail,
                                                                             article, link):
    ctx = {"author_name": author, "detail": detail, "article_url": article}
    text = render(body, ctx, platform=platform, link=link)
    assert len(text) <= limit_for(platform)
    assert text == fit(literal(body, ctx, platform), platform, link)  # no template syntax evaluated


@common
@given(name=st.one_of(nasty, st.text(any_char, max_size=300)), platform=st.sampled_from(PLATFORMS))
def test_the_authors_name_is_made_inert(name, platform):
    out = escape_user_value(name, platform)
    assert out  # never empty: "there" stands in
    assert all(unicodedata.category(ch)[0] != "C" for ch in out)  # no control, format or surrogate characters
    assert not re.search(r"\s\s|[^\S ]", out)  # only single plain spaces
    assert "@" not in out and not out.startswith(("#", "@"))
    if platform in MARKDOWN_PLATFORMS:
        unescaped = re.sub(r"\\.", "", out)  # drop every escape pair: no special character is left bare
        assert not MARKDOWN_SPECIAL & set(unescaped)
        assert len(re.sub(r"\\(.)", r"\1", out)) <= MAX_NAME  # bounded before escaping
    else:
        assert len(out) <= MAX_NAME


@common
@given(text=st.one_of(st.text(any_char, max_size=3_000), very_long), platform=st.sampled_from(PLATFORMS),
       link=link)
def test_fit_keeps_the_limit_and_the_link(text, platform, link):
    out = fit(text, platform, link)
    limit = limit_for(platform)
    assert len(out) <= limit
    if len(text) <= limit:
        assert out == text
    else:
        assert out.endswith(f"… {link}" if link else "…")
        assert text.startswith(out[: -len(link) if link else None].rstrip("… "))  # a cut of the text itself


@settings(max_examples=300, deadline=None)
@given(name=nasty)
@example(name="@everyone")
@example(name="Ana #fail")
def test_no_mention_or_hashtag_survives_in_an_x_reply(name):
    out = render("Hi {{ author_name }}!", {"author_name": name}, platform="x")
    assert not re.search(f"[{AT_SIGNS}{HASH_SIGNS}]\\w", out), out
