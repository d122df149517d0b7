"""Secret redaction and ``<private>`` span removal for everything Team Memory stores.

Before any text reaches an LLM, Temporal history or the database it goes through
:func:`redact`: obvious credentials are replaced by ``[REDACTED:<kind>]`` markers and
``<private>...</private>`` spans are dropped entirely, so a team memory never turns into a
credential store.

It runs on the save request path, so it is built for speed and robustness:

* every pattern is precompiled and starts with a literal (``sk-ant-``, ``AKIA``, ``token``,
  ...), which lets the regex engine jump between candidates instead of trying every
  position; each rule is additionally guarded by a plain substring check;
* keyword rules run on a lower-cased copy of the text (same length, so positions line up)
  instead of using ``re.IGNORECASE``, which would defeat that optimisation;
* all quantifiers are bounded and there are no nested ones, so odd input (NUL bytes, lone
  surrogates, megabyte-long words) stays linear and never raises.

The rules are biased towards *not* mangling ordinary engineering prose: words such as
"token", "password" or "key" only trigger a redaction when they are used as an assignment
(``DB_PASSWORD=...``, ``"api_key": "..."``) or are directly followed by a high-entropy value
(``api key is 3f9a...``). UUIDs, git SHAs, paths and URLs without credentials pass through.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["KINDS", "Redaction", "RedactionResult", "marker", "preview", "redact"]


@dataclass(frozen=True)
class Redaction:
    """How many secrets of one kind were removed from a text."""

    kind: str
    count: int


@dataclass(frozen=True)
class RedactionResult:
    """The cleaned text plus one :class:`Redaction` per kind that was found."""

    text: str
    redactions: tuple[Redaction, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.redactions)

    @property
    def total(self) -> int:
        """Number of redacted secrets and removed private spans."""
        return sum(r.count for r in self.redactions)


def marker(kind: str) -> str:
    """The replacement text for a secret of ``kind``."""
    return f"[REDACTED:{kind}]"


# --------------------------------------------------------------------------------------
# helpers

_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")  # on the lowered text
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _lower(text: str) -> str:
    """Lower-case ``text`` without changing its length (so match positions line up)."""
    lowered = text.lower()
    if len(lowered) != len(text):  # e.g. "İ" lower-cases to two code points
        lowered = text.translate(_ASCII_LOWER)
    return lowered


def _word_before(text: str, index: int) -> bool:
    """Whether the character before ``index`` is an (ASCII) word character."""
    return index > 0 and text[index - 1] in _WORD_CHARS


# Values that are obviously not secrets: templating, shell variables, placeholders,
# markers left by an earlier pass.
_PLACEHOLDER = re.compile(
    r"""
    \$\{?[A-Za-z_][A-Za-z0-9_]{0,100}\}?   # $VAR, ${VAR}
    | \$[({].{0,200}                        # $(command), ${{ secrets.X }}
    | \$\d{1,3} | [:@][A-Za-z_]\w{0,60}     # SQL bind parameters: $1, :name, @name
    | \{\{.{0,200}\}\} | \{[A-Za-z_]\w{0,100}\}  # {{ template }}, {name}
    | <[^<>]{0,200}>                       # <your-token-here>
    | %\(?[A-Za-z_]{0,50}\)?s              # %s, %(name)s
    | [*xX.…•_-]{1,4096}                   # *****, xxxx, ...
    | \[REDACTED[^\]]{0,100}\]\S{0,10}     # already redacted
    """,
    re.VERBOSE,
)

# Unquoted assignment values in code that merely *refer* to a secret (types, lookups).
_CODE_VALUE = re.compile(
    r"""
    (?:str|string|bytes|int|bool|secretstr|secretbytes|optional|any|none|null|nil
       |true|false|undefined|required|empty|redacted|hidden|masked|env|ref)[|,]?
    | [A-Za-z_][\w.]{0,60}\[.{0,200}         # subscripted types and lookups: Optional[str]
    | (?:os|self|cls|settings|config|cfg|conf|env|process|request|req|args|opts|options
       |params|secrets|vault|ctx|context|app|this|props)[.\[].{0,4096}
    | [^()]{0,4096}\(.{0,4096}            # a function call: get_token(), getenv("X")
    """,
    re.VERBOSE | re.IGNORECASE | re.DOTALL,
)


def _is_placeholder(value: str) -> bool:
    return _PLACEHOLDER.fullmatch(value.strip()) is not None


def _shannon_bits(value: str) -> float:
    n = len(value)
    counts: dict[str, int] = {}
    for ch in value:
        counts[ch] = counts.get(ch, 0) + 1
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _looks_random(value: str) -> bool:
    """A plausible key: long, letters *and* digits, high entropy, not a path."""
    if len(value) < 16 or value[0] in "/.~" or _is_placeholder(value):
        return False
    if not any(c.isdigit() for c in value) or not any(c.isalpha() for c in value):
        return False
    return _shannon_bits(value) >= 3.0


# --------------------------------------------------------------------------------------
# rules

# A handler gets the match (on the text or its lowered copy), the text and the lowered
# text, and returns the ``(start, end, kind)`` span to replace, or ``None`` to keep it.
_Handler = Callable[[re.Match[str], str, str], "tuple[int, int, str] | None"]


@dataclass(frozen=True, slots=True)
class _Rule:
    pattern: re.Pattern[str]
    handler: _Handler
    # The rule only runs when one of these substrings occurs in the (lowered) text.
    needles: tuple[str, ...]
    lower: bool = False  # match against the lower-cased copy


def _token(kind: str, prefix: str = "") -> _Handler:
    """The whole match is the secret; it must not be glued to a preceding word.

    ``prefix``: alternatives (``"sk|rk"``) that must directly precede the match and are
    part of the secret (used when the pattern starts at a more selective literal).
    """
    prefixes = tuple(p for p in prefix.split("|") if p)

    def handle(m: re.Match[str], text: str, _lowered: str) -> tuple[int, int, str] | None:
        start = m.start()
        if prefixes:
            head = next(
                (p for p in prefixes if len(p) <= start and text.startswith(p, start - len(p))),
                None,
            )
            if head is None:
                return None
            start -= len(head)
        if _word_before(text, start):
            return None
        return start, m.end(), kind

    return handle


def _group(kind: str, group: str = "secret") -> _Handler:
    """Only ``group`` is the secret; the rest of the match (names, user, host) stays."""

    def handle(m: re.Match[str], _text: str, _lowered: str) -> tuple[int, int, str] | None:
        start, end = m.span(group)
        if start < 0 or _is_placeholder(m.string[start:end]):
            return None
        return start, end, kind

    return handle


def _url_password(m: re.Match[str], text: str, _lowered: str) -> tuple[int, int, str] | None:
    # a scheme must precede "://"; "user:" may be empty (redis://:password@host)
    if not _word_before(text, m.start()):
        return None
    start, end = m.span("secret")
    if _is_placeholder(text[start:end]):
        return None
    return start, end, "url_password"


def _auth_header(m: re.Match[str], text: str, _lowered: str) -> tuple[int, int, str] | None:
    start, end = m.span("secret")
    if _word_before(text, m.start()) or _is_placeholder(text[start:end]):
        return None
    kind = "basic_auth" if m.group("scheme") == "basic" else "bearer_token"
    return start, end, kind


def _bare_bearer(m: re.Match[str], text: str, _lowered: str) -> tuple[int, int, str] | None:
    # "Bearer xyz" outside a header: only a long value with a digit ("Bearer tokens" is prose).
    start, end = m.span("secret")
    value = text[start:end]
    if _word_before(text, m.start()) or not any(c.isdigit() for c in value):
        return None
    if _is_placeholder(value):
        return None
    return start, end, "bearer_token"


# "<prefix><sep>key" names for the ``key`` keyword (``API_KEY``, ``apiKey``, ``client-key``).
_KEY_PREFIXES = (
    "api", "access", "auth", "secret", "private", "client", "encryption", "signing",
    "master", "session", "app", "account", "service", "license", "subscription",
)  # fmt: skip
_KEY_NAME_ENDINGS = tuple(p + s + "key" for p in _KEY_PREFIXES for s in ("", "_", "-", "."))
_KEY_PROSE_PREFIX = re.compile(r"(?:" + "|".join(_KEY_PREFIXES[:6]) + r")[ _-]?\Z")


def _prose_label(sep: str, name: str, keyword: str, value: str) -> bool:
    """``invalid token: expired`` -- a bare keyword used as a label before a plain word."""
    return (
        sep == ":"
        and name == keyword
        and value.isascii()
        and value.isalpha()
        and (value.islower() or value.istitle())
    )


def _keyword(m: re.Match[str], text: str, lowered: str) -> tuple[int, int, str] | None:
    """``NAME=value`` / ``"name": "value"`` assignments and ``api key is <random>``."""
    kw_start, kw_end = m.span("kw")
    is_key = lowered.startswith("key", kw_start)
    group = next((g for g in ("v1", "v2", "v3", "v4") if m.group(g) is not None), "g")
    start, end = m.span(group)
    value = text[start:end]

    if group != "g":  # an assignment: the whole name must end in a secret word
        name_start = kw_start
        limit = max(0, kw_start - 80)
        while name_start > limit and lowered[name_start - 1] in _NAME_CHARS:
            name_start -= 1
        name = lowered[name_start:kw_end].lstrip("-.")
        if name in ("pwd", "oldpwd"):  # the shell's working directory
            return None
        if not is_key or name.endswith(_KEY_NAME_ENDINGS):
            if _is_placeholder(value):
                return None
            if group == "v4" and (
                len(value) < 3
                or (value.isdigit() and len(value) < 6)
                or _CODE_VALUE.fullmatch(value) is not None
                or _prose_label(m.group("sep"), name, lowered[kw_start:kw_end], value)
            ):
                return None
            return start, end, "env_assignment"
        # "api key: 3f9a..." (a space in the name): judged like prose below

    # prose: the keyword must stand alone and be followed by something random-looking
    kw_first = kw_start
    if is_key:
        head = _KEY_PROSE_PREFIX.search(lowered, max(0, kw_start - 12), kw_start)
        if head is None:
            return None
        kw_first = head.start()
    if _word_before(lowered, kw_first) or not _looks_random(value):
        return None
    return start, end, "generic_api_key"


_ENV_SEP = r"[\"']?[ \t]{0,20}(?P<sep>:=|=>|=(?![=~>])|:(?![:/=]))[ \t]{0,20}"
_ENV_VALUE = (
    r"(?:\"(?P<v1>[^\"\n]{1,4096})\"|'(?P<v2>[^'\n]{1,4096})'|`(?P<v3>[^`\n]{1,4096})`"
    r"|(?P<v4>[^\s\"'`,;&]{1,4096}))"
)
_PROSE_VALUE = (
    r"s?(?:[ \t]{1,20}(?:is|was)[ \t]{1,20}|[ \t]{1,20})[\"'`]?(?P<g>[a-z0-9_+/=.~-]{16,4096})"
)


def _keyword_rule(keyword: str, needle: str) -> _Rule:
    return _Rule(
        re.compile(f"(?P<kw>{keyword})(?:{_ENV_SEP}{_ENV_VALUE}|{_PROSE_VALUE})"),
        _keyword,
        (needle,),
        lower=True,
    )


_RULES: tuple[_Rule, ...] = (
    # PEM private key blocks, an unterminated one up to the end of the text
    _Rule(
        re.compile(
            r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
            r".*?(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|\Z)",
            re.DOTALL,
        ),
        _token("private_key"),
        ("-----BEGIN",),
    ),
    # scheme://user:password@host -> only the password goes
    _Rule(
        re.compile(
            r"://(?P<user>[^\s:/?#@\[\]]{0,256}):"
            r"(?P<secret>[^\s/?#@]{1,512}(?:@[^\s/?#@]{1,512}){0,4})"
            r"@(?=[^\s@/?#]{0,256}[A-Za-z0-9])"
        ),
        _url_password,
        ("://",),
    ),
    _Rule(re.compile(r"sk-ant-[A-Za-z0-9_-]{4,4096}"), _token("anthropic_key"), ("sk-ant-",)),
    _Rule(
        re.compile(
            r"sk-(?!ant-)(?:proj-|svcacct-|admin-)?(?=[A-Za-z_-]{0,200}[0-9])[A-Za-z0-9_-]{20,4096}"
        ),
        _token("openai_key"),
        ("sk-",),
    ),
    _Rule(
        re.compile(r"g(?:h[pousr]_[A-Za-z0-9]{20,4096}|ithub_pat_[A-Za-z0-9_]{20,4096})"),
        _token("github_token"),
        ("gh", "github_pat_"),
    ),
    _Rule(
        re.compile(r"gl(?:pat|dt|rt|ptt)-[A-Za-z0-9_-]{20,4096}"), _token("gitlab_token"), ("gl",)
    ),
    _Rule(re.compile(r"xox[abeoprs]-[A-Za-z0-9-]{10,4096}"), _token("slack_token"), ("xox",)),
    _Rule(
        re.compile(
            r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<secret>[A-Za-z0-9_/-]{8,4096})"
        ),
        _group("slack_webhook"),
        ("hooks.slack.com",),
    ),
    _Rule(
        re.compile(r"AIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])"), _token("google_api_key"), ("AIza",)
    ),
    _Rule(
        re.compile(r"_(?:live|test)_[0-9A-Za-z]{10,4096}"),
        _token("stripe_key", prefix="sk|rk|whsec"),
        ("_live_", "_test_"),
    ),
    _Rule(re.compile(r"npm_[A-Za-z0-9]{36}(?![A-Za-z0-9_-])"), _token("npm_token"), ("npm_",)),
    _Rule(
        re.compile(r"hf_[A-Za-z0-9]{30,4096}(?![A-Za-z0-9_-])"),
        _token("huggingface_token"),
        ("hf_",),
    ),
    _Rule(
        re.compile(r"A(?:KIA|SIA|ROA|IDA)[0-9A-Z]{16}(?![A-Za-z0-9])"),
        _token("aws_access_key"),
        ("AKIA", "ASIA", "AROA", "AIDA"),
    ),
    _Rule(
        re.compile(
            r"eyJ[A-Za-z0-9_-]{10,8192}\.[A-Za-z0-9_-]{10,8192}\.[A-Za-z0-9_-]{0,8192}"
            r"(?![A-Za-z0-9_-])"
        ),
        _token("jwt"),
        ("eyJ",),
    ),
    # ---- rules below match the lower-cased copy ----
    _Rule(
        re.compile(
            r"aws_?secret(?:_?access)?_?key[\"']?[ \t]{0,20}[:=][ \t]{0,20}[\"']?"
            r"(?P<secret>[a-z0-9/+=]{40})(?![a-z0-9/+=])"
        ),
        _group("aws_secret_key"),
        ("aws",),
        lower=True,
    ),
    _Rule(
        re.compile(
            r"authorization[\"']?[ \t]{0,20}[:=][ \t]{0,20}[\"']?[ \t]{0,20}"
            r"(?P<scheme>bearer|basic|token)[ \t]{1,20}(?P<secret>[a-z0-9._~+/-]{1,8192}=*)"
        ),
        _auth_header,
        ("authorization",),
        lower=True,
    ),
    _Rule(
        re.compile(r"bearer[ \t]{1,20}(?P<secret>[a-z0-9._~+/-]{16,8192}=*)"),
        _bare_bearer,
        ("bearer",),
        lower=True,
    ),
    _keyword_rule(r"pass(?:word|wd|phrase)", "pass"),
    _keyword_rule(r"pwd", "pwd"),
    _keyword_rule(r"secret(?:[ _-]?key)?", "secret"),
    _keyword_rule(r"token", "token"),
    _keyword_rule(r"key", "key"),
    _keyword_rule(r"credentials?", "credential"),
)

KINDS: tuple[str, ...] = (
    "private_span", "private_key", "url_password", "anthropic_key", "openai_key",
    "github_token", "gitlab_token", "slack_token", "slack_webhook", "google_api_key",
    "stripe_key", "npm_token", "huggingface_token", "aws_access_key", "jwt", "aws_secret_key",
    "bearer_token", "basic_auth", "env_assignment", "generic_api_key",
)  # fmt: skip
"""Every kind :func:`redact` can report, in the order they are listed in the result."""


# --------------------------------------------------------------------------------------
# <private> spans

_PRIVATE_OPEN = re.compile(r"<(?i:private)(?:\s[^<>/]{0,200})?>")
_PRIVATE_CLOSE = re.compile(r"</(?i:private)\s{0,20}>")


def _remove_private(text: str) -> tuple[str, int]:
    """Drop ``<private>...</private>`` spans (an unclosed one runs to the end of the text).

    The whitespace around a removed span is collapsed: ``"a <private>x</private> b"``
    becomes ``"a b"``, a span at the end of a line leaves no trailing blanks.
    """
    pieces: list[str] = []
    pos = 0
    count = 0
    size = len(text)
    while True:
        opening = _PRIVATE_OPEN.search(text, pos)
        if opening is None:
            break
        closing = _PRIVATE_CLOSE.search(text, opening.end())
        end = closing.end() if closing is not None else size
        before = text[pos : opening.start()].rstrip(" \t")
        left = opening.start() - (pos + len(before))  # blanks before the span
        right_end = end
        while right_end < size and text[right_end] in " \t":
            right_end += 1
        line_start = pos + len(before)
        at_line_start = line_start == 0 or text[line_start - 1] == "\n"
        at_line_end = right_end >= size or text[right_end] in "\r\n"
        if at_line_end:
            joint = ""
        elif at_line_start:
            joint = text[line_start : opening.start()]  # keep the indentation
        else:
            joint = " " if (left or right_end > end) else ""
        pieces.append(before)
        pieces.append(joint)
        pos = right_end
        count += 1
    if not count:
        return text, 0
    pieces.append(text[pos:])
    return "".join(pieces), count


# --------------------------------------------------------------------------------------
# public API


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return "" if value is None else str(value)


def redact(text: str) -> RedactionResult:
    """Remove ``<private>`` spans and replace secrets by ``[REDACTED:<kind>]`` markers.

    Never raises; ``result.changed`` is ``False`` when the text came through untouched.
    """
    text = _as_text(text)  # defensive: callers are typed, but this must never raise
    if not text:
        return RedactionResult(text)
    counts: dict[str, int] = {}

    if "<" in text:
        text, removed = _remove_private(text)
        if removed:
            counts["private_span"] = removed

    lowered = _lower(text)
    # accepted spans per rule, each list sorted and disjoint: (starts, ends, kinds)
    accepted: list[tuple[list[int], list[int], list[str]]] = []
    for rule in _RULES:
        haystack = lowered if rule.lower else text
        if not any(needle in haystack for needle in rule.needles):
            continue
        starts: list[int] = []
        ends: list[int] = []
        kinds: list[str] = []
        for m in rule.pattern.finditer(haystack):
            try:
                hit = rule.handler(m, text, lowered)
            except Exception:  # a handler bug must never break a save: redact the match
                hit = (m.start(), m.end(), "unknown")
            if hit is None:
                continue
            start, end, kind = hit
            if (
                start >= end
                or _overlaps(accepted, start, end)
                or _overlaps_one(starts, ends, start, end)
            ):
                continue
            index = bisect_right(starts, start)
            starts.insert(index, start)
            ends.insert(index, end)
            kinds.insert(index, kind)
            counts[kind] = counts.get(kind, 0) + 1
        if starts:
            accepted.append((starts, ends, kinds))

    if accepted:
        spans: list[tuple[int, int, str]] = []
        for starts, ends, kinds in accepted:
            spans.extend(zip(starts, ends, kinds, strict=True))
        spans.sort()
        pieces: list[str] = []
        pos = 0
        for start, end, kind in spans:
            pieces.append(text[pos:start])
            pieces.append(marker(kind))
            pos = end
        pieces.append(text[pos:])
        text = "".join(pieces)

    if not counts:
        return RedactionResult(text)
    return RedactionResult(text, tuple(Redaction(k, n) for k, n in counts.items()))


def _overlaps_one(starts: list[int], ends: list[int], start: int, end: int) -> bool:
    index = bisect_right(starts, start)
    if index > 0 and ends[index - 1] > start:
        return True
    return index < len(starts) and starts[index] < end


def _overlaps(accepted: list[tuple[list[int], list[int], list[str]]], start: int, end: int) -> bool:
    return any(_overlaps_one(starts, ends, start, end) for starts, ends, _ in accepted)


_WHITESPACE = re.compile(r"[\s\x00-\x1f\x7f]+")


def preview(text: str, limit: int = 80) -> str:
    """A redacted, single-line, whitespace-collapsed excerpt of at most ``limit`` characters.

    Meant for Temporal memos, search attributes and log lines; a cut is marked with "…".
    """
    flat = _WHITESPACE.sub(" ", redact(text).text).strip()
    if limit <= 0:
        return ""
    if len(flat) <= limit:
        return flat
    if limit == 1:
        return "…"
    return flat[: limit - 1].rstrip() + "…"
