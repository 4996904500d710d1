"""The language guess is good enough to pick a reply template, and never fails."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


@pytest.mark.parametrize("text,lang", [
    ("Mon compte a été piraté, quelqu'un a utilisé ma carte", "fr"),  # "a" is not English only
    ("J'ai été débité deux fois", "fr"),
    ("Ma commande n'est jamais arrivée", "fr"),
    ("Je n'arrive plus à me connecter à l'application", "fr"),
    ("Me robaron la tarjeta", "es"),
    ("Me cobraron dos veces", "es"),
    ("Alguien entró en mi cuenta", "es"),
    ("Jemand hat meine Karte benutzt", "de"),
    ("Mein Konto wurde gehackt", "de"),
    ("Minha conta foi invadida", "pt"),
    ("Fui cobrado duas vezes", "pt"),
    ("Qualcuno ha usato la mia carta", "it"),
    ("Mi hanno addebitato due volte", "it"),
    ("Il pacco non è arrivato", "it"),
])
def test_short_posts_in_other_languages_are_recognised(text, lang):
    assert detect_language(text) == lang


@pytest.mark.parametrize("text", [
    "My card was stolen",
    "A man stole my card",
    "Card payment is showing as pending",
    "As long as it's not Chris Evans standing in!!!!",
    "You’re welcome!",
    "Watching @user make Josh Hamilton whiff is a wonderful thing. C'mon @user",
    "iPhone 8 Plus, iOS 11.1.2",
    "Desktop version is 1.0.64.399.g4637b02a on Mac OS X 10.13",
    "Im using android version",
    "Ha ha love it!",
])
def test_short_english_posts_stay_english(text):
    assert detect_language(text) == "en"


def test_text_without_words_is_undetermined():
    assert detect_language("🔥🔥🔥 1234 !!!") == "und"


@given(st.text(max_size=2000))
def test_any_text_gets_a_known_code(text):
    assert detect_language(text) in {"en", "es", "fr", "de", "pt", "it", "nl", "und"}
