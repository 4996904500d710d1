"""Answer templates: sandboxed, escaped for the platform, within its length limit, in tones."""

from __future__ import annotations

import pytest

from community.templates import TemplateRenderError, check, choose_tone, limit_for, render, render_template

LINK = "https://help.acme.example/articles/reset-password"


@pytest.mark.parametrize("body", [
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ author_name.__init__.__globals__ }}",
    "{% set x = [] %}{{ x.append(1) }}",  # the immutable sandbox refuses mutation too
    "{{ undefined_variable }}",
    "{% if %}",
    "{{ 1 / 0 }}",
])
def test_the_sandbox_refuses_internals_mutation_unknown_names_and_broken_syntax(body):
    with pytest.raises(TemplateRenderError):
        render(body, {"author_name": "Ana"}, platform="x")


def test_x_replies_stay_within_280_characters_and_keep_the_article_link_whole():
    body = "Hi {{ author_name }}, " + "here is a long explanation of the steps. " * 20 + "{{ article_url }}"
    text = render(body, {"author_name": "Ana", "article_url": LINK}, platform="x", link=LINK)
    assert len(text) <= 280 and text.endswith(LINK) and "…" in text
    assert limit_for("x") == 280


def test_a_short_reply_is_left_untouched_and_longer_platforms_allow_more():
    body = "Hi {{ author_name }}, see {{ article_url }}"
    assert render(body, {"author_name": "Ana", "article_url": LINK}, platform="x", link=LINK) == f"Hi Ana, see {LINK}"
    long = "word " * 100
    assert render(long, {}, platform="reddit") == long.strip()


def test_the_authors_name_cannot_inject_markup_mentions_or_template_code():
    ctx = {"author_name": "@everyone [click](https://evil.example) <b>{{ 7*7 }}</b>"}
    reddit = render("Hi {{ author_name }}!", ctx, platform="reddit")
    assert "[click](" not in reddit and "<b>" not in reddit and "49" not in reddit
    x = render("Hi {{ author_name }}!", ctx, platform="x")
    assert "@everyone" not in x and "49" not in x
    assert render("Hi {{ author_name }}!", {"author_name": "\u202e\x00  "}, platform="x") == "Hi there!"


@pytest.mark.parametrize("display_name,greeted", [
    ("Sam · call 206-555-0177", "Sam"),
    ("Dana | dana.k@example.com | 206-555-0166", "Dana"),
    ("Tim tim.w@example.com", "Tim"),
    ("Ben 07700 900123", "Ben"),
    ("Mary (she/her)", "Mary"),
    ("4155550142", "there"),
    ("Anne-Marie O'Neil", "Anne-Marie O'Neil"),
])
def test_a_greeting_never_repeats_contact_details_people_put_in_their_display_name(display_name, greeted):
    text = render("Hi {{ author_name }}, sorry to see you go!", {"author_name": display_name}, platform="x")
    assert text == f"Hi {greeted}, sorry to see you go!"
    assert not any(ch.isdigit() for ch in text) and "example" not in text


def test_tone_variants_fall_back_to_friendly_then_the_first():
    variants = {"formal": "Hello {{ author_name }}.", "friendly": "Hey {{ author_name }}!"}
    assert render_template(variants, {"author_name": "Ana"}, platform="x", tone="formal") == "Hello Ana."
    assert render_template(variants, {"author_name": "Ana"}, platform="x", tone="pirate") == "Hey Ana!"
    assert choose_tone({"formal": "A"}, "casual") == "A"
    with pytest.raises(TemplateRenderError):
        choose_tone({}, "formal")


def test_a_body_is_compiled_once_and_a_broken_one_is_refused_every_time():
    from community.templates import compiled

    body = "Hi {{ author_name }}, one compile for many replies"
    assert compiled(body) is compiled(body)
    assert render(body, {"author_name": "Ana"}, platform="x") == "Hi Ana, one compile for many replies"
    assert render(body, {"author_name": "@Bo"}, platform="x") == "Hi Bo, one compile for many replies"
    for _ in range(2):
        with pytest.raises(TemplateRenderError):
            render("{% if %}", {}, platform="x")


@pytest.mark.parametrize("body", [
    "{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}",  # 10^8 steps
    "{% for a in 'abc' %}{% for b in 'abc' %}{% for c in 'abc' %}x{% endfor %}{% endfor %}{% endfor %}",
    "{{ 'ab' * 20000000 }}",  # a 40 MB string
    "{{ [1] * 10**7 }}",
    "{{ 2 ** 100000 }}",
    '{% for i in range(200) %}{% for j in range(200) %}{{ "x" * 20000 }}{% endfor %}{% endfor %}',  # 800 MB
    '{% for c in "x" * 20000 %}{% for d in "y" * 20000 %}z{% endfor %}{% endfor %}',  # 4 x 10^8 steps
])
def test_a_template_cannot_ask_for_unbounded_work(body):
    """Any agent or bot with the templates scope saves templates, and they render inside the
    service: loops, repetition and powers are bounded, refused at once rather than run for seconds."""
    import time

    started = time.perf_counter()
    with pytest.raises(TemplateRenderError):
        render(body, {}, platform="x")
    assert time.perf_counter() - started < 0.5


def test_loops_nested_too_deep_are_refused_where_a_template_is_saved_or_imported():
    check("{% for a in items %}{% for b in a %}{{ b }}{% endfor %}{% endfor %}")  # two deep is fine
    with pytest.raises(TemplateRenderError, match="nest loops"):
        check("{% for a in x %}{% for b in a %}{% for c in b %}{{ c }}{% endfor %}{% endfor %}{% endfor %}")
    with pytest.raises(TemplateRenderError):
        check("Hi {{ author_name ")


def test_ordinary_loops_and_an_author_without_a_name_still_render():
    body = "Hi {{ author_name }}! Steps: {% for i in range(1, 4) %}{{ i }}. {% endfor %}"
    assert render(body, {"author_name": None}, platform="x") == "Hi there! Steps: 1. 2. 3."
    body = "{% for link in links %}{{ link }} {% endfor %}"
    assert render(body, {"links": ["a", "b"]}, platform="x") == "a b"
