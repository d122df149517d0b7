"""Tenants, their members and API keys: tenant create, member add/list, key create, key
list, key revoke."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

import asyncpg
import typer

from team_memory.cli.common import (
    DataDir,
    TenantOption,
    as_operator,
    fail,
    load_settings,
    on_database,
    small_pool,
)
from team_memory.embedded import Database
from team_memory_core.erasure import Actor
from team_memory_core.rules.sharing import Review
from team_memory_core.store.audit import insert_audit
from team_memory_core.store.pool import tenant_tx
from team_memory_core.store.sharing import reviews_of, set_review
from team_memory_core.store.tenants import ApiKey, Member, list_keys
from team_memory_core.tenants import (
    MemberExists,
    UnknownMember,
    UnknownTenant,
    add_member,
    create_key,
    ensure_tenant,
    list_members,
    parse_duration,
    revoke_key,
    tenant_id_by_name,
)

tenant_app = typer.Typer(no_args_is_help=True, help="Manage tenants.")
member_app = typer.Typer(no_args_is_help=True, help="Manage the members of a tenant.")
key_app = typer.Typer(no_args_is_help=True, help="Manage API keys.")
app = typer.Typer()
app.add_typer(tenant_app, name="tenant")
app.add_typer(member_app, name="member")
app.add_typer(key_app, name="key")
project_app = typer.Typer(no_args_is_help=True, help="Project settings: review of what is "
                          "shared.")
app.add_typer(project_app, name="project")


@tenant_app.command("create")
def tenant_create(name: str, data_dir: DataDir = None) -> None:
    """Create a tenant (a team: the isolation boundary)."""
    async def run(database: Database) -> UUID:
        async with small_pool(database.admin_url) as pool:
            return await ensure_tenant(pool, name)

    tenant_id = on_database(load_settings(data_dir), run)
    typer.echo(f"tenant {name} ({tenant_id})")


@member_app.command("add")
def member_add(
    name: Annotated[str, typer.Argument(help="The member's name (a person, or a service)")],
    tenant: TenantOption,
    data_dir: DataDir = None,
) -> None:
    """Add a member to a tenant; give it keys with `key create --member NAME`."""
    async def run(database: Database) -> UUID:
        async with small_pool(database.admin_url) as pool:
            return await add_member(pool, tenant, name)

    try:
        member_id = on_database(load_settings(data_dir), run)
    except (MemberExists, UnknownTenant, ValueError) as error:
        fail(str(error))
    typer.echo(f"member {name.strip()} ({member_id})")


@member_app.command("list")
def member_list(tenant: TenantOption, data_dir: DataDir = None) -> None:
    """List a tenant's members and how many active keys each has."""
    async def run(database: Database) -> list[Member]:
        async with small_pool(database.admin_url) as pool:
            return await list_members(pool, tenant)

    try:
        members = on_database(load_settings(data_dir), run)
    except UnknownTenant as error:
        fail(str(error))
    for member in members:
        typer.echo(f"{member.id}  {member.name}  {member.keys} active key"
                   f"{'' if member.keys == 1 else 's'}")


@key_app.command("create")
def key_create(
    tenant: TenantOption,
    member: Annotated[str | None, typer.Option(
        help="The member the key belongs to (see `member add`); default: the member named "
             "after the key (--name), created if the tenant has none")] = None,
    project: Annotated[str | None, typer.Option(help="Limit the key to one project")] = None,
    read_only: Annotated[bool, typer.Option("--read-only", help="Search and read only")] = False,
    name: Annotated[str, typer.Option(help="A label for the key")] = "default",
    expires_in: Annotated[str | None, typer.Option(
        help="Refuse the key after this long: 12h, 90d, 6w")] = None,
    expires_at: Annotated[str | None, typer.Option(
        help="Refuse the key from this time on (ISO 8601; UTC without a zone)")] = None,
    data_dir: DataDir = None,
) -> None:
    """Create an API key; the secret is printed once and only its hash is stored."""
    expiry = _key_expiry(expires_in, expires_at)

    async def run(database: Database) -> None:
        async with small_pool(database.admin_url) as pool:
            issued = await create_key(pool, tenant, name=name, project=project,
                                      read_only=read_only, expires_at=expiry, member=member)
        until = f"\nexpires {expiry:%Y-%m-%d %H:%M %Z}" if expiry else ""
        owner = member.strip() if member is not None else name.strip()
        typer.echo(f"key id {issued.key_id}\nsecret {issued.secret}\nmember {owner}{until}\n"
                   "(shown once: store it now)")

    try:
        on_database(load_settings(data_dir), run)
    except (UnknownMember, UnknownTenant, ValueError) as error:
        fail(str(error))


