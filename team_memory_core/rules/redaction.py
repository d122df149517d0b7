"""Secret redaction and ``<private>`` span removal for everything Team Memory stores.

Before any text reaches an LLM, Temporal history, the database or a log it goes through
:func:`redact`: credentials are replaced by ``[REDACTED:<kind>]`` markers and
``<private>...</private>`` spans are dropped entirely, so a team memory never turns into a
credential store. Tags (labels stored in clear and indexed as search words) go through
:func:`redact_tags`, which replaces a tag holding a secret by the tag ``redacted:<kind>``.

The rules are data: provider token formats are rows of ``_FORMATS`` (a kind, the literal the
token starts with, its pattern, an optional check), context-dependent secrets (assignments,
headers, command lines, prose) are the rows of ``_RULES`` with a handler each. The test
corpus (tests/support/secret_corpus.py) holds a sample of every format and the benign
look-alikes that must come through unchanged.

It runs on the save request path, so it is built for speed and robustness:

* every pattern is precompiled and each rule is guarded by a plain substring check (the
  literal a token starts with, a keyword), so a text without any of them costs a few
  substring scans;
* keyword rules run on a lower-cased copy of the text (same length, so positions line up)
  instead of using ``re.IGNORECASE``, which would defeat the literal-prefix optimisation;
* all quantifiers are bounded and there are no nested ones, so odd input (NUL bytes, lone
  surrogates, megabyte-long words) stays linear and never raises.

The rules are biased towards *not* mangling ordinary engineering prose: words such as
"token", "password" or "key" only trigger a redaction when they are used as an assignment
(``DB_PASSWORD=...``, ``"api_key": "..."``), as a command-line argument (``--password X``,
``mysql -pX``), or are directly followed by something that looks like a secret (``api key is
3f9a...``, ``the password is hunter2``). UUIDs, git SHAs, lockfile hashes, public keys,
paths, placeholders (``<your-key>``, ``sk-...``, ``$TOKEN``) and URLs without credentials pass.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from typing import NamedTuple

from team_memory_core.rules.redaction_checks import (
    Check,
    Handler,
    Span,
    auth_header,
    bare_bearer,
    cli_value,
    group,
    keyword_value,
    looks_random,
    lower_keeping_length,
    mixed_case,
    prose_password,
    token,
    url_password,
    user_password_blob,
)
from team_memory_core.rules.text import one_line

__all__ = ["KINDS", "Redaction", "RedactionResult", "marker", "preview", "redact", "redact_tags"]


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

    @property
    def kinds(self) -> list[str]:
        return [r.kind for r in self.redactions]


def marker(kind: str) -> str:
    """The replacement text for a secret of ``kind``."""
    return f"[REDACTED:{kind}]"


# --------------------------------------------------------------------------------------
# rule tables


@dataclass(frozen=True, slots=True)
class _Rule:
    pattern: re.Pattern[str]
    handler: Handler
    # The rule only runs when one of these substrings occurs in the (lowered) text.
    needles: tuple[str, ...]
    lower: bool = False  # match against the lower-cased copy
    # A token format: its needle can only be in a word of at least _MIN_TOKEN characters.
    token: bool = False


class _Format(NamedTuple):
    """A provider's token format: the whole match is the secret."""

    kind: str
    needles: tuple[str, ...]
    pattern: str
    check: Check | None = None


_E = r"(?![A-Za-z0-9_-])"  # the token ends here
_B64 = r"[A-Za-z0-9+/]"

