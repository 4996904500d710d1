"""The escalation keyword rules fire on unambiguous reports only, and name the signal."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triage.rules import sensitivity_rules

ESCALATE = [
    ("someone hacked my account and changed the email", "security", "account hacked"),
    ("I think I got hacked, there are playlists I didn't make", "security", None),
    ("somebody logged into my account from Brazil", "security", "unknown login"),
    ("my password was changed and it was not me", "security", "credentials changed by someone else"),
    ("got a fake support text asking for my login code", "security", "phishing"),
    ("I was a victim of a SIM swap last night", "security", "SIM swap"),
    ("my phone was stolen with the app logged in", "security", "lost or stolen card or phone"),
    ("there are charges on my card I never made", "fraud", "transactions the customer did not make"),
    ("3 unauthorized payments to Acme this week", "fraud", "unauthorized transactions"),
    ("someone is using my card for a premium plan", "fraud", "someone using the customer's card"),
    ("I got scammed by a fake refund page", "fraud", "scam"),
    # the rules of December 6: what the customer disowns, codes read out, numbers moved, phones left behind
    ("my profile picture and bio got changed overnight, wasn't me", "security", "changes the customer did not make"),
    ("keep getting login approval requests and I didn't trigger any of them", "security", "unrequested one-time codes"),
    ("account locked after failed attempts, who is trying to get into it?", "security", "someone trying to get in"),
    ("a man called from your 'fraud team' and asked for the code you texted. I gave it to him", "security",
     "one-time code given to a caller"),
    ("my number got ported to another network and I never asked for that", "security",
     "phone number moved without the customer"),
    ("got pickpocketed on the tram, both cards gone", "security", "lost or stolen card or phone"),
    ("left my phone in a taxi last night and the banking app is on it", "security", "lost or stolen card or phone"),
    ("you've been charging me £4.99 a month for cloud storage I never agreed to", "fraud",
     "charges for something the customer never took"),
    ("a letter about my new loan came today, never applied for a loan with anyone", "fraud",
     "an account opened in the customer's name"),
    ("three purchases on my card at a shop in Leeds, none of this was me", "fraud", "transactions the customer did not make"),
    ("charged $12.99 for premium but I've only ever used the free plan", "fraud", "charges for something the customer never took"),
    ("the 'support agent' said I had to pay the fee in steam gift cards", "fraud", "scam"),
    ("Whoever is getting in is changing the password before we can", "security", "someone else in the account"),
    ("my email was changed on me along with my password", "security", "credentials changed by someone else"),
    ("I lost my visacard so I can't pay this month", "security", "lost or stolen card or phone"),
    ("It was used by someone else and I don't know how to get it back", "security", "someone else in the account"),
    ("family plan invites went to adresses i dont know!", "security", "activity the customer does not recognise"),
    ("my login: __email__ password: edeire20021967", "security", "password written in the post"),
    ("I need help with a subscription I am being charged for that I do not have!", "fraud",
     "charges for an account the customer does not have"),
    ("I don't have an account with you but money is going out of my bank?", "fraud",
     "charges for an account the customer does not have"),
    ("six login codes by text this morning and I'm not trying to sign in anywhere", "security", "unrequested one-time codes"),
    ("there's an unrecognised device on my account called DESKTOP-7Q2", "security", "suspicious activity"),
    ("a windows laptop in my sessions list, I have never owned a windows laptop", "security",
     "activity the customer does not recognise"),
    ("my recovery email has been changed and now I can't get in", "security", "credentials changed by someone else"),
    ("pretty sure they have full access to my account now", "security", "someone else in the account"),
    ("my account was accessed from Lagos last night", "security", "account hacked"),
    ("a stranger added himself to my family plan", "security", "someone else in the account"),
    ("three charges for an add-on I never added", "fraud", "transactions the customer did not make"),
    ("you keep billing me for a subscription I never signed up for", "fraud", None),
    ("reported the payments as fraudulent to my bank", "fraud", "reported as fraud"),
]
# The encoder reads English only: the rules carry the unambiguous phrases of four other languages.
OTHER_LANGUAGES = [
    ("hackearon mi cuenta anoche y cambiaron el correo", "security"),
    ("minha senha foi roubada, alguém entrou no meu perfil", "security"),
    ("mon compte a été piraté, je ne peux plus me connecter", "security"),
    ("Mein Konto wurde gehackt, bitte sperren", "security"),
    ("alguien cambió mi contraseña, no puedo entrar", "security"),
    ("me cobraron dos suscripciones que nunca contraté", "fraud"),
    ("tem uma compra de R$ 300 no meu cartão que não fiz", "fraud"),
    ("des prélèvements que je n'ai pas autorisé sur mon compte", "fraud"),
    ("perdí mi celular en el bus y tengo la app del banco abierta", "security"),
    ("eine Abbuchung über 89 Euro, die ich nie autorisiert habe", "fraud"),
    ("caí num golpe de um falso vendedor no site de vocês", "fraud"),
]
EVERYDAY_OTHER_LANGUAGES = [
    "no me gusta la nueva versión, nunca he visto algo tan lento",
    "mi cuenta no funciona desde ayer",
    "je n'ai jamais aimé cette appli",
    "não consigo entrar na minha conta, esqueci a senha",
    "el precio es un robo jaja",
    "alguien sabe si hay descuento para estudiantes?",
]
FIGURATIVE = [
    "this new price is a scam lol",
    "the finale stole my heart",
    "what a fraud of a playlist",
    "life hack: download before the flight",
    "password reset email never shows up. checked spam, promotions, all of it",
    "I hacked together a playlist for the party",
    "my cat stole my headphones again",
    "how do I change my password?",
    "Can someone get in touch with me? Still no reply",
    "someone got in touch with me yesterday, all sorted",
    "Sent a DM. Changed my password now.",
    "I lost my playlist after the update",
    "I don't have an account yet, how much will premium be charged?",
    "you've been charging me twice for premium and I don't have a student account anymore",
    "can't vote because I don't have an account. Will spend my money somewhere else",
    "they never applied for asylum, send them back",
    "who is trying to get in touch with me from your team?",
    "I left my phone in the car, will check the code when I'm back",
    "I changed my plan last week, did it go through?",
    "got mugged off with that delivery fee again",
    "I've only ever used the free version and it's great",
    "my verification code never arrived, can you resend it?",
]


@pytest.mark.parametrize("text,level,reason", ESCALATE)
def test_unambiguous_reports_escalate_and_say_why(text, level, reason):
    got, reasons = sensitivity_rules(text)
    assert got == level
    assert reasons and (reason is None or reason in reasons)


@pytest.mark.parametrize("text", FIGURATIVE)
def test_figurative_and_everyday_uses_do_not_fire(text):
    assert sensitivity_rules(text) == (None, [])


@pytest.mark.parametrize("text,level", OTHER_LANGUAGES)
def test_reports_in_other_languages_escalate(text, level):
    assert sensitivity_rules(text)[0] == level


@pytest.mark.parametrize("text", EVERYDAY_OTHER_LANGUAGES)
def test_everyday_posts_in_other_languages_do_not_fire(text):
    assert sensitivity_rules(text) == (None, [])


def test_fraud_wins_when_money_moved_and_both_reasons_are_kept():
    level, reasons = sensitivity_rules("my account was hacked and there are charges I didn't make")
    assert level == "fraud"
    assert "account hacked" in reasons and "transactions the customer did not make" in reasons


@pytest.mark.parametrize("text,level", [
    ("One of our company cards has a subscription linked to it. We don\u2019t know who or how.", "fraud"),
    ("my ex knows my password and keeps logging into my account and changing settings", "security"),
])
def test_phone_typography_and_people_the_customer_names(text, level):
    assert sensitivity_rules(text)[0] == level


# A loose word ("hacked", "scammed", "suspicious activity") in a post about the news, someone else,
# games, a false alarm or a flag the customer explains as their own doing: the rules stay silent and
# the heads decide.
DISARMED = [
    "half the players in ranked tonight were hackers with aimbots, sort your anticheat out",
    "saw on the news that another bank got hacked, what are you doing to keep customer data safe?",
    "got a suspicious login alert this morning but it was just me on my new phone, how do I clear it",
    "my coworker got scammed by a fake support number on google, can you pin the official one?",
    "not been hacked or anything, I just want to set up two-step verification",
    "thought I got hacked when my history filled with cartoons, then remembered the kids use my tablet",
    "people keep getting phishing texts with your logo, maybe send everyone a warning",
    "my sister's account got hacked last month so now I'm paranoid, how do I turn on 2fa on mine?",
    "you lot scammed me with that £15 seat fee and I still got a middle seat",
    "got scammed by your late fees again, £12 for paying a day late, refund it",
    # the demo day: a warning to others, and an advert, are nobody's own report
    ("PSA: fake 'Acme' texts about a suspended account\n\nGot an SMS this morning: 'Acme: your account is suspended due "
     "to a billing issue, verify within 24h at acme-verify-account.co'. It's phishing, the real site is acme.example. "
     "Don't click it."),
    "heads up everyone, phishing emails with the acme logo going round, beware",
    "selling cheap premium accounts, hacked from nobody, lifetime warranty. dm me",
]
# The customer says it happened to them, or names a loss no context explains away: the rules speak.
STILL_ESCALATE = [
    ("my account got hacked last night, saw on the news it's happening to lots of people", "security"),
    ("my mum's account was hacked and whoever it is keeps messaging her friends for money", "security"),
    ("someone hacked into my account and played songs all night, nope, not my kids", "security"),
    ("I was scammed by a fake refund page, my own card was charged £200", "fraud"),
    ("saw the news about the breach and there are charges on my card I never made", "fraud"),
    ("my card was stolen yesterday, it was just me at the gym and now it's gone", "security"),
    ("you guys scammed me, three charges for a plan I never signed up for", "fraud"),
    ("someone scammed me out of my account with a fake support page, you lot never answered", "fraud"),
    # the context words in a report: none of them is about someone else, the news or a false alarm
    ("I thought my account was safe but someone logged in from Russia", "security"),
    ("it was me who reported it, someone is still logging into my account", "security"),
    ("someone logged in on mine and changed the email", "security"),
    ("how do I stop them before it happens again, someone keeps logging into my account", "security"),
    ("nope, still can't log in, someone changed my password", "security"),
    ("my mum noticed someone logged into my account, how do I make it safe?", "security"),
    # a warning from someone who fell for it, an advert from someone whose account it was
    ("PSA: phishing texts going round, don't click. I clicked one and typed my password", "security"),
    ("psa don't click the phishing link, clicked it and entered my card number, now what", "security"),
    ("someone is selling cheap premium accounts on telegram and they hacked my account to do it", "security"),
]


@pytest.mark.parametrize("text", DISARMED)
def test_loose_words_in_a_post_about_others_news_games_or_the_customers_own_doing_do_not_fire(text):
    from triage.rules import disarming_context

    assert disarming_context(text) is not None
    assert sensitivity_rules(text) == (None, [])


@pytest.mark.parametrize("text,level", STILL_ESCALATE)
def test_a_loss_the_customer_reports_as_their_own_escalates_whatever_the_context(text, level):
    assert sensitivity_rules(text)[0] == level


def test_context_in_another_paragraph_of_a_long_post_does_not_disarm_the_report():
    """In a forum post the words around a report may belong to another story."""
    from triage.rules import disarming_context

    other_story = "Loving the new release. Saw on the news that another music app got hacked last week, wild."
    text = (other_story + " Anyway, somebody logged into my account from another country on Sunday and changed "
            "the language. Is there a way to see every device? " + "The rest of this post is about podcasts. " * 6)
    assert disarming_context(other_story) == "news or hearsay"
    assert len(text) > 320
    level, reasons = sensitivity_rules(text)
    assert level == "security" and "unknown login" in reasons


def _project_texts() -> list[str]:
    """Every text the project labelled itself (social posts, brands' posts, issue examples)."""
    import csv
    from pathlib import Path

    import triage

    texts = []
    for path in sorted((Path(triage.__file__).parent / "data").glob("*.csv")):
        with path.open(encoding="utf-8") as fh:
            texts += [row["text"] for row in csv.DictReader(fh) if row.get("text")]
    return texts


_RULE_WORDS = ["someone", "somebody", "else", "hacked", "my", "account", "email", "password", "changed",
               "charges", "I", "never", "made", "didn't", "don't", "know", "who", "card", "stolen", "lost",
               "phone", "scammed", "unauthorized", "payments", "ex-boyfriend", "logged", "into", "SIM", "swap",
               "Hacked", "ſtolen", "KNOW", "whoever", "getting", "in", "statement", "charged", "for", "not", "mine",
               "subscription", "that", "have", "a", "fake", "support", "text", "codes", "asked", "block", ".", "!",
               "trying", "to", "log", "access", "accessed", "unrecognised", "random", "device", "breach", "of",
               "added", "himself", "hackearon", "cuenta", "no", "fui", "yo", "alguém", "mudou", "compte",
               "piraté", "jamais", "prélèvements", "cobraron", "nunca", "contraté",
               "wasn't", "me", "none", "this", "was", "did", "do", "any", "it", "trigger", "approval", "requests",
               "who", "is", "ported", "line", "sim", "another", "mugged", "off", "left", "taxi", "applied", "only",
               "ever", "used", "free", "gift", "cards", "told", "pay", "called", "gave", "renamed", "set", "up"]


@pytest.mark.parametrize("text", [t for t, _, _ in ESCALATE] + FIGURATIVE + [t for t, _ in OTHER_LANGUAGES]
                         + EVERYDAY_OTHER_LANGUAGES)
def test_the_anchor_prefilter_never_hides_a_match_from_the_examples_here(text):
    _assert_anchors_cover(text)


def test_the_anchor_prefilter_never_hides_a_match_in_the_projects_labelled_text():
    texts = _project_texts()
    assert len(texts) > 1000
    for text in texts:
        _assert_anchors_cover(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_RULE_WORDS), min_size=1, max_size=14).map(" ".join))
