"""The triage engine: every score with model, version and explanation; the cache, the cascade and
micro-batching; and a smoke test of accuracy on examples written for the tests."""

from __future__ import annotations

import asyncio

import pytest

from triage.engine import TriageEngine
from triage.protocol import DEFAULT_ISSUE_TYPES, TriageInput

# written for these tests (not in any training file)
SMOKE = [
    ("@AcmeHelp somebody broke into my account last night and swapped the email so I can't recover it", "security"),
    ("@AcmeHelp I see 4 payments to acme on my bank app this morning and I made none of them", "fraud"),
    ("@AcmeHelp my wallet got nicked on the train, card inside is linked to acme, pls block", "security"),
    ("@AcmeHelp the new price is a total scam lmao, still paying tho", "none"),
    ("@AcmeHelp how do I add a song to a playlist on the web player", "none"),
    ("@AcmeHelp the season finale stole my whole weekend 😂", "none"),
    # other languages (the heads learn them from data/sensitivity_languages_train.csv)
    ("@AcmeAyuda alguien entró a mi cuenta y cambió el correo, ya no puedo iniciar sesión", "security"),
    ("@AcmeAjuda apareceram 3 compras no meu cartão que eu não fiz, alguém clonou", "fraud"),
    ("@AcmeAide on m'a volé mon téléphone dans le métro, l'appli acme est dessus, bloquez mon compte svp", "security"),
    ("@AcmeHilfe jemand hat sich in mein Konto eingeloggt und meine Handynummer geändert", "security"),
    ("@AcmeHulp er staan twee betalingen van 39 euro op mijn rekening die ik niet heb gedaan", "fraud"),
    ("@AcmeAyuda el nuevo precio es un robo jaja pero bueno sigo pagando", "none"),
    ("@AcmeAjuda que golpe esse final de temporada, chorei demais 😂", "none"),
    ("@AcmeAide l'appli plante depuis la mise à jour, impossible d'ouvrir mes playlists", "none"),
    # known misses, kept in view (README, "Boundaries and other languages"): they pass when fixed
    pytest.param("@AcmeHilfe wie schalte ich die Zwei-Faktor-Anmeldung ein?", "none",
                 marks=pytest.mark.xfail(strict=True, reason="a 2FA question in German reads as security")),
]


def score(engine: TriageEngine, text: str, **kw):
    return engine.score_texts([TriageInput(text=text, **kw)])[0]


def test_every_score_names_its_label_model_version_and_explanation(transformer_engine):
    out = score(transformer_engine, "@AcmeHelp my account was hacked and they bought gift cards with my card "
                                    "4111 1111 1111 1111")
    for task in ("sentiment", "sensitivity", "issue_type", "toxicity", "spam"):
        s = getattr(out, task)
        assert s.label in s.probabilities and 0 <= s.score <= 1
        assert s.model and s.version and s.explanation
    assert out.escalate and out.sensitivity.label in ("security", "fraud")
    assert out.pii_exposed and [p.type for p in out.pii] == ["card_number"]
    assert "4111" not in out.redacted_text
    assert out.issue_type.label in DEFAULT_ISSUE_TYPES
    assert out.priority >= 70 and out.priority_explanation
    assert any(e.startswith("rule:") for e in out.sensitivity.explanation)


def test_pii_in_a_private_message_is_not_exposed(transformer_engine):
    out = score(transformer_engine, "my email is sam@example.com", is_public=False)
    assert out.pii and not out.pii_exposed


@pytest.mark.parametrize("text,expected", SMOKE)
def test_escalation_smoke(transformer_engine, text, expected):
    label = score(transformer_engine, text).sensitivity.label
    if expected == "none":
        assert label in ("none", "account")
    else:
        assert label in ("security", "fraud")


def test_sentiment_toxicity_and_spam_smoke(transformer_engine):
    assert score(transformer_engine, "@AcmeHelp I love you guys, best support ever 😍").sentiment.label == "positive"
    assert score(transformer_engine, "@AcmeHelp worst update ever, everything is broken again").sentiment.label == "negative"
    assert score(transformer_engine, "@AcmeHelp you are all useless idiots").toxicity.label == "offensive"
    assert score(transformer_engine, "WIN a free iPhone!!! click bit.ly/win-now and claim your prize").spam.label == "spam"
    assert score(transformer_engine, "@AcmeHelp is the app down? error 503").issue_type.label == "outage"