# Ordered: a more specific format comes before a more general one sharing its text.
_FORMATS: tuple[_Format, ...] = (
    _Format("team_memory_key", ("tm_",), rf"tm_[A-Za-z0-9_-]{{32}}{_E}", mixed_case),
    _Format("anthropic_key", ("sk-ant-",), r"sk-ant-[A-Za-z0-9_-]{4,4096}"),
    _Format("openai_key", ("sk-",), r"sk-(?!ant-)(?:proj-|svcacct-|admin-)?"
            r"(?=[A-Za-z_-]{0,200}[0-9])[A-Za-z0-9_-]{20,4096}"),
    _Format("github_token", ("gh", "github_pat_"),
            r"g(?:h[pousr]_[A-Za-z0-9]{20,4096}|ithub_pat_[A-Za-z0-9_]{20,4096})"),
    _Format("gitlab_token", ("gl",), r"gl(?:pat|dt|rt|ptt|cbt|imt|oas|soat|ft|agent|ffct)"
            r"-[A-Za-z0-9_-]{20,4096}"),
    _Format("grafana_token", ("glc_", "glsa_"),
            rf"gl(?:c_{_B64}{{32,4096}}={{0,2}}|sa_[A-Za-z0-9]{{32}}_[A-Fa-f0-9]{{8}}{_E})"),
    _Format("slack_token", ("xox", "xapp-"),
            r"x(?:ox[abeoprs]-[A-Za-z0-9-]{10,4096}|app-\d-[A-Za-z0-9-]{10,4096})"),
    _Format("google_api_key", ("AIza",), r"AIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])"),
    _Format("google_oauth_secret", ("GOCSPX-",), rf"GOCSPX-[A-Za-z0-9_-]{{28}}{_E}"),
    _Format("google_oauth_token", ("ya29.", "1//0"),
            r"(?:ya29\.[A-Za-z0-9_-]{20,4096}|1//0[A-Za-z0-9_-]{30,4096})"),
    _Format("stripe_key", ("_live_", "_test_", "whsec_"),
            r"(?:[sr]k_(?:live|test)_[0-9A-Za-z]{10,4096}|whsec_[A-Za-z0-9+/=]{24,4096})"),
    _Format("shippo_token", ("shippo_",), rf"shippo_(?:live|test)_[a-f0-9]{{40}}{_E}"),
    _Format("npm_token", ("npm_",), rf"npm_[A-Za-z0-9]{{36}}{_E}"),
    _Format("pypi_token", ("pypi-AgE",), r"pypi-AgE[A-Za-z0-9_-]{50,4096}"),
    _Format("rubygems_token", ("rubygems_",), rf"rubygems_[a-f0-9]{{48}}{_E}"),
    _Format("nuget_key", ("oy2",), rf"oy2[a-z0-9]{{43}}{_E}", looks_random),
    _Format("docker_token", ("dckr_",), r"dckr_(?:pat|oat)_[A-Za-z0-9_-]{20,4096}"),
    _Format("huggingface_token", ("hf_", "api_org_"),
            rf"(?:hf_[A-Za-z0-9]{{30,4096}}|api_org_[A-Za-z0-9]{{30,4096}}){_E}"),
    _Format("sendgrid_key", ("SG.",), rf"SG\.[A-Za-z0-9_-]{{16,32}}\.[A-Za-z0-9_-]{{30,64}}{_E}"),
    _Format("mailgun_key", ("key-",), rf"key-[a-f0-9]{{32}}{_E}", looks_random),
    _Format("mailchimp_key", ("-us",), r"(?<![A-Za-z0-9])[a-f0-9]{32}-us\d{1,2}(?![A-Za-z0-9])"),
    _Format("twilio_key", ("SK",), rf"SK[0-9a-f]{{32}}{_E}", looks_random),
    _Format("brevo_key", ("xkeysib-",), rf"xkeysib-[a-f0-9]{{64}}-[A-Za-z0-9]{{16}}{_E}"),
    _Format("digitalocean_token", ("_v1_",), rf"do[opr]_v1_[a-f0-9]{{64}}{_E}"),
    _Format("shopify_token", ("shp",), rf"shp(?:at|ss|ca|pa)_[a-fA-F0-9]{{32}}{_E}"),
    _Format("heroku_key", ("HRKU-",), r"HRKU-[A-Za-z0-9_-]{20,4096}"),
    _Format("vault_token", ("hvs.", "hvb.", "hvr."), r"hv[sbr]\.[A-Za-z0-9_-]{20,4096}"),
    _Format("terraform_token", (".atlasv1.",),
            r"[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,4096}"),
    _Format("pulumi_token", ("pul-",), rf"pul-[a-f0-9]{{40}}{_E}"),
    _Format("postman_key", ("PMAK-",), rf"PMAK-[a-f0-9]{{24}}-[a-f0-9]{{34}}{_E}"),
    _Format("doppler_token", ("dp.",), r"dp\.(?:st|pt|ct|sa|scim|audit)\.(?:[a-z0-9_-]{1,40}\.)?"
            rf"[A-Za-z0-9]{{40,44}}{_E}"),
    _Format("age_secret_key", ("AGE-SECRET-KEY-1",), r"AGE-SECRET-KEY-1[0-9A-Z]{58}"),
    _Format("supabase_token", ("sbp_",), rf"sbp_[a-f0-9]{{40}}{_E}"),
    _Format("planetscale_token", ("pscale_",), r"pscale_(?:tkn|pw|oauth)_[A-Za-z0-9_.=-]{32,64}"),
    _Format("linear_key", ("lin_api_",), rf"lin_api_[A-Za-z0-9]{{40}}{_E}"),
    _Format("notion_token", ("ntn_", "secret_"),
            rf"(?:ntn_[A-Za-z0-9]{{40,50}}|secret_[A-Za-z0-9]{{43}}){_E}", looks_random),
    _Format("atlassian_token", ("ATATT3",), r"ATATT3[A-Za-z0-9_=-]{100,4096}"),
    _Format("bitbucket_token", ("ATBB",), r"ATBB[A-Za-z0-9_=.-]{32,4096}"),
    _Format("databricks_token", ("dapi",), rf"dapi[a-f0-9]{{32}}(?:-\d)?{_E}"),
    _Format("figma_token", ("figd_",), r"figd_[A-Za-z0-9_-]{40,4096}"),
    _Format("sentry_token", ("sntry",), r"sntry(?:s_[A-Za-z0-9+/=_-]{60,4096}|u_[a-f0-9]{64})"),
    _Format("new_relic_key", ("NRAK-", "NRII-", "NRJS-"),
            rf"NR(?:AK|II|JS)-[A-Za-z0-9]{{27,40}}{_E}"),
    _Format("replicate_token", ("r8_",), rf"r8_[A-Za-z0-9]{{37}}{_E}"),
    _Format("groq_key", ("gsk_",), rf"gsk_[A-Za-z0-9]{{52}}{_E}"),
    _Format("perplexity_key", ("pplx-",), rf"pplx-[A-Za-z0-9]{{48}}{_E}"),
    _Format("xai_key", ("xai-",), rf"xai-[A-Za-z0-9]{{70,90}}{_E}"),
    _Format("square_token", ("EAAA", "sq0"),
            rf"(?:EAAA[A-Za-z0-9_-]{{60}}|sq0(?:atp|csp)-[A-Za-z0-9_-]{{22,43}}){_E}"),
    _Format("facebook_token", ("EAA",), r"EAA[B-Z][A-Za-z0-9]{40,4096}", looks_random),
    _Format("dropbox_token", ("sl.",), r"sl\.[A-Za-z0-9_-]{120,4096}"),
    _Format("mapbox_token", ("sk.eyJ",), r"sk\.eyJ[A-Za-z0-9_-]{10,4096}\.[A-Za-z0-9_-]{10,4096}"),
    _Format("azure_client_secret", ("Q~",),
            r"[A-Za-z0-9_~.-]{3}\dQ~[A-Za-z0-9_~.-]{31,34}(?![A-Za-z0-9_~.-])"),
    _Format("telegram_bot_token", (":AA",), rf"\d{{8,10}}:AA[A-Za-z0-9_-]{{33}}{_E}"),
    _Format("twitter_bearer", ("A" * 20,), r"A{20,60}[A-Za-z0-9%]{30,4096}", looks_random),
    _Format("tencent_key", ("AKID",), rf"AKID[A-Za-z0-9]{{32}}{_E}", looks_random),
    _Format("alibaba_key", ("LTAI",), rf"LTAI[A-Za-z0-9]{{12,20}}{_E}", looks_random),
    _Format("dynatrace_token", ("dt0c01.",), rf"dt0c01\.[A-Z0-9]{{24}}\.[A-Z0-9]{{64}}{_E}"),
    _Format("aws_session_token", ("IQoJb3JpZ2luX2Vj",), r"IQoJb3JpZ2luX2Vj[A-Za-z0-9/+=]{40,8192}"),
    _Format("aws_access_key", ("AKIA", "ASIA", "AROA", "AIDA"),
            r"A(?:KIA|SIA|ROA|IDA)[0-9A-Z]{16}(?![A-Za-z0-9])"),
    _Format("jwt", ("eyJ",), r"eyJ[A-Za-z0-9_-]{10,8192}\.[A-Za-z0-9_-]{10,8192}\."
            r"[A-Za-z0-9_-]{0,8192}(?![A-Za-z0-9_-])"),
)

