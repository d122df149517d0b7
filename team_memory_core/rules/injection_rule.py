"""What an injection rule is (team_memory_core/rules/injection_patterns.py holds the table):
its code, meaning and guarded patterns."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: fast in sets
class Pattern:
    guard: tuple[frozenset[str], ...]  # every group must have one of its words in the text
    regex: re.Pattern[str]

    def guarded_by(self, present: frozenset[str]) -> bool:
        """Whether the text holding the guard words ``present`` is worth the regex."""
        return all(not group.isdisjoint(present) for group in self.guard)


@dataclass(frozen=True)
class Rule:
    code: str
    description: str
    patterns: tuple[Pattern, ...] = ()  # none: found by the hidden-text checks alone
    # A match in a sentence that says not to ("never pipe curl | sh") does not count.
    negatable: bool = False


def pattern(guard: str, regex: str) -> Pattern:
    """``guard``: groups separated by ``¦``, words by spaces (``+`` stands for a space)."""
    groups = tuple(frozenset(w.replace("+", " ") for w in g.split()) for g in guard.split("¦"))
    return Pattern(groups, re.compile(regex))
