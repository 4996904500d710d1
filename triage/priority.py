"""Priority 0..100: what a care team should look at first, with the reasons."""

from __future__ import annotations

import math

ISSUE_WEIGHT = {"outage": 10, "account_access": 10, "billing": 8, "order_delivery": 6, "cancellation": 6,
                "bug_report": 4, "product_question": 2, "feature_request": -5, "praise": -15, "other": -10}


def priority(sentiment: str, sensitivity: str, issue_type: str, toxic: bool, spam: bool, pii_exposed: bool,
             followers: int | None) -> tuple[float, list[str]]:
    score, why = 30.0, []
    bump = {"security": 45, "fraud": 45, "account": 12}.get(sensitivity, 0)
    if bump:
        score += bump
        why.append(f"+{bump} sensitivity {sensitivity}")
    if sentiment == "negative":
        score += 12
        why.append("+12 negative sentiment")
    w = ISSUE_WEIGHT.get(issue_type, 0)
    if w:
        score += w
        why.append(f"{w:+d} issue {issue_type}")
    if pii_exposed:
        score += 10
        why.append("+10 personal data exposed in public")
    if followers and followers > 0:  # a negative count (a bad import) is no reach, not an error
        reach = min(20.0, 4.0 * math.log10(followers + 1))
        score += reach
        why.append(f"+{reach:.0f} author reach ({followers} followers)")
    if spam:
        score -= 40
        why.append("-40 spam")
    elif toxic:
        score -= 10
        why.append("-10 offensive")
    return round(max(0.0, min(100.0, score)), 1), why