def test_the_anchor_prefilter_never_hides_a_match_in_rule_like_text(text):
    """Anchors are looked up case-folded: "ſtolen" and "KNOW" still reach the rules that need them."""
    _assert_anchors_cover(text)


def _assert_anchors_cover(text: str) -> None:
    from triage.rules import _FRAUD, _QUOTES, _SEC, anchors_in

    text = text.translate(_QUOTES)
    found = anchors_in(text)
    for rx, why, anchors in _SEC + _FRAUD:
        if rx.search(text):
            assert not anchors.isdisjoint(found), (why, sorted(anchors), text)


def _plain_alternation_anchors(text: str) -> set[str]:
    """What the anchor lookup found before it was a trie: every anchor in one alternation, longest first."""
    import re

    from triage.rules import _ANCHORS, _IMPLIED

    found: set[str] = set()
    for anchor in re.findall("(?=(" + "|".join(map(re.escape, _ANCHORS)) + "))", text.casefold()):
        found |= _IMPLIED[anchor]
    return found


def test_the_anchor_trie_finds_what_a_plain_alternation_of_the_anchors_finds():
    from triage.rules import anchors_in

    texts = _project_texts() + [t for t, _, _ in ESCALATE] + FIGURATIVE
    assert all(anchors_in(t) == _plain_alternation_anchors(t) for t in texts)
    assert anchors_in("Someone else changed it, none of us did") >= {"someone else", "someone", "none of"}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_RULE_WORDS), min_size=1, max_size=14).map(" ".join) | st.text(max_size=80))
def test_the_anchor_trie_agrees_with_a_plain_alternation_on_any_text(text):
    from triage.rules import anchors_in

    assert anchors_in(text) == _plain_alternation_anchors(text)
