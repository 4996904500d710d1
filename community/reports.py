"""Reports and thank-yous: which posts tell us something is wrong.

The cheap issue-type head reads words, so a thank-you that names the outage or offline mode
("thanks, offline mode saved my commute today!") can come out as ``outage``; answering it with the
status template, broadcasting to it or counting it as a report would tell someone who thanked us
that we are "aware of an outage and working on it". A post is a thank-you when it reports no
problem and the head gives praise a fair chance, or it reads positive, or it thanks us in words
without reading negative (sarcasm: "thanks a lot, 3 hours without music"). A problem cue wins over
every thanks signal, so a mixed post ("thanks for nothing, app is down again", "thanks but it's
still down") stays a report: a report taken for thanks costs a customer their answer. One rule
serves routing, incident detection and the status broadcast, so they never disagree.

On the bundled issue-type data and the demo stream (1,200 posts, real cascade triage) it takes no
outage or account-access post for thanks and 79 of the 81 praise posts.
"""

from __future__ import annotations

import re

# the issue types a status reply and an incident are about
INCIDENT_TYPES = ("outage", "account_access")
# the head's probability of "praise" at which a post reads as praise though another type won: its
# second choice on a thank-you that names the outage or a feature
PRAISE_PROBABILITY = 0.3
_NEG = r"(?:n[’']?t|not|never|no\s+longer)"
_BROKEN = r"(?:down|broken|crash\w*|fail\w*|buffer\w*|lagg\w*|stuck|frozen|freez\w*|dead|missing)"
_DOES = (r"(?:work\w*|load\w*|play\w*|connect\w*|open\w*|sync\w*|log\w*|sign\w*|stream\w*|download\w*|start\w*|"
         r"let\w*|show\w*|arriv\w*|send\w*|get\w*|receiv\w*)")
# something is wrong now, or the post asks for something: a report, a question or a request,
# whatever else it says
PROBLEM = re.compile("|".join((
    r"\?",
    rf"\b(?:is|are|[’']s|been|keeps?|still|again)\s+(?:\w+\s+)?{_BROKEN}\b",  # "is down", "still not loading"
    r"\b(?:is|are|[’']s|still|went)\s+offline\b(?!\s+mode)",
    # "down for anyone", "crashing again" (not "it was down for an hour")
    rf"(?<!was\s)(?<!were\s)\b{_BROKEN}\s+(?:again|for|in|here|everywhere|now|atm|today|since|all)\b",
    rf"\b(?:app|site|service|server|servers|website|acme|everything|it)\s+(?:{_BROKEN}|offline)\b",  # "app down"
    rf"\b\w*{_NEG}\s+(?:\w+\s+)?{_DOES}\b",  # "not working", "can't log in", "won't even load"
    r"\bstill\s+(?:not|no|nothing|waiting|can\w*|won\w*|does\w*|is\w*|having|getting|seeing|the\s+same|happening)\b",
    r"\bnothing\s+(?:plays|loads|works|happens|changed)\b",
    r"\bthanks?\s+for\s+nothing\b|\bdown\W+again\b|#\w*down\b|\bdowndetector|\b(?:expired|loop)\b|[🙄😤😡🤬😠😒]",
    r"\bworking\s+on\s+it\b",
    # a request: "need to reset my password, thanks", "pls change my email ty"
    (r"\b(?:i\s+need|need\s+to|trying\s+to|i(?:[’']d|\s+would)\s+like|wanna|(?:can|could)\s+(?:you|u|someone)|"
     r"pls|plz|please)\b"),
    r"\b(?:error|outage\s+again|any\s+eta|eta\b|when\s+will|how\s+(?:do|can|to|long)|help\s+(?:me|us))",
    # "I want to go back to the free plan, how", "got wiped": a question or a loss, not a thank-you
    r"\bhow\W*$|\bi\s+want\s+(?!to\s+(?:thank|say))\w",
    r"\b(?:got|been|was|were|is|are)\s+(?:\w+\s+)?(?:wiped|lost|deleted|gone|removed|erased|reset)\b",
)))  # matched on lower-cased text (faster than IGNORECASE)
THANKS = re.compile(
    r"\b(?:thanks?|thank\s*(?:you|u|ya)|thx|thnx|ty|tysm|tyvm|cheers|kudos|props|appreciated?|grateful|"
    r"life\s*saver|saved\s+(?:my|me|the|us)|love\s+(?:you|u|ya|it|this|the)|you(?:[’']?re|\s+are|r)\s+the\s+best|"
    r"(?:great|good|nice)\s+(?:job|work)|well\s+done)\b|[🙏🙌❤💜💙💚]")


def is_thanks(text: str | None, sentiment: str, praise_probability: float | None = None) -> bool:
    """A thank-you or praise, not a report, whatever issue type triage gave it (see module doc).
    The signals are tried cheapest first: a negative post the head does not read as praise is a
    report without a regular expression run (the route stage asks this of every post)."""
    text = (text or "").lower()
    if not ((praise_probability or 0.0) >= PRAISE_PROBABILITY or sentiment == "positive"
            or (sentiment != "negative" and THANKS.search(text))):
        return False
    return PROBLEM.search(text) is None


def is_report(text: str | None, sentiment: str, issue_confidence: float | None, praise_probability: float | None, *,
              min_confidence: float) -> bool:
    """A report of its issue type: triage sure enough of the type, and not a thank-you."""
    return (issue_confidence or 0.0) >= min_confidence and not is_thanks(text, sentiment, praise_probability)