# A value on a command line or in prose: quoted (only what is inside is the secret) or bare.
_ARG = r"(?:\"(?P<q1>[^\"\n]{1,200})\"|'(?P<q2>[^'\n]{1,200})'|(?P<w>[^\s\"'`]{1,200}))"
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
        keyword_value,
        (needle,),
        lower=True,
    )


def _rule(pattern: str, handler: Handler, *needles: str, lower: bool = False,
          flags: int = 0) -> _Rule:
    return _Rule(re.compile(pattern, flags), handler, needles, lower)


# The shortest match of any _FORMATS pattern (sk-ant-xxxx): shorter words cannot hold a token.
_MIN_TOKEN = 11


_RULES: tuple[_Rule, ...] = (
    # private key blocks (PEM, PuTTY), an unterminated one up to the end of the text
    _rule(r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
          r".*?(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|\Z)",
          token("private_key"), "-----BEGIN", flags=re.DOTALL),
    _rule(r"PuTTY-User-Key-File-\d:.*?(?:Private-MAC:[ \t]{0,5}[0-9a-fA-F]{0,128}|\Z)",
          token("private_key"), "PuTTY-User-Key-File-", flags=re.DOTALL),
    # scheme://user:password@host -> only the password goes
    _rule(r"://(?P<user>[^\s:/?#@\[\]]{0,256}):"
          r"(?P<secret>[^\s/?#@]{1,512}(?:@[^\s/?#@]{1,512}){0,4})"
          r"@(?=[^\s@/?#]{0,256}[A-Za-z0-9])", url_password, "://"),
    *(_Rule(re.compile(f.pattern), token(f.kind, f.check), f.needles, token=True)
      for f in _FORMATS),
    _rule(r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<secret>[A-Za-z0-9_/-]{8,4096})",
          group("slack_webhook"), "hooks.slack.com"),
    _rule(r"discord(?:app)?\.com/api/webhooks/\d{5,30}/(?P<secret>[A-Za-z0-9_-]{20,4096})",
          group("discord_webhook"), "/api/webhooks/"),
    _rule(r"[?&]sig=(?P<secret>[A-Za-z0-9%+/=]{20,4096})", group("azure_sas"), "sig="),
    _rule(rf"(?:\"auth\"[ \t]{{0,5}}:[ \t]{{0,5}}\"|_auth[ \t]{{0,5}}=[ \t]{{0,5}}\"?)"
          rf"(?P<secret>{_B64}{{8,8192}}={{0,2}})",
          group("basic_auth", user_password_blob), "auth"),
    # ---- rules below match the lower-cased copy ----
    _rule(r"aws_?secret(?:_?access)?_?key[\"']?[ \t]{0,20}[:=][ \t]{0,20}[\"']?"
          r"(?P<secret>[a-z0-9/+=]{40})(?![a-z0-9/+=])", group("aws_secret_key"), "aws",
          lower=True),
    _rule(r"authorization[\"']?[ \t]{0,20}[:=][ \t]{0,20}[\"']?[ \t]{0,20}"
          r"(?P<scheme>bearer|basic|token)[ \t]{1,20}(?P<secret>[a-z0-9._~+/-]{1,8192}=*)",
          auth_header, "authorization", lower=True),
    _rule(r"bearer[ \t]{1,20}(?P<secret>[a-z0-9._~+/-]{16,8192}=*)", bare_bearer, "bearer",
          lower=True),
    _rule(r"client-key-data[\"']?[ \t]{0,5}:[ \t]{0,5}[\"']?(?P<secret>[a-z0-9+/]{20,8192}={0,2})",
          group("private_key"), "client-key-data", lower=True),
    # passwords on a command line
    _rule(r"(?:mysql(?:dump|admin|sh|import|check)?|mariadb(?:-dump)?)(?=[ \t])[^\n]{0,300}?"
          r"[ \t]-p(?:\"(?P<q1>[^\"\n]{1,200})\"|'(?P<q2>[^'\n]{1,200})'"
          r"|(?P<w>[^\s\"'-][^\s\"']{0,200}))", group("password", standalone=True),
          "mysql", "mariadb"),
    _rule(rf"sshpass[ \t]{{1,5}}-p[ \t]{{0,5}}{_ARG}", group("password", cli_value), "sshpass"),
    _rule(rf"redis-cli(?=[ \t])[^\n]{{0,300}}?[ \t](?:-a|--pass)[ \t]{{1,5}}{_ARG}",
          group("password", cli_value), "redis-cli"),
    _rule(r"(?:curl|wget|http)(?=[ \t])[^\n]{0,300}?[ \t](?:-u|--user)[ \t]{0,5}[\"']?"
          r"[^\s:\"'$]{1,100}:(?P<secret>[^\s\"']{1,200})", group("password", standalone=True),
          "curl", "wget", "http"),
    _rule(r"-pass(?:in|out)?[ \t]{1,5}pass:(?P<secret>\S{1,200})", group("password"), "pass:"),
    _rule(r"machine[ \t]{1,20}\S{1,200}[ \t\r\n]{1,20}login[ \t]{1,20}\S{1,200}[ \t\r\n]{1,20}"
          r"password[ \t]{1,20}(?P<secret>\S{1,200})", group("password"), "machine",
          lower=True),
    _rule(rf"(?<![a-z0-9_-])--(?:[a-z0-9]{{1,20}}-){{0,3}}(?:password|passwd|passphrase|token"
          rf"|secret|api-?key|access-key|secret-key)(?![a-z0-9_-])[ \t]{{1,5}}{_ARG}",
          group("command_line_secret", cli_value), "--", lower=True),
    # NAME=value, "name": "value" and "<keyword> <random value>"
    _keyword_rule(r"pass(?:word|wd|phrase)", "pass"),
    _keyword_rule(r"pwd", "pwd"),
    _keyword_rule(r"secret(?:[ _-]?key)?", "secret"),
    _keyword_rule(r"token", "token"),
    _keyword_rule(r"key", "key"),
    _keyword_rule(r"credentials?", "credential"),
    # "the password for the VPN is Winter2024!"
    _rule(r"pass(?:word|wd|phrase)s?(?:[ \t]{1,5}(?:for|to|of|on|at)[ \t]{1,5}"
          r"[^\n.,;:!?\"'`]{1,60}?[ \t]{0,5}(?P<verb>is|was|=|:)[ \t]{1,5}"
          r"|[ \t]{0,5}(?P<verb2>is|was|=|:)[ \t]{1,5}|[ \t]{1,5})"
          r"(?:\"(?P<q1>[^\"\n]{1,200})\"|'(?P<q2>[^'\n]{1,200})'|“(?P<q3>[^”\n]{1,200})”"
          r"|(?P<w>[^\s\"'`]{4,200}))", prose_password, "pass", lower=True),
)

