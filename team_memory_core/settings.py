"""Every setting of Team Memory, read from the environment (prefix ``TEAM_MEMORY_``).

A handful of well-known variables keep their conventional names without the prefix
(``DATABASE_URL``, ``TEMPORAL_ADDRESS``, ``ANTHROPIC_API_KEY``, ...). The README's
configuration table is generated from the field descriptions here.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from team_memory_core.contract import Policy
from team_memory_core.hook_protocol import default_data_dir


def _env(name: str) -> AliasChoices:
    return AliasChoices(f"TEAM_MEMORY_{name}", name)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TEAM_MEMORY_", extra="ignore")

    # --- where things live -------------------------------------------------------------
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Data dir of the embedded stack (PostgreSQL cluster, Temporal SQLite file, "
        "local API key, Temporal key-encryption key, lock file); `up` keeps it mode 0700.",
    )
    database_url: str | None = Field(
        default=None,
        validation_alias=_env("DATABASE_URL"),
        description="PostgreSQL URL the application connects with (a role that is neither "
        "superuser nor table owner). Unset: embedded PostgreSQL in the data dir.",
    )
    database_admin_url: str | None = Field(
        default=None,
        validation_alias=_env("DATABASE_ADMIN_URL"),
        description="PostgreSQL URL of the schema owner, used only by `migrate` and admin "
        "commands. Unset: same as DATABASE_URL (embedded: the cluster superuser).",
    )
    app_db_password: SecretStr = Field(
        default=SecretStr("team-memory-app"),
        description="Password `migrate` gives the application role team_memory_app.",
    )
    db_pool_min: int = Field(default=2, ge=1, description="Minimum connections per process.")
    db_pool_max: int = Field(default=10, ge=1, description="Maximum connections per process.")
    save_concurrency: int = Field(
        default=2, ge=1,
        description="Save transactions one MCP server process runs at once; more saves wait "
        "their turn, so that searches keep their latency while many clients save (capped at "
        "half of TEAM_MEMORY_DB_POOL_MAX).",
    )

    # --- Temporal ----------------------------------------------------------------------
    temporal_address: str | None = Field(
        default=None,
        validation_alias=_env("TEMPORAL_ADDRESS"),
        description="host:port of the Temporal frontend. Unset: the embedded dev server.",
    )
    temporal_namespace: str = Field(
        default="default",
        validation_alias=_env("TEMPORAL_NAMESPACE"),
        description="Temporal namespace.",
    )
    task_queue: str = Field(default="team-memory", description="Temporal task queue.")
    temporal_port: int = Field(default=7233, description="Embedded dev server gRPC port.")
    temporal_ui_port: int = Field(default=8233, description="Embedded dev server Web UI port.")
    temporal_kek: SecretStr | None = Field(
        default=None,
        description="Key-encryption key of the keys that encrypt Temporal payloads (base64 of "
        "32 random bytes; `team-memory temporal-key new-kek` prints one). Every process needs "
        "the same. Unset: the file `temporal-kek` in the data dir, created (mode 0600) on "
        "first use. See docs/security.md.",
    )

    # --- MCP server --------------------------------------------------------------------
    mcp_host: str = Field(default="127.0.0.1", description="HTTP bind address of the MCP server.")
    mcp_port: int = Field(default=8765, description="HTTP port of the MCP server (path /mcp).")
    allowed_hosts: list[str] = Field(
        default_factory=lambda: ["127.0.0.1:*", "localhost:*", "[::1]:*"],
        description="Host headers accepted over HTTP (DNS-rebinding protection), JSON list.",
    )
    allowed_origins: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:*", "http://localhost:*"],
        description="Origin headers accepted over HTTP, JSON list.",
    )
    temporal_ui_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins of Temporal Web UIs allowed to call the codec endpoint "
        "/codec/decode (the embedded UI's, http://127.0.0.1 and http://localhost on "
        "TEAM_MEMORY_TEMPORAL_UI_PORT, always are), JSON list.",
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="API key the stdio transport and the CLI act with (HTTP clients send it as "
        "a bearer token instead).",
    )
    project: str = Field(
        default="default",
        description="Project used when a tool call names none and the key is not bound to one.",
    )

    # --- embeddings --------------------------------------------------------------------
    embedding_provider: Literal["local", "openai", "voyage"] = Field(
        default="local",
        description="`local` (bundled ONNX all-MiniLM-L6-v2, offline, two variants below), "
        "`openai` (any "
        "OpenAI-compatible /embeddings endpoint) or `voyage`. With the two below: the model "
        "of a new database; later the database's model wins (`team-memory reembed` changes "
        "it, docs/retrieval.md).",
    )
    embedding_model: str = Field(
        default="all-MiniLM-L6-v2-dynamic-int8",
        description="Embedding model name. Local: `all-MiniLM-L6-v2-dynamic-int8` (the "
        "bundled weights multiplied in int8: half the CPU per text of "
        "`sentence-transformers/all-MiniLM-L6-v2`, the model as bundled, at the same recall; "
        "docs/retrieval.md); API providers: the provider's model id. A database made "
        "before this default holds the bundled model's vectors and keeps it until "
        "`team-memory reembed --model all-MiniLM-L6-v2-dynamic-int8`.",
    )
    embedding_dim: int = Field(
        default=384, ge=8, le=2000,
        description="Embedding dimension (local: 384, or fewer to truncate; at most 2000, "
        "what pgvector indexes).",
    )
    embedding_api_url: str | None = Field(
        default=None, description="Base URL of the embeddings API (openai/voyage providers)."
    )
    embedding_api_key: SecretStr | None = Field(
        default=None, description="API key of the embeddings provider."
    )
    embed_batch_window_ms: float = Field(
        default=3.0,
        ge=0,
        description="How long the worker's micro-batching embedder waits to merge concurrent "
        "embed calls into one model call.",
    )
    embed_batch_max: int = Field(default=64, ge=1, description="Largest embedding batch.")
    background_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="Scheduling niceness of the ingestion side (the worker and the embedded "
        "Temporal server): on a machine they share with the MCP server, saves and searches "
        "get the CPU first while ingestion runs behind. 0 keeps the normal priority.",
    )

    # --- dedupe and LLM ----------------------------------------------------------------
    anthropic_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=_env("ANTHROPIC_API_KEY"),
        description="Enables the Claude Haiku dedupe/merge policy. Unset: local policy.",
    )
    anthropic_base_url: str | None = Field(
        default=None,
        validation_alias=_env("ANTHROPIC_BASE_URL"),
        description="Override of the Anthropic API base URL.",
    )
    llm_model: str = Field(default="claude-haiku-4-5", description="Claude model for decisions.")
    llm_timeout_s: float = Field(default=30.0, gt=0, description="Timeout of one LLM call.")
    dedupe_candidates: int = Field(
        default=5, ge=1, le=20, description="Similar live memories shown to the dedupe decision."
    )
    duplicate_similarity: float = Field(
        default=0.95,
        ge=0.5,
        le=1.0,
        description="Local policy: cosine similarity at or above which a memory with nearly "
        "the same words is a duplicate.",
    )

    # --- nightly consolidation and the manifesto ----------------------------------------
    consolidation_time: str = Field(
        default="03:00",
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
        description="Local time (HH:MM) of the nightly consolidation of each project.",
    )
    consolidation_timezone: str = Field(
        default="UTC",
        description="IANA time zone of `TEAM_MEMORY_CONSOLIDATION_TIME` (e.g. Europe/Paris).",
    )
    consolidation_similarity: float = Field(
        default=0.35,
        ge=0.0,
        le=1.0,
        description="Cosine similarity from which a memory is reviewed beside a neighbour "
        "(low on purpose: contradictions such as React vs Svelte score about 0.4).",
    )
    consolidation_neighbours: int = Field(
        default=4, ge=1, le=20, description="Nearest neighbours reviewed with each memory."
    )
    consolidation_page_size: int = Field(
        default=200, ge=1, description="Memories per page of a run (continue-as-new per page)."
    )
    consolidation_token_budget: int = Field(
        default=200_000,
        ge=0,
        description="LLM tokens (input + output) one consolidation run may spend; past it, "
        "the run continues with the local policy.",
    )
    archive_max_importance: int = Field(
        default=2, ge=0, le=5, description="Only memories up to this importance can decay."
    )
    archive_half_life_days: float = Field(
        default=90.0, gt=0, description="Half-life of a memory's weight in the decay rule."
    )
    archive_threshold: float = Field(
        default=0.25,
        ge=0,
        description="A memory is archived when importance x 0.5^(age / half-life) falls "
        "below this (defaults: importance 1 after 180 days, 2 after 270).",
    )
    manifesto_token_budget: int = Field(
        default=400, ge=20, description="Largest manifesto, in tokens."
    )
    manifesto_max_rules: int = Field(
        default=10, ge=1, le=50, description="Most rules in a manifesto."
    )

    # --- retrieval ---------------------------------------------------------------------
    recency_half_life_days: float = Field(
        default=90.0, gt=0, description="Half-life of the recency boost in search ranking."
    )
    recency_weight: float = Field(
        default=0.2, ge=0, le=1,
        description="Share of a memory's score that decays with age: the score is multiplied "
        "by (1 - w) + w * 0.5^(age / half-life).",
    )
    importance_boost: float = Field(
        default=0.1, ge=0,
        description="Score multiplier per importance step above 1 (importance 5 with 0.1: x1.4).",
    )
    search_limit_max: int = Field(default=50, ge=1, description="Largest `limit` a search takes.")
    search_candidates: int = Field(
        default=50, ge=5, le=500,
        description="Most candidates taken from each of the keyword and the vector ranking "
        "before fusion (a search takes 4 per result it returns, at least 20, up to this).",
    )
    dense_weight: float = Field(
        default=2.0, ge=0,
        description="Weight of cosine similarity against the BM25 score (scaled to 0-1 per "
        "query) in the fused relevance.",
    )
    neighbour_count: int = Field(
        default=2, ge=0, le=10,
        description="Memories on each side, in insertion order within a project, that lend a "
        "relevant memory's score to each other (0: off).",
    )
    neighbour_minutes: float = Field(
        default=30.0, ge=0,
        description="Neighbours count only when their occurred_at are at most this many "
        "minutes apart (one working session, one conversation).",
    )
    neighbour_weight: float = Field(
        default=0.5, ge=0,
        description="Share of the best neighbour's relevance added to a memory's own.",
    )
    exact_search_max_rows: int = Field(
        default=5000, ge=0,
        description="Scopes up to this many memories get an exact vector scan instead of the "
        "approximate HNSW index.",
    )
    keyword_candidate_rows: int = Field(
        default=1000, ge=1,
        description="Keyword candidates come from the query's rarest words, as many as contain "
        "at most this many memories together; commoner words still score but select nothing "
        "(bounds a search's full-text work on large scopes).",
    )
    working_set_tokens: int = Field(
        default=1500, ge=100,
        description="Token budget of the working set (memory://working_set, session-start "
        "context).",
    )

    # --- Claude Code hooks -------------------------------------------------------------
    session_context_tokens: int = Field(
        default=1500, ge=100, le=20000,
        description="Token budget of the context the Claude Code SessionStart hook injects "
        "(manifesto and working set of the project).",
    )
    capture_batch_events: int = Field(
        default=25, ge=1, le=200,
        description="Hook events distilled together by Claude Haiku (a batch is also "
        "distilled at the end of each turn and of the session).",
    )
    capture_idle_minutes: float = Field(
        default=30.0, gt=0,
        description="A capture session with no hook event for this long is distilled and "
        "closed (a later event reopens it).",
    )
    capture_session_tokens: int = Field(
        default=60000, ge=0,
        description="Most LLM tokens (input + output) the distillation of one Claude Code "
        "session may use; further events are counted, not distilled.",
    )
    capture_daily_tokens: int = Field(
        default=2000000, ge=0,
        description="Most LLM tokens a tenant's hook distillation may use per UTC day.",
    )

    # --- input limits ------------------------------------------------------------------
    max_content_chars: int = Field(default=8000, ge=100, description="Longest memory text.")
    max_tags: int = Field(default=16, ge=0, description="Most tags per memory.")
    max_tag_chars: int = Field(default=48, ge=1, description="Longest tag.")
    max_query_chars: int = Field(default=1000, ge=10, description="Longest search query.")
    rate_limit_per_minute: int = Field(
        default=120,
        ge=0,
        description="Requests (tool calls and resource reads) one API key may make per minute, "
        "in bursts of as many; per server process. 0 turns the limit off.",
    )

    # --- ops ---------------------------------------------------------------------------
    log_level: str = Field(default="INFO", description="Log level.")
    log_json: bool = Field(default=False, description="Structured JSON logs.")

    @field_validator("temporal_kek", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("consolidation_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @property
    def embedded_postgres(self) -> bool:
        return self.database_url is None

    @property
    def embedded_temporal(self) -> bool:
        return self.temporal_address is None

    @property
    def temporal_target(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.temporal_port}"

    @property
    def dedupe_policy(self) -> Policy:
        return Policy.HAIKU if self.anthropic_api_key else Policy.LOCAL

    @property
    def mcp_url(self) -> str:
        return f"http://{self.mcp_host}:{self.mcp_port}/mcp"

    @property
    def codec_url(self) -> str:
        """The codec endpoint the Temporal Web UI and CLI decode payloads through."""
        host = "127.0.0.1" if self.mcp_host in ("0.0.0.0", "::", "") else self.mcp_host
        return f"http://{host}:{self.mcp_port}/codec"

    @property
    def codec_origins(self) -> list[str]:
        port = self.temporal_ui_port
        return [f"http://127.0.0.1:{port}", f"http://localhost:{port}",
                *self.temporal_ui_origins]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def env_name(field: str) -> str:
    """The environment variable a setting is read from (the conventional name if it has one)."""
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[-1])
    return f"TEAM_MEMORY_{field.upper()}"


def settings_table() -> str:
    """The README's configuration table, generated from the field descriptions above."""
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            default = "per-user data dir" if name == "data_dir" else "see meaning"
        elif field.default is None:
            default = "unset"
        elif isinstance(field.default, SecretStr):
            default = "(secret)"
        else:
            default = f"`{field.default}`"
        rows.append(f"| `{env_name(name)}` | {default} | {field.description} |")
    return "\n".join(rows)


_SECRET_PARAMS = {"password", "sslpassword", "passfile"}


def masked_url(url: str) -> str:
    """A connection URL fit to print: its password (in the authority or as a query
    parameter) replaced by ****, the rest kept so the operator sees where it points."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':', 1)[0]}:****@{host}"
    query = urlencode([(k, "****" if k.lower() in _SECRET_PARAMS else v)
                       for k, v in parse_qsl(parts.query, keep_blank_values=True)], safe="/*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def shown_settings(settings: Settings) -> dict[str, object]:
    """Every setting by its environment variable, secrets masked (`team-memory config`)."""
    shown: dict[str, object] = {}
    for name, value in settings.model_dump().items():
        if isinstance(value, SecretStr):
            value = "****"
        elif isinstance(value, str) and "://" in value:
            value = masked_url(value)
        shown[env_name(name)] = value
    return shown