def test_the_cache_scores_a_repeated_text_once(cascade_engine):
    engine = TriageEngine(mode="transformer", encoder=cascade_engine.encoder, cache_size=100)
    engine.score_texts([TriageInput("@AcmeHelp is the app down again?")])
    before = engine.stats["encoded"]
    outs = engine.score_texts([TriageInput("@someone is the app DOWN again?   https://t.co/x"),
                               TriageInput("@AcmeHelp is the app down again?")])
    assert engine.stats["encoded"] == before  # retweets and copies hit the cache
    assert outs[0].sentiment == outs[1].sentiment


def test_the_cascade_settles_clear_texts_without_the_encoder(cascade_engine):
    engine = TriageEngine(mode="cascade", encoder=cascade_engine.encoder, cache_size=0)
    clear = ["@AcmeHelp thank you so much, love it!!", "@AcmeHelp thanks, you guys are great"] * 5
    engine.score_texts([TriageInput(t) for t in clear])
    hard = ["@AcmeHelp someone logged into my account from Russia"]
    engine.score_texts([TriageInput(t) for t in hard])
    assert engine.stats["encoded"] <= len(hard) + 2  # rules send the sensitive one to the encoder


def test_cascade_agrees_with_the_transformer_on_clear_cases(cascade_engine, transformer_engine):
    texts = ["@AcmeHelp thank you so much, love it!!", "@AcmeHelp how do I cancel my subscription?",
             "@AcmeHelp is acme down? error 503", "@AcmeHelp someone hacked my account"]
    a = cascade_engine.score_texts([TriageInput(t) for t in texts])
    b = transformer_engine.score_texts([TriageInput(t) for t in texts])
    assert [x.sensitivity.label for x in a] == [x.sensitivity.label for x in b]
    assert sum(x.issue_type.label == y.issue_type.label for x, y in zip(a, b)) >= 3


def test_the_cascade_settles_toxicity_only_when_the_cheap_head_is_clearly_on_one_side(cascade_engine):
    """Inside the band the transformer decides; abuse in care language is not waved through."""
    from triage.engine import CASCADE_BANDS

    engine = TriageEngine(mode="cascade", encoder=cascade_engine.encoder, cache_size=0)
    texts = ["@AcmeHelp you are all useless idiots", "@AcmeHelp fix your shit app, you morons",
             "@AcmeHelp this update is garbage, who approved it", "@AcmeHelp wtf is wrong with the app today",
             "@AcmeHelp thanks, the new playlist feature is great", "@AcmeHelp how do I change my plan?"]
    cheap = engine.cheap["toxicity"]
    _, low, high = CASCADE_BANDS["toxicity"]
    p_off = cheap.proba(texts, engine.static.embed(texts))[:, cheap.labels.index("offensive")]
    outs = engine.score_texts([TriageInput(t) for t in texts])
    unsure = [low <= p < high for p in p_off]
    assert any(unsure) and not all(unsure), p_off  # both paths are exercised
    for text, is_unsure, out in zip(texts, unsure, outs):
        if is_unsure:  # other tasks may send a text to the encoder too, but this one must go
            assert out.toxicity.model.startswith("all-MiniLM-L6-v2"), text
        else:
            assert out.toxicity.model in ("toxicity-cheap-head", f"{engine.encoder_name}+toxicity-head"), text
    assert [o.toxicity.label for o in outs[:2]] == ["offensive", "offensive"]
    assert [o.toxicity.label for o in outs[-2:]] == ["not_offensive", "not_offensive"]


SUBTLE = [  # no keyword rule fires on these: the heads alone must see them
    ("@NovaBankHelp there's a payment to a shop in Leeds on my card this morning, I was asleep at home", True),
    ("@AcmeHelp my recovery email on the account is some address I've never seen", True),
    ("@AcmeHelp i got a text from you asking me to confirm my card PIN, I already replied with it", True),
    ("@AcmeHelp my phone number on the profile isn't mine anymore and I didn't change it", True),
    ("@AcmeHelp how do I change my plan?", False),
    ("@AcmeHelp the app keeps crashing on my pixel", False),
]


