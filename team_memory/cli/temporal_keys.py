"""The keys that encrypt Temporal payloads (docs/security.md, "Temporal"): list, rotate, retire,
new-kek, rotate-kek. Every change is audited as the operator."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer

from team_memory.cli.common import (
    DataDir,
    TenantOption,
    fail,
    load_settings,
    on_database,
    operator_pool,
    small_pool,
)
from team_memory.embedded import Database
from team_memory_core.erasure import Actor
from team_memory_core.key_admin import KeyAdministration, KeyStillInUse, TenantKeyInfo
from team_memory_core.settings import Settings
from team_memory_core.store.audit import insert_audit
from team_memory_core.store.pool import tenant_tx
from team_memory_core.store.tenants import list_tenants
from team_memory_core.temporal_keys import (
    Keyring,
    KeyUnavailable,
    load_kek,
    new_kek_text,
    parse_kek,
)

temporal_key_app = typer.Typer(no_args_is_help=True, help="Manage the keys that encrypt "
                               "Temporal payloads.")
app = typer.Typer()
app.add_typer(temporal_key_app, name="temporal-key")


@contextlib.asynccontextmanager
async def _key_admin(settings: Settings, database: Database,
                     tenant: str) -> AsyncIterator[tuple[KeyAdministration, Actor]]:
    """The tenant's keyring administration, as the application role, audited by the caller."""
    async with operator_pool(database, tenant) as (pool, actor):
        yield KeyAdministration(Keyring(pool, load_kek(settings)), actor.tenant_id), actor


async def _audit_key_change(admin: KeyAdministration, actor: Actor, action: str,
                            detail: dict[str, Any]) -> None:
    async with tenant_tx(admin.keyring.pool, actor.tenant_id) as conn:
        await insert_audit(conn, tenant_id=actor.tenant_id, key_id=None,
                           actor=actor.name, action=action, outcome="ok", detail=detail)


@temporal_key_app.command("list")
def temporal_key_list(tenant: TenantOption, data_dir: DataDir = None) -> None:
    """The tenant's keyring, newest (in use) first."""
    settings = load_settings(data_dir)

    async def run(database: Database) -> list[TenantKeyInfo]:
        async with _key_admin(settings, database, tenant) as (admin, _):
            return await admin.list()

    for key in on_database(settings, run):
        typer.echo(f"{key.id}  created {key.created_at:%Y-%m-%d %H:%M:%S%z}  "
                   f"wraps {key.workflow_keys} workflow keys  KEK {key.kek_id}")


@temporal_key_app.command("rotate")
def temporal_key_rotate(tenant: TenantOption, data_dir: DataDir = None) -> None:
    """Add a new tenant key and re-wrap every workflow key under it."""
    settings = load_settings(data_dir)

    async def run(database: Database) -> tuple[UUID, int]:
        async with _key_admin(settings, database, tenant) as (admin, actor):
            new_id, rewrapped = await admin.rotate()
            await _audit_key_change(admin, actor, "temporal-key.rotate",
                                    {"key": str(new_id), "rewrapped": rewrapped})
            return new_id, rewrapped

    new_id, rewrapped = on_database(settings, run)
    typer.echo(f"new key {new_id}; {rewrapped} workflow keys re-wrapped. Retire older keys "
               "once the namespace retention has passed (docs/security.md).")


@temporal_key_app.command("retire")
def temporal_key_retire(key_id: str, tenant: TenantOption, data_dir: DataDir = None) -> None:
    """Delete an old tenant key (not the newest; not one still wrapping workflow keys)."""
    settings = load_settings(data_dir)

    async def run(database: Database) -> None:
        async with _key_admin(settings, database, tenant) as (admin, actor):
            await admin.retire(UUID(key_id))
            await _audit_key_change(admin, actor, "temporal-key.retire", {"key": key_id})

    try:
        on_database(settings, run)
    except (KeyStillInUse, KeyUnavailable) as error:
        fail(str(error))
    typer.echo(f"retired {key_id}")


@temporal_key_app.command("new-kek")
def temporal_key_new_kek() -> None:
    """Print a new random key-encryption key (for TEAM_MEMORY_TEMPORAL_KEK or rotate-kek)."""
    typer.echo(new_kek_text())


@temporal_key_app.command("rotate-kek")
def temporal_key_rotate_kek(
    new_kek_file: Annotated[Path, typer.Option(help="File holding the new KEK (base64; "
                                               "`temporal-key new-kek` makes one)")],
    data_dir: DataDir = None,
) -> None:
    """Re-wrap every tenant's keys under a new KEK. Stop the stack first, then install the new
    KEK (TEAM_MEMORY_TEMPORAL_KEK, or the data dir's temporal-kek file) before starting it."""
    settings = load_settings(data_dir)
    new = parse_kek(new_kek_file.read_text(), str(new_kek_file))

    async def run(database: Database) -> dict[str, int]:
        async with small_pool(database.admin_url) as pool, pool.acquire() as conn:
            tenants = [found.name for found in await list_tenants(conn)]
        done = {}
        for tenant in tenants:
            async with _key_admin(settings, database, tenant) as (admin, actor):
                done[tenant] = await admin.rewrap_under(new)
                await _audit_key_change(admin, actor, "temporal-key.rotate-kek",
                                        {"kek": new.id, "rewrapped": done[tenant]})
        return done

    for tenant, count in on_database(settings, run).items():
        typer.echo(f"{tenant}: {count} tenant keys re-wrapped under KEK {new.id}")
