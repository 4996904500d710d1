"""A small stop-word language guess: enough to route replies and templates, no model to load.

A word several languages share is weak evidence and counts for each of them by a share (``a`` is
English, French, Spanish, Portuguese and Italian alike): counted whole, it made a short French
post English ("Mon compte a été piraté" has one French stop word and two "a"). Elided articles
(``l'``, ``qu'``, ``dell'``), a few everyday customer-care words and letters only some languages
write (ñ, ß, ã, ç, ...) carry the short posts further."""

from __future__ import annotations

import re

_NOISE = re.compile(r"https?://\S+|www\.\S+|[@#]\w+")  # links, handles and hashtags say nothing
_WORDS = re.compile(r"[\w']+")
_ACRONYM = re.compile(r"\b[A-Z]{2,4}\b")
_LETTER = re.compile(r"[^\W\d_]")
STOP = {  # English's "plus" and "os" are in "iPhone 8 Plus" and "Mac OS", its "come" is not Italian's
    "en": set("the and is it you to my i a of for on this that not can with have was are your me do what "
              "why how in be but just get got no so at from they we he she there been has had will would "
              "could should an or if out up about all any again since when now please thanks still someone "
              "who which its as her his him our us them their then than too very like did does were one "
              "more some today tomorrow man good new come go going yo im am ha haha lol love thank thx ok "
              "yes hey hi hello sorry um said dont cant ive u ur c'mon plus os "
              "'re 's 't 've 'll 'd 'm".split()),
    "es": set("el la los las de que y en un una por para con no mi es se lo su al pero como más ya me del "
              "le muy tengo hace porque cuando está están esta este eso hay sin mis ni yo qué cómo también "
              "nada todo alguien ayer hoy han he puedo sigue ahora desde hasta otra otro nos les son ser "
              "fue fui estoy era vez veces dos nunca siempre sí cuenta tarjeta pedido compra ayuda hola "
              "gracias".split()),
    "fr": set("le la les de des et en un une pour pas je est que qui dans ce mon ne sur avec vous ma mes "
              "ton ta au aux du il elle nous ils sont ai suis été a très mais ou où y plus cette ces son sa "
              "fait peux rien toujours depuis encore ça être tout tous aucun aucune chez déjà hier moi lui "
              "votre notre vos nos donc comme non quand quelqu'un personne j' l' d' qu' n' c' s' m' compte "
              "carte commande aide bonjour merci".split()),
    "de": set("der die das und ist nicht ich ein eine zu mit den von mein auf für es sie wir meine meinen "
              "mir mich dem des im hat habe kann keine kein noch schon aber oder wenn warum wie was wurde "
              "wird bei nach auch nur mal bin sind jemand geht seit in an am um aus vom zum zur ja nein "
              "bitte wieder gestern heute immer jetzt hier dass ob man ihr euch uns wer konto karte "
              "bestellung hilfe hallo danke".split()),
    "pt": set("o a os as de que e em um uma para com não meu é se do da no na por minha meus ao dos das foi "
              "está estou tenho mas ou quando porque já eu você ele ela isso esse essa nao muito alguém "
              "ninguém nada hoje ontem demais vocês vcs pra tá também nunca sempre agora depois ainda são "
              "às num numa dela dele nós mesmo fui vezes duas conta cartão pedido ajuda olá obrigado "
              "obrigada".split()),
    "it": set("il la di che e è un una per non mi con del della sono ho lo gli le al ma ancora sul nel dei "
              "da qualcuno mio mia miei ha hanno in quando ne ci si ti vi io tutto tutti nn ora dopo poi "
              "solo stato fatto alla alle nella sulla dal dalla col senza mai chi avete questo questa "
              "perché come cosa anche più già sempre l' dell' un' c' all' nell' sull' conto carta ordine "
              "aiuto ciao grazie".split()),
    "nl": set("de het een en van is niet ik je dat op te met voor mijn zijn er maar wat hoe waarom kan heb "
              "heeft geen nog ook al om bij naar wordt iemand in mij ze hij deze dit weer nu wel heel hoor "
              "jullie uw graag sinds gisteren vandaag rekening kaart bestelling hulp hallo bedankt".split()),
}
# letters only some of the languages write: half a word's weight, shared alike, once per text
_LETTERS = {"ñ": "es", "¿": "es", "¡": "es", "ß": "de", "ä": "de", "ö": "de", "ü": "de", "ã": "pt", "õ": "pt",
            "ç": "fr pt", "œ": "fr", "ê": "fr pt", "â": "fr pt", "î": "fr", "û": "fr", "ò": "it", "ì": "it",
            "ù": "fr it", "è": "fr it", "à": "fr it pt"}
LETTER_WEIGHT = 0.5
_LETTERS_FOUND = re.compile(f"[{''.join(_LETTERS)}]")

_LANGS: dict[str, list[str]] = {}  # word -> the languages whose stop list holds it
for _lang, _stop in STOP.items():
    for _word in _stop:
        _LANGS.setdefault(_word, []).append(_lang)


def _tokens(word: str) -> list[str]:
    """``quelqu'un`` as written if a list holds it, else its parts: ``l'application`` as ``l'`` and
    ``application``, ``you're`` as ``you`` and ``'re``."""
    if "'" not in word.strip("'") or word in _LANGS:
        return [word.strip("'") or word]
    *elided, last = word.split("'")
    return [part + "'" if part + "'" in _LANGS else part for part in elided] + \
        ["'" + last if "'" + last in _LANGS else last]


def _words(text: str) -> list[str]:
    """The words to count: not in links, handles, hashtags, version strings or ids ("8.4.28",
    "g4637b02a"), nor acronyms in mixed-case text ("Mac OS", "Boston, MA")."""
    cleaned = _NOISE.sub(" ", text.replace("\u2019", "'").replace("\u2018", "'"))
    acronyms = {a.lower() for a in _ACRONYM.findall(cleaned)} if not cleaned.isupper() else set()
    out = []
    for word in _WORDS.findall(cleaned.lower()):
        if "'" in word:
            out += _tokens(word)
        elif word in _LANGS and word not in acronyms:
            out.append(word)
    return out


def detect_language(text: str) -> str:
    """An ISO 639-1 code (en, es, fr, de, pt, it, nl), or ``und`` for text with no word to go by."""
    if not _LETTER.search(text):
        return "und"
    scores = dict.fromkeys(STOP, 0.0)
    for word in _words(text):
        langs = _LANGS.get(word, ())
        for lang in langs:
            scores[lang] += 1 / len(langs)
    for letter in set(_LETTERS_FOUND.findall(text.lower())):
        langs = _LETTERS[letter].split()
        for lang in langs:
            scores[lang] += LETTER_WEIGHT / len(langs)
    best = max(scores, key=scores.get)  # the first of equals, in STOP's order
    if scores[best] == 0:
        return "en" if text.isascii() else "und"
    return best
