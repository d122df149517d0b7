"""Text aimed at agents: the local rules that flag a memory as possible prompt injection
(pure functions, no I/O).

A shared memory is read by every member's Claude. Text written to steer that reader instead of
informing the team (ignore your rules, run this, fetch that, send the keys there, hide it from
the user) is flagged: a flagged memory is never injected at session start, takes part in no
merge, and needs review before it is shared (docs/security.md, "Shared memory").

The rules look for the agent-directed part, not for topics: a memory may describe the team's
commands, URLs, tools and secrets policy ("we deploy with `make release`", "secrets live in
Vault"); what flags it is an order to an agent (override its instructions, change its prompt or
role, run a dangerous command, fetch and obey, call a destructive tool, send secrets out, hide
something from the user, copy itself elsewhere) or instructions hidden from the human reader
(invisible characters, comments, encodings). Each rule is a family of patterns on a normalised
copy of the text (NFKC, invisible characters removed, case folded); hidden payloads (Unicode tag
characters, HTML and Markdown comments, base64 blobs) are decoded and checked too.

The corpus in tests/support/injection_corpus.py bounds both errors: every attempt flagged,
benign look-alikes under 5% false positives. Rules cannot see meaning; Claude Haiku's verdict
(team_memory_core/llm/screen.py) adds to them when a key is set.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

from team_memory_core.models.decisions import Screening
from team_memory_core.rules.injection_patterns import AGENT_WORD, COMMENTS, NEGATION, RULES
from team_memory_core.rules.injection_rule import Pattern, Rule
from team_memory_core.rules.text import one_line

__all__ = ["MODEL_FLAG", "Finding", "describe", "findings", "flag_note", "flags_of"]

# Every guard word: a text is scanned for each once, whatever the number of patterns.
GUARD_WORDS = tuple(sorted({word for rule in RULES for pattern in rule.patterns
                            for group in pattern.guard for word in group}))
_BY_FIRST_WORD: dict[str, list[Pattern]] = {}
for _rule in RULES:
    for _pattern in _rule.patterns:
        for _word in _pattern.guard[0]:
            _BY_FIRST_WORD.setdefault(_word, []).append(_pattern)


def guarded(present: frozenset[str]) -> set[Pattern]:
    """The patterns worth running on a text that holds the guard words ``present``."""
    first = {pattern for word in present for pattern in _BY_FIRST_WORD.get(word, ())}
    return {pattern for pattern in first if pattern.guarded_by(present)}


# The flag Claude Haiku's verdict adds (the rules' flags are their codes).
MODEL_FLAG = "model"
EXCERPT_CHARS = 80

# Characters that show nothing: removed before matching (so "i\u200bgnore" reads "ignore").
_INVISIBLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
                        "\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0"
                        "\U000e0000-\U000e0fff]")
# Unicode tag characters: an invisible copy of ASCII ("ASCII smuggling").
_TAGS = re.compile("[\U000e0000-\U000e007f]+")
# Bidirectional overrides and isolates reorder what a person sees ("Trojan Source").
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
# Zero-width characters that have no business in prose (joiners, used by emoji and some
# scripts, are not counted); a few in one text are a hiding place.
_ZERO_WIDTH = re.compile("[\u200b\u2060-\u2064\u180e]")
_ZERO_WIDTH_MAX = 2
_SPACES = re.compile(r"[^\S\n]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]{24,}={0,2}")
_PRINTABLE_SHARE = 0.9


@dataclass(frozen=True)
class Finding:
    """A rule that matched: its code, and what it matched (shortened, for the history and the
    audit log; it is memory text, never shown to a model outside the memory's own framing)."""

    rule: str
    excerpt: str

    @property
    def reason(self) -> str:
        return f"{self.rule}: “{self.excerpt}”"


def describe(flag: str) -> str:
    """What a flag means, for people and for the warning a model reads."""
    if flag == MODEL_FLAG:
        return "Claude Haiku judged it aimed at AI agents"
    rule = next((r for r in RULES if r.code == flag), None)
    return rule.description if rule is not None else flag


def flag_note(found: list[Finding], screening: Screening | None = None) -> str:
    """Why a memory is flagged, from both sources (a model that disagrees with the rules
    too): the reason of its history event."""
    parts = [f"rules: {'; '.join(f.reason for f in found)}"] if found else []
    if screening is not None:
        verdict = "aimed at AI agents" if screening.aimed_at_agents else "not aimed at agents"
        parts.append(f"Claude Haiku: {verdict}: {screening.reason}".rstrip(": "))
    return " | ".join(parts)


def flags_of(text: str) -> list[str]:
    """The codes of the rules ``text`` trips, in rule order (empty: not flagged)."""
    return [finding.rule for finding in findings(text)]


def findings(text: str) -> list[Finding]:
    """One finding per rule ``text`` trips, in rule order."""
    found: dict[str, Finding] = {}
    hidden = _hidden_characters(text)
    if hidden is not None:
        found[hidden.rule] = hidden
    for finding in _rule_findings(normalised(text)):
        found.setdefault(finding.rule, finding)
    for code, payload in _hidden_payloads(text):
        if code in found:
            continue
        inner = next(iter(_rule_findings(normalised(payload))), None)
        if inner is not None:
            found[code] = Finding(code, _excerpt(f"{inner.rule}: {inner.excerpt}"))
        elif code == "hidden-comment" and AGENT_WORD.search(normalised(payload)):
            found[code] = Finding(code, _excerpt(payload))
    order = [rule.code for rule in RULES]
    return sorted(found.values(), key=lambda f: order.index(f.rule))


def normalised(text: str) -> str:
    """The text as the rules read it: compatibility forms folded (full-width letters),
    invisible characters removed, case folded, runs of spaces made one."""
    plain = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text)).casefold()
    return _SPACES.sub(" ", plain)