KINDS: tuple[str, ...] = tuple(dict.fromkeys((
    "private_span", "private_key", "url_password", *(f.kind for f in _FORMATS),
    "slack_webhook", "discord_webhook", "azure_sas", "basic_auth", "aws_secret_key",
    "bearer_token", "password", "command_line_secret", "env_assignment", "generic_api_key",
)))
"""Every kind :func:`redact` can report."""


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


def _secret_spans(text: str) -> list[Span]:
    """The disjoint spans to replace, in text order; an earlier rule wins an overlap."""
    lowered = lower_keeping_length(text)
    # Token needles are looked for in the long words only: prose is mostly short words.
    words = " ".join([word for word in text.split() if len(word) >= _MIN_TOKEN])
    starts: list[int] = []
    ends: list[int] = []
    kinds: list[str] = []
    for rule in _RULES:
        haystack = lowered if rule.lower else text
        scope = words if rule.token else haystack
        if not any(needle in scope for needle in rule.needles):
            continue
        for m in rule.pattern.finditer(haystack):
            try:
                hit = rule.handler(m, text, lowered)
            except Exception:  # a handler bug must never break a save: redact the match
                hit = (m.start(), m.end(), "unknown")
            if hit is None or hit[0] >= hit[1] or _overlaps(starts, ends, hit[0], hit[1]):
                continue
            index = bisect_right(starts, hit[0])
            starts.insert(index, hit[0])
            ends.insert(index, hit[1])
            kinds.insert(index, hit[2])
    return list(zip(starts, ends, kinds, strict=True))


