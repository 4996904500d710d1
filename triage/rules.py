"""Keyword rules: a safety net for escalation and explanations a person can read.

They fire on unambiguous phrases only ("someone hacked my account", "charges I didn't make"), so
figurative uses ("this price is a scam", "the finale stole my heart") do not escalate.
"""

from __future__ import annotations

import re

from triage.pii import detect_pii
from triage.protocol import PiiSpan

SECURITY = [
    (r"\b(hack(ed|er|ers)?|compromis(ed|e)|hijack(ed)?|taken over|took over|account takeover)\b.{0,40}\b(account|acct|profile|login|email|password)\b", "account hacked"),
    (r"\b(account|acct|profile|email|password)\b.{0,40}\b(hack(ed)?|compromis(ed)?|hijack(ed)?|taken over|stolen)\b", "account hacked"),
    (r"\b(i('| ha)ve been|i was|i got|got|been) hack(ed)?\b", "account hacked"),
    (r"\b(someone|somebody|a stranger)\b[^.!?]{0,30}\b(logged|logging|logs|signed|signing|got) (in|into)\b(?! touch| contact)", "unknown login"),
    (r"\b(someone|somebody|hacker|they)\b.{0,30}\bchanged (my|the) (email|password|phone|number|username|2fa|recovery)", "credentials changed by someone else"),
    (r"\b(email|password|phone number|recovery email)\b.{0,30}\b(changed|reset)\b.{0,30}\b(wasn'?t me|not me|without my|never (asked|requested|did|changed|reset))\b", "credentials changed by someone else"),
    (r"\b(phished|fake (\w+ )?(support|site|website|login|e-?mail|text|sms|link|call))\b", "phishing"),
    (r"\bphishing\b(?! for\b)", "phishing"),
    (r"(?<!life )(?<!life-)\b(hacked|hacking|hacker|hackers)\b(?! (together|away|my way|it out|through the))", "hacked"),
    (r"\b(changed|switched) (my|the) (e-?mail|password|login|phone number)\b.{0,20}\b(to (his|hers|theirs|their|another|a different)|without)", "credentials changed by someone else"),
    (r"\b(someone|somebody)\b.{0,40}\b(access(ing|ed)?|got into|get into|in my account|using my account|is using it)\b", "someone else in the account"),
    (r"\bwhoever\b[^.!?]{0,20}\b(getting|gets|got|logging|logged|breaking|broke) (in|into)\b(?! touch)", "someone else in the account"),
    (r"\b(someone|somebody)\b[^.!?]{0,20}\b(keeps|kept) (getting|logging|breaking) (in|into)\b(?! touch)", "someone else in the account"),
    (r"\bused by (someone|somebody) else\b", "someone else in the account"),
    (r"\b(e-?mails?|e-?mail address(es)?|addresses|adresses|people|members|users|names)\b.{0,12}\b(i|we) (don'?t|dont|do not) (know|recogni[sz]e)\b", "activity the customer does not recognise"),
    (r"\b(e-?mail|password|login|username|phone number)\b.{0,40}\bchanged on (me|us)\b", "credentials changed by someone else"),
    (r"\b(my ex|ex-?(boyfriend|girlfriend|husband|wife|partner)|a stranger|someone else|somebody else)\b.{0,40}\b(logs?|logging|logged|signs?|signing|signed|gets?|getting|got) (in|into|on)\b", "someone else in the account"),
    (r"\b(playlists?|songs?|devices?|profiles?)\b.{0,30}\b(not mine|i don'?t recogni[sz]e|i didn'?t (make|create|add))", "activity the customer does not recognise"),
    (r"\b(e-?mail|password)\b.{0,30}\bchanged\b.{0,30}\b(never|didn'?t|did not) (ask|request|change)", "credentials changed by someone else"),
    (r"\bsim[- ]?swap", "SIM swap"),
    (r"\b(my|the) (card|phone|wallet|debit card|credit card) (was|got|has been) (stolen|lost)\b", "lost or stolen card or phone"),
    (r"\b(lost|stolen) (my |our )?(visa|master|credit|debit|bank|amex)?[- ]?(card|phone|iphone|wallet)\b", "lost or stolen card or phone"),
    (r"\b(wallet|purse|handbag|bag|phone|card)\b.{0,15}\b(got|was|been|has been|were) (nicked|pinched|swiped|stolen|robbed|taken)\b", "lost or stolen card or phone"),
    (r"\b(block|freeze) (my |the |this )?(debit |credit |bank )?card\b", "card to block"),
    (r"\b(suspicious|unknown|unrecognized|unrecognised) (login|log-in|sign[- ]in|device|activity)\b", "suspicious activity"),
    (r"\b(codes?|otp)\b.{0,30}\b(never|didn'?t) (asked|request(ed)?)\b", "unrequested one-time codes"),
]
FRAUD = [
    (r"\b(charges?|payments?|transactions?|purchases?|orders?|withdrawals?)\b.{0,40}\b(i )?(never|didn'?t|did not) (make|made|authori[sz]e|place|placed|buy|bought|order|recogni[sz]e)\b", "transactions the customer did not make"),
    (r"\b(unauthori[sz]ed|fraudulent|unknown|unrecognised|unrecognized) (charges?|payments?|transactions?|purchases?|debits?|withdrawals?)\b", "unauthorized transactions"),
    (r"\bsomeone\b.{0,30}\b(used|is using|using) my (card|account|balance|wallet|credit)\b", "someone using the customer's card"),
    (r"\b(scammed|scammer|scammers|fake refund|refund scam)\b", "scam"),
    (r"\b(charges?|charged|payments?|subscriptions?)\b.{0,60}\b(don'?t know (who|how)|no idea who|not mine|aren'?t mine|isn'?t mine)\b", "charges the customer does not recognise"),
    (r"\b(bank statement|statement)\b.{0,60}\b(charged|charges?|payments?)\b.{0,60}\b(despite|never|not|don'?t)\b", "charges the customer does not recognise"),
    (r"\b(subscriptions?|accounts?|plans?|memberships?)\b( that| which)? (i|we)('m| am| are)? (being |getting )?(charged|billed|paying) for\b.{0,12}\b(i|we) (do not|don'?t|dont|never) (have|had|signed up)\b", "charges for an account the customer does not have"),
    (r"\b(charged|billed|paying) for (a |an )?(\w+ )?(subscriptions?|accounts?|plans?|memberships?)( that| which)? (i|we) (do not|don'?t|dont|never) (have|had|signed up)\b", "charges for an account the customer does not have"),
    (r"\b(i|we) (do not|don'?t|dont|never) (have|had) (a |an )?(\w+ )?account\b[^?]{0,20}\b(but|still)\b.{0,40}\b(charg(ed|ing)|bill(ed|ing)|money (is |keeps )?(going|coming|taken|leaving)|taking (my )?money|debit(ed|ing))\b", "charges for an account the customer does not have"),
    (r"\bthis is fraud\b|\breport(ed)? (it |this |them )?as fraud", "reported as fraud"),
    (r"\b(order|charge|payment|purchase)s?\b.{0,60}\bmy (saved )?card\b.{0,30}\b(not me|wasn'?t me)\b", "transactions the customer did not make"),
]
_SEC = [(re.compile(p, re.I), why) for p, why in SECURITY]
_FRAUD = [(re.compile(p, re.I), why) for p, why in FRAUD]


_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u201c": '"', "\u201d": '"'})


def sensitivity_rules(text: str, pii: list[PiiSpan] | None = None) -> tuple[str | None, list[str]]:
    """("security" | "fraud" | None, reasons). Fraud wins when both fire: money moved. Typographic
    apostrophes (phones type "don’t") are read as plain ones. A password written out in the post
    is a compromised credential whatever the words around it say (``pii``: the text's spans, when
    the caller has detected them already)."""
    has_password = any(span.type == "password" for span in (detect_pii(text) if pii is None else pii))
    text = text.translate(_QUOTES)
    fraud = [why for rx, why in _FRAUD if rx.search(text)]
    security = [why for rx, why in _SEC if rx.search(text)]
    if has_password:
        security.append("password written in the post")
    if fraud:
        return "fraud", list(dict.fromkeys(fraud + security))
    if security:
        return "security", list(dict.fromkeys(security))
    return None, []
