"""Every entry point's input checks, once: what a memory, a query, a tag, a project or a time
must be, and the memory to save built from checked, redacted input (no I/O here). Errors name
the field and the rule, never the offending text (they reach the audit trail and the logs)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TypedDict, Unpack
from uuid import UUID

from pydantic import ValidationError, ValidationInfo, ValidatorFunctionWrapHandler, WrapValidator

from mcp_server.errors import Forbidden, InvalidInput
from team_memory_core.hook_protocol import ANCHOR_FILES_MAX, SESSION_ID_MAX_CHARS, repo_path
from team_memory_core.models.anchors import AnchorInput, FileState
from team_memory_core.models.memories import (
    ALL_STATUSES,
    CURRENT_STATUSES,
    PROJECT_PATTERN,
    TENANT_WIDE_PROJECT,
    Category,
    IngestInput,
    MemoryStatus,
    Provenance,
    Scope,
    content_hash,
    memory_id_for,
)
from team_memory_core.models.principal import Principal
from team_memory_core.rules.redaction import redact, redact_tags
from team_memory_core.settings import Settings

_TAG = re.compile(r"^[\w][\w.:/+-]*$")
_BLOB = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")  # a git blob hash: sha1 or sha256
_FLAG = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
_FLAGS_MAX = 20
_SOURCE_MAX_CHARS = 200
_REASON_MAX_CHARS = 500
# Memories are not older than Unix time, and a year-1 time with a positive offset does not
# even convert to UTC: such times are refused the same way by every entry point.
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(3000, 1, 1, tzinfo=UTC)
TIME_RULE = ("a time between 1970 and 2999 (ISO 8601, for example 2025-06-30T14:00:00Z; "
             "without a zone: UTC)")
# What shows nothing: format characters (zero-width space and joiners, word joiner, BOM, bidi
# marks: category Cf), controls, separators, and the letters and marks Unicode also lists as
# default-ignorable (Hangul fillers, Khmer vowels, Mongolian and other variation selectors),
# and the blank Braille pattern.
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Cc", "Zs", "Zl", "Zp"})
_INVISIBLE = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u2800\u3164\uffa0"
    + "".join(map(chr, [*range(0x180B, 0x1810), *range(0xFE00, 0xFE10),
                        *range(0xE0100, 0xE01F0)])))


class MemoryFields(TypedDict, total=False):
    """What a caller may say of a memory beside its text, at every entry point (checked by
    prepare_memory; a field left out takes its default)."""

    category: str  # default: general
    importance: int  # default: 1
    tags: list[str] | None
    project: str | None  # default: resolve_project's
    occurred_at: datetime | None  # default: now
    source: str | None
    scope: str | None  # default: the project's
    # Its author and origin when not the caller's member by a tool call (an import's).
    provenance: Provenance | None


def prepare_memory(
    settings: Settings, principal: Principal, content: str, **fields: Unpack[MemoryFields]
) -> IngestInput:
    """The memory to save, checked and redacted: raises InvalidInput or Forbidden."""
    require_writer(principal)
    wanted = check_scope(fields.get("scope"))
    given = fields.get("provenance") or Provenance(author_id=principal.member_id)
    project = fields.get("project")
    project = TENANT_WIDE_PROJECT if wanted is Scope.TEAM and project is None else project
    place = resolve_project(settings, principal, project)
    private_to = personal_member(principal, given.author_id) \
        if wanted is Scope.PERSONAL else None
    if wanted is Scope.TEAM and place != TENANT_WIDE_PROJECT:
        raise InvalidInput("scope 'team' is every project of the team: leave project out "
                           "(or give '*')")
    cleaned = redact(check_content(settings, content))
    if is_blank(cleaned.text):
        raise InvalidInput("content is empty once private spans are removed")
    checked_tags, tag_kinds = check_tags(settings, fields.get("tags") or [])
    checked_source, source_kinds = check_source(fields.get("source"))
    digest = content_hash(cleaned.text)
    return IngestInput(
        memory_id=memory_id_for(principal.tenant_id, place, digest, 0, private_to),
        tenant_id=principal.tenant_id,
        project=place,
        content=cleaned.text,
        category=check_category(fields.get("category", Category.GENERAL.value)),
        importance=check_importance(fields.get("importance", 1)),
        tags=checked_tags,
        content_hash=digest,
        occurred_at=check_time(fields.get("occurred_at"), "occurred_at") or datetime.now(UTC),
        source=checked_source,
        key_id=principal.key_id,
        redactions=list(dict.fromkeys([*cleaned.kinds, *tag_kinds, *source_kinds])),
        author_id=given.author_id,
        origin=given.origin,
        origin_session=None if given.session is None else redact(
            check_text(given.session, "session")).text[:SESSION_ID_MAX_CHARS],
        private_to=private_to,
    )


def check_scope(scope: str | None) -> Scope | None:
    """None: the project's (or, with project '*', the team's, as before scopes existed)."""
    if scope is None:
        return None
    try:
        return Scope(scope)
    except ValueError:
        raise InvalidInput("scope must be personal, project or team") from None


def personal_member(principal: Principal, author_id: UUID | None) -> UUID:
    """The member a personal memory belongs to: its author. A member saves personal memories
    of its own only (an operator's import keeps any member's)."""
    if author_id is None:
        raise InvalidInput("a personal memory belongs to a member: save it with a member's "
                           "API key (or import it with its author)")
    if principal.member_id is not None and author_id != principal.member_id:
        raise Forbidden("a member saves personal memories of its own only")
    return author_id


def resolve_project(settings: Settings, principal: Principal, project: str | None) -> str:
    """An explicit project, else the key's project, else the caller's workspace (the
    repository its session runs in), else the configured default."""
    check_project(project)
    if principal.project is not None:
        if project not in (None, principal.project):
            raise Forbidden(f"this key is limited to project {principal.project!r}")
        return principal.project
    if project is not None:
        return project
    check_project(principal.workspace_project)
    return principal.workspace_project or settings.project


def require_writer(principal: Principal) -> None:
    if principal.read_only:
        raise Forbidden("this API key is read-only")


def check_text(value: str, name: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string")
    if "\x00" in value:
        raise InvalidInput(f"{name} contains a NUL byte")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidInput(f"{name} is not valid Unicode text") from error
    return value


def is_blank(text: str) -> bool:
    """Nothing a reader would see: empty, or only spaces and invisible characters."""
    return all(char.isspace() or char in _INVISIBLE
               or unicodedata.category(char) in _INVISIBLE_CATEGORIES for char in text)


def check_content(settings: Settings, content: str) -> str:
    content = check_text(content, "content")
    if is_blank(content):
        raise InvalidInput("content is empty (nothing but spaces or invisible characters "
                           "such as zero-width spaces or a byte-order mark)")
    if len(content) > settings.max_content_chars:
        raise InvalidInput(
            f"content is {len(content)} characters; the limit is "
            f"{settings.max_content_chars}: save the decision, not the document"
        )
    return content


def check_query(settings: Settings, query: str) -> str:
    query = check_text(query, "query").strip()
    if is_blank(query):
        raise InvalidInput("query is empty")
    if len(query) > settings.max_query_chars:
        raise InvalidInput(f"query is longer than {settings.max_query_chars} characters")
    return query


def check_limit(settings: Settings, limit: int) -> int:
    if not 1 <= limit <= settings.search_limit_max:
        raise InvalidInput(f"limit must be between 1 and {settings.search_limit_max}")
    return limit


def check_tags(settings: Settings, tags: list[str]) -> tuple[list[str], list[str]]:
    """(tags, kinds of secrets found in them). A tag holding a secret becomes
    ``redacted:<kind>``; errors say which tag is wrong, never what it says."""
    if len(tags) > settings.max_tags:
        raise InvalidInput(f"at most {settings.max_tags} tags")
    redacted, kinds = redact_tags([check_text(tag, "tag") for tag in tags])
    cleaned = []
    for number, tag in enumerate(redacted, start=1):
        tag = tag.strip().lower()
        if not _TAG.match(tag) or len(tag) > settings.max_tag_chars:
            raise InvalidInput(
                f"tag {number} of {len(tags)} must be 1-{settings.max_tag_chars} "
                "characters of letters, digits and ._:/+-"
            )
        cleaned.append(tag)
    return sorted(set(cleaned)), kinds


def check_files(files: Sequence[str | AnchorInput] | None, project: str) -> list[AnchorInput]:
    """The files a memory of ``project`` cites: repository-relative paths (``src/a.py``),
    each once, at most ANCHOR_FILES_MAX; a hash given with one (an import) must be a git
    blob hash. A tenant-wide memory belongs to no repository: it cites none."""
    if not files:
        return []
    if project == TENANT_WIDE_PROJECT:
        raise InvalidInput("a tenant-wide memory (project '*') cannot cite files: files "
                           "belong to a repository")
    if isinstance(files, str) or len(files) > ANCHOR_FILES_MAX:
        raise InvalidInput(f"files must be a list of at most {ANCHOR_FILES_MAX} paths")
    checked: dict[str, AnchorInput] = {}
    for number, file in enumerate(files, start=1):
        given = file if isinstance(file, AnchorInput) else AnchorInput(path=file)
        try:
            path = repo_path(check_text(given.path, "files"))
        except ValueError as error:
            raise InvalidInput(f"file {number} of {len(files)}: {error}") from None
        if given.blob is not None and not _BLOB.match(given.blob):
            raise InvalidInput(f"file {number} of {len(files)}: blob must be a git blob hash")
        checked.setdefault(path, AnchorInput(path=path, blob=given.blob))
    return list(checked.values())


def file_states(reported: Sequence[tuple[str, str | None]]) -> list[FileState]:
    """The file states a hook reported that are well-formed (a repository path and a git
    blob hash or null); others are dropped: a state is an observation, not a request."""
    states = []
    for path, blob in reported:
        try:
            normal = repo_path(check_text(path, "path"))
        except ValueError:
            continue
        if blob is None or _BLOB.match(blob):
            states.append(FileState(path=normal, blob=blob))
    return states


def check_project(project: str | None) -> None:
    if project is not None and project != TENANT_WIDE_PROJECT \
            and not PROJECT_PATTERN.match(project):
        raise InvalidInput(
            "project must be 1-200 characters of letters, digits and ._:/@+- "
            "(or '*' for tenant-wide)"
        )


def check_reason(reason: str) -> str:
    """A reason is stored in history and the audit trail: redacted like any other text."""
    reason = check_text(reason, "reason").strip()
    if is_blank(reason) or len(reason) > _REASON_MAX_CHARS:
        raise InvalidInput(f"reason must be 1-{_REASON_MAX_CHARS} characters")
    return redact(reason).text


def check_injection_flags(flags: Sequence[str]) -> list[str]:
    """Flags a memory brings along (an import of an export): codes such as
    ``override-instructions``, at most ``_FLAGS_MAX``; they can only add to the rules' own."""
    if len(flags) > _FLAGS_MAX:
        raise InvalidInput(f"at most {_FLAGS_MAX} injection flags")
    if not all(isinstance(flag, str) and _FLAG.match(flag) for flag in flags):
        raise InvalidInput("an injection flag is a lowercase code such as "
                           "'override-instructions'")
    return list(dict.fromkeys(flags))


