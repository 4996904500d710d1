"""Moderation rules in YAML, in the spirit of Reddit's AutoModerator.

A rules file is a list of rules (see the bundled ``service/demo/moderation_rules.yaml``)::

    - name: new-account-links            # unique; shown in the audit log and the console
      conditions:                        # all must hold (they may also be written at the top level)
        keywords: [giveaway, "t.me"]     # any of, case-insensitive, whole words
        regex: "https?://"               # searched in the text, case-insensitive
        scores: {spam: 0.85}             # minimum probability: spam, toxicity, negative, security, fraud
        pii: [card_number, email]        # any of these personal-data types in a public post
        author: {account_age_days_below: 7, followers_below: 50, removals_at_least: 3}
        reach: {followers_at_least: 10000}
        channels: ["@AcmeHelp", "r/acme"]  # mention.channel or the platform name
      action: hold                       # hold | remove | approve | lock | label | notify
      label: new-account                 # for action label
      notify: care-leads                 # for action notify
      message_template: pii_removed_notice  # optional: sent privately to the author
      notify_author: true                # hold/remove: tell the author privately (default true)
      moderators_exempt: true            # skip posts of the community's moderators and staff
      reason: Links from brand-new accounts are reviewed first.

Every matching rule applies; of the deciding actions the strictest wins (remove over hold over
approve). The author of a post a rule holds or removes is told privately, with the rule's
reason (its ``message_template``, else a built-in notice), unless the rule says
``notify_author: false`` (spam: a spammer is not told what tripped the filter). Loading validates
everything and rejects a bad file as a whole, naming the line and the reason, so a typo never
silently disables moderation. As in AutoModerator, a rule skips the posts its community vouches for
(its moderators' and staff's: :mod:`community.trust`) unless it says
``moderators_exempt: false``. :func:`unknown_templates` checks the templates rules name against
the ones the service knows (``socialcare rules check``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ACTIONS = ("hold", "remove", "approve", "lock", "label", "notify")
SEVERITY = {"remove": 3, "hold": 2, "approve": 1}  # deciding actions; the strictest wins
TERMINAL = frozenset(SEVERITY)
SCORE_NAMES = {"spam": ("spam", "spam"), "toxicity": ("toxicity", "offensive"),
               "negative": ("sentiment", "negative"), "security": ("sensitivity", "security"),
               "fraud": ("sensitivity", "fraud")}
PII_TYPES = ("card_number", "email", "phone", "iban", "national_id", "password", "one_time_code")
AUTHOR_KEYS = ("account_age_days_below", "followers_below", "removals_at_least")
REACH_KEYS = ("followers_at_least",)
RULE_KEYS = frozenset({"name", "conditions", "action", "reason", "label", "notify", "message_template",
                       "notify_author", "moderators_exempt"})
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")
CONDITION_KEYS = ("keywords", "regex", "scores", "pii", "author", "reach", "channels")
MAX_TEXT = 10_000  # rules see at most this much of a post (bounds regex work)
BUNDLED_RULES = Path(__file__).resolve().parents[1] / "service" / "demo" / "moderation_rules.yaml"


class RuleError(ValueError):
    """An invalid rules file: ``line`` (1-based) and ``reason`` say where and why."""

    def __init__(self, source: str, line: int | None, reason: str) -> None:
        self.source, self.line, self.reason = source, line, reason
        super().__init__(f"{source}:{line}: {reason}" if line else f"{source}: {reason}")


@dataclass(frozen=True)
class Rule:
    name: str
    action: str
    reason: str
    line: int
    keywords: re.Pattern | None = None
    regex: tuple[re.Pattern, ...] = ()
    scores: dict[str, float] = field(default_factory=dict)
    pii: frozenset[str] = frozenset()
    author: dict[str, float] = field(default_factory=dict)
    channels: frozenset[str] = frozenset()
    label: str | None = None
    notify: str | None = None
    message_template: str | None = None
    notify_author: bool = True
    moderators_exempt: bool = True


@dataclass
class Subject:
    """What a rule looks at: the post, its triage scores, its author and channel."""

    text: str
    platform: str
    channel: str | None = None
    is_public: bool = True
    probabilities: dict[str, dict[str, float]] = field(default_factory=dict)  # task -> label -> p
    pii_types: frozenset[str] = frozenset()
    account_age_days: float | None = None
    followers: int | None = None
    removals: int = 0
    vouched_for: bool = False  # by its community: a moderator's or staff post, an accepted answer


@dataclass(frozen=True)
class RuleMatch:
    rule: str
    action: str
    reason: str
    label: str | None = None
    notify: str | None = None
    message_template: str | None = None
    notify_author: bool = True


# --- loading --------------------------------------------------------------------------------
def load_rules(path: str | Path | None = None) -> list[Rule]:
    p = Path(path) if path else BUNDLED_RULES
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleError(str(p), None, f"cannot read: {exc.strerror or exc}") from exc
    return parse_rules(text, str(p))


def parse_rules(text: str, source: str = "<rules>") -> list[Rule]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise RuleError(source, mark.line + 1 if mark else None,
                        f"not valid YAML: {getattr(exc, 'problem', None) or exc}") from exc
    if root is None:
        return []
    if not isinstance(root, yaml.SequenceNode):
        raise RuleError(source, root.start_mark.line + 1, "a rules file is a list of rules")
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for node in root.value:
        line = node.start_mark.line + 1
        if not isinstance(node, yaml.MappingNode):
            raise RuleError(source, line, "each rule is a mapping with a name and an action")
        lines = {k.value: k.start_mark.line + 1 for k, _ in node.value}
        for k, v in node.value:  # nested conditions: each key's own line
            if k.value == "conditions" and isinstance(v, yaml.MappingNode):
                lines.update({f"cond:{ck.value}": ck.start_mark.line + 1 for ck, _ in v.value})
        data = yaml.safe_load(yaml.serialize(node))
        rule = _rule(data, line, lines, source)
        if rule.name in seen:
            raise RuleError(source, line, f"rule name '{rule.name}' already used on line {seen[rule.name]}")
        seen[rule.name] = line
        rules.append(rule)
    return rules


def _rule(d: dict, line: int, lines: dict[str, int], source: str) -> Rule:
    def fail(key: str | None, reason: str) -> RuleError:
        if key is None:
            return RuleError(source, line, reason)
        at = lines.get(f"cond:{key}") or lines.get(key) or lines.get("conditions") or line
        return RuleError(source, at, reason)

    name = d.get("name")
    if name is None or (isinstance(name, str) and not name.strip()):
        raise fail("name", "every rule needs a name, e.g. name: new-account-links")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise fail("name", f"rule name {str(name)!r} is not a valid name: use letters, digits and - _ . : only "
                           f"(no spaces), starting with a letter or digit, up to 100 characters; "
                           f"kebab-case is the convention, e.g. {_kebab(str(name))!r}")
    where = f"rule '{name}'"
    unknown = sorted(set(d) - RULE_KEYS - set(CONDITION_KEYS) - {"channel"})
    if unknown:
        raise fail(unknown[0], f"{where}: unknown key '{unknown[0]}' "
                               f"(allowed: {', '.join(sorted(RULE_KEYS | set(CONDITION_KEYS)))})")
    cond = d.get("conditions", {})
    if not isinstance(cond, dict):
        raise fail("conditions", f"{where}: conditions is a mapping of condition to value")
    cond = dict(cond)
    for key in (*CONDITION_KEYS, "channel"):  # AutoModerator style: conditions at the top level
        if key in d:
            if key in cond:
                raise fail(key, f"{where}: '{key}' is given twice")
            cond[key] = d[key]
    if "channel" in cond:
        cond.setdefault("channels", cond.pop("channel"))
    unknown = sorted(set(cond) - set(CONDITION_KEYS))
    if unknown:
        raise fail("conditions", f"{where}: unknown condition '{unknown[0]}' (allowed: {', '.join(CONDITION_KEYS)})")
    if not cond:
        raise fail(None, f"{where}: needs at least one condition ({', '.join(CONDITION_KEYS)})")
    action = d.get("action")
    if action not in ACTIONS:
        raise fail("action", f"{where}: action must be one of {', '.join(ACTIONS)}, not {action!r}")
    reason = d.get("reason") or name
    if not isinstance(reason, str):
        raise fail("reason", f"{where}: reason must be text")
    extra = {}
    for key in ("label", "notify", "message_template"):
        value = d.get(key)
        if value is not None and not (isinstance(value, str) and value.strip()):
            raise fail(key, f"{where}: {key} must be text")
        extra[key] = value.strip() if isinstance(value, str) else None
    notify_author = d.get("notify_author", True)
    if not isinstance(notify_author, bool):
        raise fail("notify_author", f"{where}: notify_author is true or false")
    if not notify_author and extra["message_template"]:
        raise fail("notify_author", f"{where}: notify_author: false sends no message, so message_template "
                                    "would never be used")
    moderators_exempt = d.get("moderators_exempt", True)
    if not isinstance(moderators_exempt, bool):
        raise fail("moderators_exempt", f"{where}: moderators_exempt is true or false")
    if action == "label" and not extra["label"]:
        raise fail("action", f"{where}: action 'label' needs a 'label'")
    if action == "notify" and not extra["notify"]:
        raise fail("action", f"{where}: action 'notify' needs 'notify' (who to alert)")
    keywords = None
    if "keywords" in cond:
        kws = cond["keywords"]
        if isinstance(kws, str):
            kws = [kws]
        if not isinstance(kws, list) or not kws or not all(isinstance(k, str) and k.strip() for k in kws):
            raise fail("keywords", f"{where}: keywords is a non-empty list of text")
        parts = [(r"\b" if re.match(r"\w", k.strip()) else "") + re.escape(k.strip())
                 + (r"\b" if re.search(r"\w$", k.strip()) else "") for k in kws]
        keywords = re.compile("|".join(parts), re.IGNORECASE)
    regex: list[re.Pattern] = []
    if "regex" in cond:
        pats = cond["regex"] if isinstance(cond["regex"], list) else [cond["regex"]]
        for pat in pats:
            if not isinstance(pat, str) or not pat:
                raise fail("regex", f"{where}: regex must be text")
            try:
                regex.append(re.compile(pat, re.IGNORECASE))
            except re.error as exc:
                raise fail("regex", f"{where}: invalid regex {pat!r}: {exc}") from exc
    scores: dict[str, float] = {}
    if "scores" in cond:
        if not isinstance(cond["scores"], dict) or not cond["scores"]:
            raise fail("scores", f"{where}: scores maps a score to a minimum probability, e.g. {{spam: 0.85}}")
        for key, value in cond["scores"].items():
            if key not in SCORE_NAMES:
                raise fail("scores", f"{where}: unknown score '{key}' (known: {', '.join(SCORE_NAMES)})")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise fail("scores", f"{where}: score {key} needs a probability between 0 and 1")
            scores[key] = float(value)
    pii: frozenset[str] = frozenset()
    if "pii" in cond:
        values = cond["pii"] if isinstance(cond["pii"], list) else [cond["pii"]]
        bad = [v for v in values if v not in PII_TYPES]
        if not values or bad:
            raise fail("pii", f"{where}: pii lists personal-data types ({', '.join(PII_TYPES)})"
                       + (f", not {bad[0]!r}" if bad else ""))
        pii = frozenset(values)
    author: dict[str, float] = {}
    for group, allowed in (("author", AUTHOR_KEYS), ("reach", REACH_KEYS)):
        if group not in cond:
            continue
        if not isinstance(cond[group], dict) or not cond[group]:
            raise fail(group, f"{where}: {group} is a mapping like {{{allowed[0]}: 3}}")
        for key, value in cond[group].items():
            if key not in allowed:
                raise fail(group, f"{where}: unknown {group} condition '{key}' (allowed: {', '.join(allowed)})")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise fail(group, f"{where}: {key} must be a number ≥ 0")
            author[key] = float(value)
    channels: frozenset[str] = frozenset()
    if "channels" in cond:
        values = cond["channels"] if isinstance(cond["channels"], list) else [cond["channels"]]
        if not values or not all(isinstance(v, str) and v for v in values):
            raise fail("channels", f"{where}: channels is a list of channel or platform names")
        channels = frozenset(v.lower() for v in values)
    return Rule(name=name, action=action, reason=reason.strip(), line=line, keywords=keywords, regex=tuple(regex),
                scores=scores, pii=pii, author=author, channels=channels, notify_author=notify_author,
                moderators_exempt=moderators_exempt, **extra)


def _kebab(name: str) -> str:
    """A valid name close to ``name``, for the error message ("Not Kebab" → "not-kebab")."""
    return re.sub(r"[^a-z0-9_.:]+", "-", name.lower()).strip("-_.:")[:100] or "my-rule"


# --- evaluation ------------------------------------------------------------------------------
def matches(rule: Rule, s: Subject) -> bool:
    if s.vouched_for and rule.moderators_exempt:
        return False
    text = s.text[:MAX_TEXT]
    if rule.channels and not ({s.platform.lower(), (s.channel or "").lower()} & rule.channels):
        return False
    if rule.keywords is not None and not rule.keywords.search(text):
        return False
    if rule.regex and not any(p.search(text) for p in rule.regex):
        return False
    for key, minimum in rule.scores.items():
        task, label = SCORE_NAMES[key]
        if s.probabilities.get(task, {}).get(label, 0.0) < minimum:
            return False
    if rule.pii and not (s.is_public and rule.pii & s.pii_types):
        return False
    a = rule.author
    if "account_age_days_below" in a and (s.account_age_days is None or s.account_age_days >= a["account_age_days_below"]):
        return False
    if "followers_below" in a and (s.followers is None or s.followers >= a["followers_below"]):
        return False
    if "followers_at_least" in a and (s.followers or 0) < a["followers_at_least"]:
        return False
    if "removals_at_least" in a and s.removals < a["removals_at_least"]:
        return False
    return True


def evaluate(rules: list[Rule], subject: Subject) -> list[RuleMatch]:
    """Every rule that matches, in file order."""
    return [RuleMatch(r.name, r.action, r.reason, r.label, r.notify, r.message_template, r.notify_author)
            for r in rules if matches(r, subject)]


def decisive(found: list[RuleMatch]) -> RuleMatch | None:
    """The deciding match: the strictest of remove, hold, approve (the first of equals)."""
    deciding = [m for m in found if m.action in SEVERITY]
    return max(deciding, key=lambda m: SEVERITY[m.action]) if deciding else None


def unknown_templates(rules: list[Rule], known: set[str]) -> list[Rule]:
    """The rules whose ``message_template`` is none of ``known``: their author would get the
    built-in notice instead of the words the rule meant (or, before, nothing at all)."""
    return [r for r in rules if r.message_template and r.message_template not in known]