def _overlaps(starts: list[int], ends: list[int], start: int, end: int) -> bool:
    index = bisect_right(starts, start)
    if index > 0 and ends[index - 1] > start:
        return True
    return index < len(starts) and starts[index] < end


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

    spans = _secret_spans(text)
    if spans:
        pieces: list[str] = []
        pos = 0
        for start, end, kind in spans:
            pieces.append(text[pos:start])
            pieces.append(marker(kind))
            counts[kind] = counts.get(kind, 0) + 1
            pos = end
        pieces.append(text[pos:])
        text = "".join(pieces)

    if not counts:
        return RedactionResult(text)
    return RedactionResult(text, tuple(Redaction(k, n) for k, n in counts.items()))


def redact_tags(tags: list[str]) -> tuple[list[str], list[str]]:
    """(tags, kinds found). A tag is a label, stored in clear and indexed as a search word: one
    holding a secret (or a ``<private>`` span) is replaced whole by ``redacted:<kind>``."""
    if not redact("\n".join(tags)).changed:  # one pass for the usual case: nothing to do
        return list(tags), []
    cleaned: list[str] = []
    kinds: list[str] = []
    for tag in tags:
        found = redact(tag)
        cleaned.append(f"redacted:{found.kinds[0]}" if found.changed else tag)
        kinds.extend(found.kinds)
    return cleaned, list(dict.fromkeys(kinds))


def preview(text: str, limit: int = 80) -> str:
    """A redacted, single-line excerpt of at most ``limit`` characters, for Temporal memos,
    search attributes and log lines; a cut is marked with an ellipsis."""
    return one_line(redact(text).text, max(limit, 0))