def check_category(category: str) -> Category:
    try:
        return Category(category)
    except ValueError:
        allowed = ", ".join(c.value for c in Category)
        raise InvalidInput(f"unknown category; use one of: {allowed}") from None


def check_importance(importance: int) -> int:
    if isinstance(importance, bool) or not isinstance(importance, int) \
            or not 1 <= importance <= 5:
        raise InvalidInput("importance must be an integer from 1 (trivia) to 5 (critical)")
    return importance


def check_time(moment: datetime | None, name: str) -> datetime | None:
    """Times without a zone are UTC; times outside 1970-2999 are refused."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        in_range = _EARLIEST <= moment.astimezone(UTC) < _LATEST
    except OverflowError:
        in_range = False
    if not in_range:
        raise InvalidInput(f"{name} must be {TIME_RULE}")
    return moment


def _time_argument(value: object, parse: ValidatorFunctionWrapHandler,
                   info: ValidationInfo) -> datetime | None:
    """A time argument as pydantic parses it (ISO 8601 text, a date, a Unix timestamp), with
    one message for whatever is wrong with it: unreadable, or outside 1970-2999 (pydantic's
    own for a year past 9999 reads "invalid date separator")."""
    name = info.field_name or "time"
    try:
        moment = parse(value)
    except ValidationError:
        raise InvalidInput(f"{name} must be {TIME_RULE}") from None
    return check_time(moment, name)


# Annotated[datetime | None, TIME_ARGUMENT]: a tool's or a request model's time field.
TIME_ARGUMENT = WrapValidator(_time_argument)


def check_period(since: datetime | None,
                 until: datetime | None) -> tuple[datetime | None, datetime | None]:
    since, until = check_time(since, "since"), check_time(until, "until")
    if since is not None and until is not None and since >= until:
        raise InvalidInput("since must be earlier than until")
    return since, until


def check_source(source: str | None) -> tuple[str | None, list[str]]:
    """(source, kinds of secrets redacted from it)."""
    if source is None:
        return None, []
    source = check_text(source, "source")
    if len(source) > _SOURCE_MAX_CHARS:
        raise InvalidInput(f"source must be at most {_SOURCE_MAX_CHARS} characters")
    cleaned = redact(source)
    return cleaned.text, cleaned.kinds


def statuses(include_history: bool) -> list[str]:
    """The statuses a read shows: current ones, or with history every one but forgotten."""
    chosen = ALL_STATUSES if include_history else CURRENT_STATUSES
    return [s.value for s in chosen if s is not MemoryStatus.FORGOTTEN]