def _rule_findings(plain: str) -> Iterator[Finding]:
    worth = guarded(frozenset(word for word in GUARD_WORDS if word in plain))
    for rule in RULES:
        match = _first_match(rule, plain, worth)
        if match is not None:
            yield Finding(rule.code, _excerpt(match.group(0)))


def _first_match(rule: Rule, plain: str, worth: set[Pattern]) -> re.Match[str] | None:
    for pattern in rule.patterns:
        if pattern not in worth:
            continue
        for match in pattern.regex.finditer(plain):
            if not (rule.negatable and _negated(plain, match.start())):
                return match
    return None


def _negated(plain: str, start: int) -> bool:
    """Whether the sentence leading up to ``start`` says not to ("never pipe curl | sh")."""
    head = plain[max(0, start - 120):start]
    boundary = max(head.rfind("\n"), *(head.rfind(f"{mark} ") for mark in ".!?;"))
    return NEGATION.search(head[boundary + 1:]) is not None


def _hidden_characters(text: str) -> Finding | None:
    tags = _TAGS.search(text)
    if tags is not None:
        decoded = "".join(chr(ord(c) - 0xE0000) for c in tags.group(0))
        return Finding("hidden-characters", _excerpt(f"tag characters spelling: {decoded}"))
    if _BIDI.search(text) is not None:
        return Finding("hidden-characters", "bidirectional override characters")
    zero_width = len(_ZERO_WIDTH.findall(text)) + text[1:].count("\ufeff")  # not a BOM
    if zero_width > _ZERO_WIDTH_MAX:
        return Finding("hidden-characters", f"{zero_width} zero-width characters")
    return None


def _hidden_payloads(text: str) -> Iterator[tuple[str, str]]:
    """Text a person does not see or read, decoded: (the code it is flagged under, the text)."""
    for tags in _TAGS.finditer(text):
        yield "hidden-characters", "".join(chr(ord(c) - 0xE0000) for c in tags.group(0)
                                           if 0xE0020 <= ord(c) <= 0xE007E)
    for comment in COMMENTS.finditer(text):
        yield "hidden-comment", next(g for g in comment.groups() if g is not None)
    for blob in _BASE64.finditer(text):
        decoded = _decoded(blob.group(0))
        if decoded is not None:
            yield "encoded-instructions", decoded


def _decoded(blob: str) -> str | None:
    """The text a base64 (or base64url) blob encodes, if it is mostly printable text."""
    padded = blob + "=" * (-len(blob) % 4)
    try:
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    printable = sum(1 for c in text if c.isprintable() or c in "\n\t")
    return text if text and printable / len(text) >= _PRINTABLE_SHARE else None


def _excerpt(text: str) -> str:
    return one_line(text, EXCERPT_CHARS)
