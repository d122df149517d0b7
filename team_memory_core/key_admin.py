"""What `team-memory temporal-key` does to a tenant's keyring: rotation, retirement, and
re-wrapping under a new KEK (as the application role, under Row-Level Security). The keys
themselves: temporal_keys.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from team_memory_core.store import temporal_keys as store
from team_memory_core.store.pool import tenant_tx
from team_memory_core.temporal_keys import (
    CURRENT_KEY_SECONDS,
    DataKey,
    Kek,
    Keyring,
    KeyUnavailable,
    WrongKek,
    seal,
    tenant_key_aad,
    unseal,
    workflow_key_aad,
)

REWRAP_BATCH = 500


class KeyStillInUse(RuntimeError):
    pass


@dataclass(frozen=True)
class TenantKeyInfo:
    id: UUID
    created_at: datetime
    kek_id: str
    workflow_keys: int


class KeyAdministration:
    """What `team-memory temporal-key` does to one tenant's keyring (as the application role,
    under Row-Level Security)."""

    def __init__(self, keyring: Keyring, tenant_id: UUID) -> None:
        self.keyring = keyring
        self.tenant_id = tenant_id

    async def list(self) -> list[TenantKeyInfo]:
        async with tenant_tx(self.keyring.pool, self.tenant_id) as conn:
            rows = await store.tenant_keys(conn)
        return [TenantKeyInfo(row.id, row.created_at, row.kek_id, row.workflow_keys)
                for row in rows]

    async def rotate(self) -> tuple[UUID, int]:
        """A new newest tenant key, and every workflow key re-wrapped under it (payloads stay
        as they are: only the wrapping changes). Returns the new key's id and how many were
        re-wrapped."""
        wrapping = await self._unwrapped_keyring()
        new = await self.keyring.add_tenant_key(self.tenant_id, only_if_none=False)
        wrapping[new.id] = new
        rewrapped = 0
        while True:
            async with tenant_tx(self.keyring.pool, self.tenant_id) as conn:
                rows = await store.workflow_keys_not_wrapped_by(conn, new.id, REWRAP_BATCH)
                for row in rows:
                    aad = workflow_key_aad(row.id, self.tenant_id, row.workflow_id)
                    material = unseal(wrapping[row.wrapped_by].aead, row.wrapped, aad)
                    await store.rewrap_workflow_key(conn, row.id, new.id,
                                                      seal(new.aead, material, aad))
            rewrapped += len(rows)
            if len(rows) < REWRAP_BATCH:
                return new.id, rewrapped

    async def retire(self, key_id: UUID, settle_seconds: float = CURRENT_KEY_SECONDS) -> None:
        """Delete an old tenant key. Refused for the newest key, while processes may still
        take the key it replaced for the newest (``settle_seconds`` after a rotation), and for
        one that still wraps workflow keys (rotate first)."""
        keys = await self.list()
        found = next((key for key in keys if key.id == key_id), None)
        if found is None:
            raise KeyUnavailable(f"no key {key_id} in this tenant's keyring")
        if found.id == keys[0].id:
            raise KeyStillInUse(f"{key_id} is the newest key: rotate first")
        age = (datetime.now(UTC) - keys[0].created_at).total_seconds()
        if age < settle_seconds:
            raise KeyStillInUse(f"the newest key is {age:.0f} s old: running processes take it "
                                f"up within {settle_seconds:.0f} s; retire after that")
        if found.workflow_keys:
            raise KeyStillInUse(f"{key_id} still wraps {found.workflow_keys} workflow keys: "
                                "`team-memory temporal-key rotate` re-wraps them")
        async with tenant_tx(self.keyring.pool, self.tenant_id) as conn:
            await store.delete_tenant_key(conn, key_id)

    async def rewrap_under(self, new: Kek) -> int:
        """Re-wrap the tenant's keys under a new KEK; keys already under it are skipped (so a
        run can be repeated). Returns how many were re-wrapped."""
        kek = self.keyring.kek
        async with tenant_tx(self.keyring.pool, self.tenant_id) as conn:
            await store.lock_tenant_keyring(conn, self.tenant_id)
            rows = [row for row in await store.tenant_keys(conn) if row.kek_id != new.id]
            for row in rows:
                if row.kek_id != kek.id:
                    raise WrongKek(f"tenant key {row.id} is wrapped by KEK {row.kek_id}, "
                                   f"not by the current one ({kek.id})")
                aad = tenant_key_aad(row.id, self.tenant_id)
                material = unseal(kek.aead, row.wrapped, aad)
                await store.rewrap_tenant_key(conn, row.id, new.id,
                                                seal(new.aead, material, aad))
        return len(rows)

    async def _unwrapped_keyring(self) -> dict[UUID, DataKey]:
        async with tenant_tx(self.keyring.pool, self.tenant_id) as conn:
            rows = await store.tenant_keys(conn)
        return {row.id: await self.keyring.unwrap_tenant_key(self.tenant_id, row)
                for row in rows}
