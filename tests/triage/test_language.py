"""The language guess is good enough to pick a reply template, and never fails."""

import pytest
from hypothesis import given, strategies as st

from triage.language import detect_language


@pytest.mark.parametrize("text,lang", [
    ("@AcmeHelp I can't log in to my account since this morning", "en"),
    ("¿hay una caída en España? no carga nada y ya reinicié el router", "es"),
    ("impossible de me connecter depuis ce matin, le mot de passe est refusé", "fr"),
    ("ich bekomme keinen Bestätigungscode per SMS, was kann ich tun?", "de"),
    ("não consigo entrar na minha conta, o que faço para resolver", "pt"),
])
def test_common_languages_are_recognised(text, lang):
    assert detect_language(text) == lang


def test_text_without_words_is_undetermined():
    assert detect_language("🔥🔥🔥 1234 !!!") == "und"


@given(st.text(max_size=2000))
def test_any_text_gets_a_known_code(text):
    assert detect_language(text) in {"en", "es", "fr", "de", "pt", "it", "nl", "und"}