@key_app.command("list")
def key_list(tenant: TenantOption, data_dir: DataDir = None) -> None:
    """List a tenant's keys (no secrets)."""
    async def run(database: Database) -> list[ApiKey]:
        async with small_pool(database.admin_url) as pool:
            tenant_id = await tenant_id_by_name(pool, tenant)
            async with tenant_tx(pool, tenant_id) as conn:
                return await list_keys(conn, tenant_id)

    for key in on_database(load_settings(data_dir), run):
        scope = key.project or "all projects"
        mode = "read-only" if key.read_only else "read-write"
        typer.echo(f"{key.id}  {key.prefix}…  {key.name}  member {key.member}  {scope}  {mode}"
                   f"  {_key_state(key)}")


def _key_expiry(expires_in: str | None, expires_at: str | None) -> datetime | None:
    if expires_in is not None and expires_at is not None:
        raise typer.BadParameter("give --expires-in or --expires-at, not both")
    now = datetime.now(UTC)
    if expires_in is not None:
        try:
            return now + parse_duration(expires_in)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--expires-in") from None
    if expires_at is None:
        return None
    try:
        expiry = datetime.fromisoformat(expires_at)
    except ValueError:
        raise typer.BadParameter("is not an ISO 8601 time", param_hint="--expires-at") from None
    expiry = expiry if expiry.tzinfo else expiry.replace(tzinfo=UTC)
    if expiry <= now:
        raise typer.BadParameter("is in the past", param_hint="--expires-at")
    return expiry


def _key_state(key: ApiKey) -> str:
    if key.revoked_at:
        return f"revoked {key.revoked_at:%Y-%m-%d}"
    if key.expired and key.expires_at:
        return f"expired {key.expires_at:%Y-%m-%d %H:%M}"
    if key.expires_at:
        return f"active, expires {key.expires_at:%Y-%m-%d %H:%M}"
    return "active"


@key_app.command("revoke")
def key_revoke(key_id: str, data_dir: DataDir = None) -> None:
    """Revoke a key at once."""
    async def run(database: Database) -> bool:
        async with small_pool(database.admin_url) as pool:
            return await revoke_key(pool, UUID(key_id))

    if not on_database(load_settings(data_dir), run):
        fail(f"no active key {key_id}")
    typer.echo(f"revoked {key_id}")


@project_app.command("set")
def project_set(
    project: Annotated[str, typer.Argument(help="Project (repository); '*' is the team scope")],
    tenant: TenantOption,
    review: Annotated[Review, typer.Option(
        help="open: promotions are shared at once; reviewed: promotions and captured "
             "observations wait for another member's approval")],
    data_dir: DataDir = None,
) -> None:
    """Choose whether what members share in a project waits for review."""
    async def run(pool: asyncpg.Pool, actor: Actor) -> Review | None:
        async with tenant_tx(pool, actor.tenant_id) as conn:
            before = await set_review(conn, actor.tenant_id, project, review)
            await insert_audit(conn, tenant_id=actor.tenant_id, key_id=None, actor=actor.name,
                               action="project.review", target=project, outcome="ok",
                               detail={"review": review.value,
                                       "before": None if before is None else before.value})
        return before

    before = as_operator(load_settings(data_dir), tenant, run)
    typer.echo(f"project {project}: review {review.value}"
               + (f" (was {before.value})" if before and before != review else ""))


@project_app.command("show")
def project_show(
    project: Annotated[str, typer.Argument(help="Project (repository)")],
    tenant: TenantOption,
    data_dir: DataDir = None,
) -> None:
    """Print a project's review setting."""
    async def run(pool: asyncpg.Pool, actor: Actor) -> Review:
        async with tenant_tx(pool, actor.tenant_id) as conn:
            return (await reviews_of(conn, [project]))[0]

    typer.echo(f"project {project}: review {as_operator(load_settings(data_dir), tenant, run)}")