def test_the_distilled_cascade_escalates_subtle_reports_as_the_transformer_does(cascade_engine, transformer_engine):
    """The cheap sensitivity head settles most care tweets, but never a report the rules miss
    into a public answer."""
    from triage.protocol import ESCALATE_LEVELS
    from triage.rules import sensitivity_rules

    assert all(sensitivity_rules(t)[0] is None for t, _ in SUBTLE)
    items = [TriageInput(t) for t, _ in SUBTLE]
    cheap = [o.sensitivity.label in ESCALATE_LEVELS for o in cascade_engine.score_texts(items)]
    full = [o.sensitivity.label in ESCALATE_LEVELS for o in transformer_engine.score_texts(items)]
    assert cheap == full == [escalate for _, escalate in SUBTLE]


# The sensitivity head alone escalates each of these; each says it is not the customer's own trouble.
NOT_THEIR_OWN = [
    ("saw on the news that people are getting fake bank texts asking for card details, is this one real?",
     "news or hearsay"),
    ("my coworker got her card details stolen by a fake delivery text, how do i keep mine safe?",
     "someone else's trouble"),
    ("the app says suspicious activity on my card but it was just me buying a sofa online", "the customer's own doing"),
    # the demo day: a public anti-phishing PSA and an account-selling advert opened cases
    (("PSA: fake 'Acme' texts about a suspended account\n\nGot an SMS this morning: 'Acme: your account is suspended "
      "due to a billing issue, verify within 24h at acme-verify-account.co'. It's phishing, the real site is "
      "acme.example. Don't click it."), "a warning to others"),
    ("cheap acme premium accounts $2/month, lifetime warranty. dm me 👇👇 @AcmeHelp", "an advert selling accounts"),
]


def test_a_head_does_not_escalate_a_post_about_news_someone_else_or_the_customers_own_doing(
        transformer_engine, cascade_engine):
    from triage.engine import _picks
    from triage.protocol import ESCALATE_LEVELS
    from triage.text import normalize_for_model

    texts = [t for t, _ in NOT_THEIR_OWN]
    head = transformer_engine.full["sensitivity"]
    alone = _picks(head, head.proba(texts, transformer_engine.encoder.features([normalize_for_model(t) for t in texts])))
    assert all(head.labels[i] in ESCALATE_LEVELS for i in alone)
    for (text, why), out in zip(NOT_THEIR_OWN, transformer_engine.score_texts([TriageInput(t) for t in texts])):
        assert not out.escalate
        assert out.sensitivity.explanation[0] == f"not escalated: {why}"
        assert out.sensitivity.score == out.sensitivity.probabilities[out.sensitivity.label]
    assert not any(o.escalate for o in cascade_engine.score_texts([TriageInput(t) for t in texts]))


def test_a_customer_who_says_it_happened_to_them_escalates_whatever_else_the_post_says(transformer_engine):
    out = score(transformer_engine, "@AcmeHelp my account got hacked last night, saw on the news it's happening to "
                                    "lots of people, how do I get it back?")
    assert out.escalate and not any(e.startswith("not escalated") for e in out.sensitivity.explanation)


async def test_concurrent_callers_are_coalesced_into_one_batch(cascade_engine):
    engine = TriageEngine(mode="transformer", encoder=cascade_engine.encoder, cache_size=0, max_wait_ms=50)
    calls = []
    original = engine.score_texts
    engine.score_texts = lambda items: calls.append(len(items)) or original(items)  # type: ignore[method-assign]
    results = await asyncio.gather(*[engine.score_batch([TriageInput(f"@AcmeHelp question number {i}?")])
                                     for i in range(6)])
    assert calls == [6]
    assert [len(r) for r in results] == [1] * 6


