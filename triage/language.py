"""A small stop-word language guess: enough to route replies and templates, no model to load."""

from __future__ import annotations

import re

_WORDS = re.compile(r"[a-zà-ÿ']+")
STOP = {
    "en": set("the and is it you to my i a of for on this that not can with have was are your me do what why how".split()),
    "es": set("el la los las de que y en un una por para con no mi es se lo su al pero como más ya".split()),
    "fr": set("le la les de des et en un une pour pas je est que qui dans ce mon ne sur avec vous".split()),
    "de": set("der die das und ist nicht ich ein eine zu mit den von mein auf für es sie wir".split()),
    "pt": set("o a os as de que e em um uma para com não meu é se do da no na por".split()),
    "it": set("il la di che e è un una per non mi con del della sono ho lo gli".split()),
    "nl": set("de het een en van is niet ik je dat op te met voor mijn zijn".split()),
}


_LANGS = {}  # word -> the languages whose stop list holds it (one lookup per word, not one per language)
for _lang, _stop in STOP.items():
    for _word in _stop:
        _LANGS.setdefault(_word, []).append(_lang)


def detect_language(text: str) -> str:
    words = _WORDS.findall(text.lower())
    if not words:
        return "und"
    scores = dict.fromkeys(STOP, 0)
    for word in words:
        for lang in _LANGS.get(word, ()):
            scores[lang] += 1
    best = max(scores, key=scores.get)  # the first of equals, in STOP's order
    if scores[best] == 0:
        return "en" if text.isascii() else "und"
    return best
