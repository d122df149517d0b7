"""How redaction judges a match: is this value a secret, or a placeholder, code, prose?

The rule tables live in :mod:`team_memory_core.rules.redaction`; each rule names one of the handlers
below, which get the match (on the text or its lower-cased copy), the text and the
lower-cased text, and return the ``(start, end, kind)`` span to replace, or ``None`` to
keep the text. Standard library only: the Claude Code hook imports redaction.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable

_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")  # on the lowered text
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def lower_keeping_length(text: str) -> str:
    """Lower-case ``text`` without changing its length (so match positions line up)."""
    lowered = text.lower()
    if len(lowered) != len(text):  # e.g. "İ" lower-cases to two code points
        lowered = text.translate(_ASCII_LOWER)
    return lowered


def word_before(text: str, index: int) -> bool:
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
    | [A-Za-z0-9_]{1,16}[-_.]?(?:\.{2,}|…)   # sk-..., ghp_…
    | \[REDACTED[^\]]{0,100}\]\S{0,10}     # already redacted
    | (?i:(?:your|insert|enter|replace|put)[-_ .]\S{0,60}      # your-api-key-here
       | change[-_]?me|replace[-_]?me|placeholder|example|dummy|sample|secret|password
       | token|redacted|todo|tbd|none|null)
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

# Values after "password is ..." that name how passwords are handled, not a password.
_PASSWORD_WORDS = re.compile(
    r"(?:sha|md[45]|argon|bcrypt|scrypt|pbkdf|base\d|utf|aes|rsa|hmac|crc|blake|ed25519"
    r"|x25519|tls|ssl|sso|2fa|mfa|oauth|v\d|\d+[-+]?(?:char|digit|letter|symbol|byte|bit))",
    re.IGNORECASE,
)


def _is_placeholder(value: str) -> bool:
    value = value.strip()
    return _PLACEHOLDER.fullmatch(value) is not None or _filler(value)


def _shannon_bits(value: str) -> float:
    n = len(value)
    counts: dict[str, int] = {}
    for ch in value:
        counts[ch] = counts.get(ch, 0) + 1
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def looks_random(value: str) -> bool:
    """A plausible key: long, letters *and* digits, high entropy, not a path."""
    if len(value) < 16 or value[0] in "/.~" or _is_placeholder(value):
        return False
    if not any(c.isdigit() for c in value) or not any(c.isalpha() for c in value):
        return False
    return _shannon_bits(value) >= 3.0


def mixed_case(value: str) -> bool:
    """Upper and lower case letters: a random base64/base62 body, not a snake_case name."""
    return any(c.isupper() for c in value) and any(c.islower() for c in value)


_FILLER_CHARS = frozenset("xX*.…•0#")


def _filler(value: str) -> bool:
    """``ghp_XXXXXXXXXXXX``: a documentation placeholder, not a token."""
    return len(value) >= 16 and set(value[-16:]) <= _FILLER_CHARS


def _password_like(value: str, strict: bool) -> bool:
    """A password written in prose: a digit or symbol in it (``hunter2``, ``Winter2024!``).

    ``strict`` (no "is"/"was" before it): only letters *and* digits count.
    """
    if len(value) < 4 or value[0] in "/.~$%{<@" or _is_placeholder(value):
        return False
    if _PASSWORD_WORDS.match(value) or "://" in value:
        return False
    has_digit = any(c.isdigit() for c in value)
    has_alpha = any(c.isalpha() for c in value)
    if strict:
        return len(value) >= 6 and has_digit and has_alpha
    symbol = any(c in "!@#$%^&*+=~?|" for c in value)
    return (has_digit and (has_alpha or len(value) >= 6)) or (symbol and has_alpha)


# --------------------------------------------------------------------------------------
# handlers

Span = tuple[int, int, str]
Handler = Callable[[re.Match[str], str, str], "Span | None"]
Check = Callable[[str], bool]


def token(kind: str, check: Check | None = None) -> Handler:
    """The whole match is the secret; it must not be glued to a preceding word."""

    def handle(m: re.Match[str], text: str, _lowered: str) -> Span | None:
        value = m.group()
        if word_before(text, m.start()) or _filler(value):
            return None
        if check is not None and not check(value):
            return None
        return m.start(), m.end(), kind

    return handle


def _value_group(m: re.Match[str]) -> str:
    """The first of the value groups (quoted or bare alternatives) that matched."""
    return next(g for g in ("secret", "q1", "q2", "q3", "w") if m.groupdict().get(g) is not None)


def group(kind: str, check: Check | None = None, *, standalone: bool = False) -> Handler:
    """Only the value group is the secret; the rest of the match (names, flags) stays.

    ``standalone``: the match must not continue a preceding word (``mysql``, not ``xmysql``).
    """

    def handle(m: re.Match[str], text: str, _lowered: str) -> Span | None:
        start, end = m.span(_value_group(m))
        value = text[start:end]
        if standalone and word_before(text, m.start()):
            return None
        if _is_placeholder(value) or (check is not None and not check(value)):
            return None
        return start, end, kind

    return handle


def url_password(m: re.Match[str], text: str, _lowered: str) -> Span | None:
    # a scheme must precede "://"; "user:" may be empty (redis://:password@host)
    if not word_before(text, m.start()):
        return None
    start, end = m.span("secret")
    if _is_placeholder(text[start:end]):
        return None
    return start, end, "url_password"


def auth_header(m: re.Match[str], text: str, _lowered: str) -> Span | None:
    start, end = m.span("secret")
    if word_before(text, m.start()) or _is_placeholder(text[start:end]):
        return None
    kind = "basic_auth" if m.group("scheme") == "basic" else "bearer_token"
    return start, end, kind


def bare_bearer(m: re.Match[str], text: str, _lowered: str) -> Span | None:
    # "Bearer xyz" outside a header: only a long value with a digit ("Bearer tokens" is prose).
    start, end = m.span("secret")
    value = text[start:end]
    if word_before(text, m.start()) or not any(c.isdigit() for c in value):
        return None
    if _is_placeholder(value):
        return None
    return start, end, "bearer_token"


def user_password_blob(value: str) -> bool:
    """Docker's ``"auth"`` and npm's ``_auth``: base64 of ``user:password``."""
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return b":" in decoded


def cli_value(value: str) -> bool:
    """A command-line argument that is a value, not the next flag, a variable or a word."""
    if value[0] in "-$<%{/~.@" or _is_placeholder(value):
        return False
    return not (value.isascii() and value.isalpha() and value.islower())


def prose_password(m: re.Match[str], text: str, _lowered: str) -> Span | None:
    """``the password for the VPN is Winter2024!``, ``my password is "two words"``."""
    group = _value_group(m)
    start, end = m.span(group)
    if group == "w":  # a sentence's final punctuation is not part of the password
        while end > start and text[end - 1] in ".,;:)]}":
            end -= 1
    value = text[start:end]
    if word_before(text, m.start()) or not value:
        return None
    verb = m.group("verb") or m.group("verb2")
    quoted = group != "w"
    if not (quoted and verb and not _is_placeholder(value)) and not _password_like(
            value, strict=not verb):
        return None
    return start, end, "password"


# "<prefix><sep>key" names for the ``key`` keyword (``API_KEY``, ``apiKey``, ``client-key``).
_KEY_PREFIXES = (
    "api", "access", "auth", "secret", "private", "client", "encryption", "signing",
    "master", "session", "app", "account", "service", "license", "subscription",
)  # fmt: skip
_KEY_NAME_ENDINGS = tuple(p + s + "key" for p in _KEY_PREFIXES for s in ("", "_", "-", "."))
_KEY_PROSE_PREFIX = re.compile(r"(?:" + "|".join(_KEY_PREFIXES[:6]) + r")[ _-]?\Z")


# Publishable keys (Stripe's pk_live_, Mapbox's pk.eyJ...) are public by design.
_PUBLIC = ("pk_", "pk.")


def _prose_label(sep: str, name: str, keyword: str, value: str) -> bool:
    """``invalid token: expired`` -- a bare keyword used as a label before a plain word."""
    return (
        sep == ":"
        and name == keyword
        and value.isascii()
        and value.isalpha()
        and (value.islower() or value.istitle())
    )


def keyword_value(m: re.Match[str], text: str, lowered: str) -> Span | None:
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
    if word_before(lowered, kw_first) or not looks_random(value) or value.startswith(_PUBLIC):
        return None
    return start, end, "generic_api_key"