async def test_a_full_batch_is_scored_without_waiting_for_the_timer(cascade_engine):
    engine = TriageEngine(mode="cascade", encoder=cascade_engine.encoder, cache_size=0, batch_size=4,
                          max_wait_ms=60_000)
    items = [TriageInput(f"@AcmeHelp where is order {i}?") for i in range(4)]
    results = await asyncio.wait_for(engine.score_batch(items), timeout=30)  # not the 60 s timer
    assert len(results) == 4


async def test_the_event_loop_keeps_running_while_texts_are_encoded(cascade_engine):
    engine = TriageEngine(mode="transformer", encoder=cascade_engine.encoder, cache_size=0, max_wait_ms=0)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    await engine.score_batch([TriageInput(f"@AcmeHelp text number {i} about my playlist") for i in range(64)])
    task.cancel()
    assert ticks > 3  # the encoder ran in a worker thread


def test_explanations_never_quote_personal_data(transformer_engine):
    out = score(transformer_engine, "@AcmeHelp refund to card 4111 1111 1111 1111 or mail me at jo.smith@example.com")
    text = " ".join(e for task in ("sentiment", "sensitivity", "issue_type", "toxicity", "spam")
                    for e in getattr(out, task).explanation)
    for secret in ("4111", "1111", "jo.smith", "example.com"):
        assert secret not in text
    assert out.redacted_text == "@AcmeHelp refund to card [card_number] or mail me at [email]"


def test_heads_trained_on_the_sentence_embedding_alone_still_load(tmp_path, cascade_engine):
    from triage.train import fit_head

    texts = ["where is my parcel", "parcel not here", "book a table", "table for two please"] * 3
    labels = ["parcel", "parcel", "booking", "booking"] * 3
    emb = cascade_engine.encoder.encode(texts)  # 384 columns: a head from before the layer features
    fit_head("issue_type", texts, labels, emb, lexical_dim=2**10).save(tmp_path / "issue_type.npz")
    engine = TriageEngine(mode="transformer", custom_dir=tmp_path, encoder=cascade_engine.encoder, cache_size=0)
    assert score(engine, "is my parcel on its way?").issue_type.label == "parcel"


def test_a_sensitivity_head_with_an_escalation_cut_escalates_from_it():
    """A head may carry ``escalate_threshold``: it escalates once p(security) + p(fraud) reaches
    it, as the likelier of the two; below it, the likeliest other level. Without one: the argmax."""
    import numpy as np

    from triage.engine import _picks
    from triage.heads import Head

    head = Head(task="sensitivity", labels=["account", "fraud", "none", "security"], weights=np.zeros((16, 4)),
                bias=np.zeros(4), uses_embedding=False, lexical_dim=16, version="t", meta={"escalate_threshold": 0.38})
    p = np.array([[0.10, 0.15, 0.50, 0.25],   # p(escalate) 0.40: escalates, as security
                  [0.20, 0.10, 0.50, 0.20],   # 0.30: below the cut, none
                  [0.60, 0.30, 0.05, 0.05]])  # 0.35: below the cut, account
    assert [head.labels[i] for i in _picks(head, p)] == ["security", "none", "account"]
    head.meta.pop("escalate_threshold")
    assert [head.labels[i] for i in _picks(head, p)] == ["none", "none", "account"]


LONG_STORY = ("@AcmeHelp I've used the app since 2019 and it has mostly been great. The discover playlists are good "
              "and car mode works with my old stereo. I moved house last month and set everything up again on the "
              "new wifi, which took ages because the router is in the garage and the kitchen signal is terrible. ")
TAKEOVER = "Anyway today all my playlists were renamed in Russian and the email on the account is one I have never seen."


@pytest.mark.parametrize("mode", ["transformer", "cascade"])
def test_a_takeover_told_at_the_end_of_a_long_post_escalates(mode, transformer_engine, cascade_engine):
    from triage.rules import sensitivity_rules

    engine = transformer_engine if mode == "transformer" else cascade_engine
    assert sensitivity_rules(LONG_STORY + TAKEOVER) == (None, [])  # the heads must find it, not a keyword
    assert not score(engine, LONG_STORY).escalate
    long_post = score(engine, LONG_STORY + TAKEOVER)
    assert long_post.escalate and long_post.sensitivity.label == "security"
