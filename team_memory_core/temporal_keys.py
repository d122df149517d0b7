"""The keys that encrypt Temporal payloads: one KEK, a keyring per tenant, a key per workflow.

    KEK (TEAM_MEMORY_TEMPORAL_KEK, or <data dir>/temporal-kek with mode 0600)
     └ wraps each tenant's data keys (table temporal_tenant_keys, newest first)
        ├ the newest encrypts the payloads of the tenant's other workflows (consolidation)
        └ each wraps keys of single workflows (table temporal_workflow_keys): one per
          ingestion (a memory) and one per capture session, the workflows that carry text.

Purge deletes a workflow's key, so its history is unreadable at once (crypto-shredding).
Unwrapped keys are cached in the process: encrypting a payload costs no database round trip
once its workflow's key is known. docs/security.md ("Temporal") covers rotation and backups.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import asyncpg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from team_memory_core.expiring_cache import ExpiringCache
from team_memory_core.settings import Settings
from team_memory_core.store import temporal_keys as store
from team_memory_core.store.migrate import schema_info
from team_memory_core.store.pool import tenant_tx
from team_memory_core.store.temporal_keys import NewWorkflowKey, TenantKey, WorkflowKey
from team_memory_core.store.tenants import tenant_id_named

KEY_BYTES = 32
NONCE_BYTES = 12
KEK_FILE = "temporal-kek"
# Workflow kinds whose payloads carry memory or hook text: one key per workflow, shreddable.
PER_WORKFLOW_KINDS = frozenset({"ingest", "capture"})
# How long a process trusts what it cached about which key is current (rotation, purge races).
CURRENT_KEY_SECONDS = 60.0
# How long an unwrapped workflow key stays in a process after its last use.
KEY_CACHE_SECONDS = 300.0
KEY_CACHE_SIZE = 20_000


class KeyUnavailable(LookupError):
    """No key to encrypt or decrypt with: purged, retired, or never issued by Team Memory."""


class WrongKek(RuntimeError):
    """A tenant key was wrapped by another key-encryption key than this process holds."""


@dataclass(frozen=True)
class Scope:
    """What a payload is bound to, derived from its workflow id.

    Per-workflow kinds are bound to the workflow id itself; any other workflow of a tenant to
    ``<kind>/<tenant>`` (a consolidation schedule's runs get ids the schedule never saw).
    """

    tenant: str
    name: str
    per_workflow: bool


def scope_of(workflow_id: str) -> Scope | None:
    kind, _, rest = workflow_id.partition("/")
    tenant = rest.split("/", 1)[0]
    if not kind or not tenant:
        return None
    if kind in PER_WORKFLOW_KINDS:
        return Scope(tenant, workflow_id, True)
    return Scope(tenant, f"{kind}/{tenant}", False)


def seal(aead: AESGCM, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + aead.encrypt(nonce, plaintext, aad)


def unseal(aead: AESGCM, sealed: bytes, aad: bytes) -> bytes:
    """Raises cryptography.exceptions.InvalidTag for anything not sealed with this key+aad."""
    return aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)


# --- the key-encryption key -----------------------------------------------------------------


@dataclass(frozen=True)
class Kek:
    material: bytes

    @property
    def id(self) -> str:
        """A fingerprint naming the KEK in the database (not enough to recover it)."""
        return hmac.new(self.material, b"team-memory kek id", hashlib.sha256).hexdigest()[:16]

    @property
    def aead(self) -> AESGCM:
        return AESGCM(self.material)


def new_kek_text() -> str:
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def parse_kek(text: str, origin: str) -> Kek:
    try:
        material = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{origin} is not base64") from None
    if len(material) != KEY_BYTES:
        raise ValueError(f"{origin} must hold {KEY_BYTES} bytes (base64), not {len(material)}")
    return Kek(material)


def load_kek(settings: Settings) -> Kek:
    """TEAM_MEMORY_TEMPORAL_KEK, else <data dir>/temporal-kek (created, mode 0600, if absent)."""
    if settings.temporal_kek is not None:
        return parse_kek(settings.temporal_kek.get_secret_value(), "TEAM_MEMORY_TEMPORAL_KEK")
    path = settings.data_dir / KEK_FILE
    if not path.exists():
        _create_secret_file(path, new_kek_text())
    return parse_kek(path.read_text(), str(path))


def _create_secret_file(path: Path, text: str) -> None:
    """Write-then-link, so concurrent first starts (worker and server) agree on one key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    try:
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)
    finally:
        draft.unlink()


# --- data keys ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataKey:
    """An unwrapped key: a tenant's (bound_to None) or one workflow's (bound_to its id)."""

    id: UUID
    tenant_id: UUID
    bound_to: str | None
    aead: AESGCM

    @property
    def per_workflow(self) -> bool:
        return self.bound_to is not None


def tenant_key_aad(key_id: UUID, tenant_id: UUID) -> bytes:
    return f"team-memory tenant key|{key_id}|{tenant_id}".encode()


def workflow_key_aad(key_id: UUID, tenant_id: UUID, workflow_id: str) -> bytes:
    return f"team-memory workflow key|{key_id}|{tenant_id}|{workflow_id}".encode()


class Keyring:
    """Finds, creates and caches the keys of one process (shared by its codec copies)."""

    def __init__(self, pool: asyncpg.Pool | None, kek: Kek) -> None:
        self._pool = pool
        self.kek = kek
        # When payloads started being encrypted (read from the database when first needed).
        self.encrypted_since: datetime | None = None
        self.client: Client | None = None
        self._tenant_ids: dict[str, UUID] = {}
        self._tenant_keys: dict[UUID, DataKey] = {}
        self._newest: ExpiringCache[UUID, DataKey] = ExpiringCache(CURRENT_KEY_SECONDS,
                                                                   KEY_CACHE_SIZE)
        self._by_id: ExpiringCache[UUID, DataKey] = ExpiringCache(KEY_CACHE_SECONDS,
                                                                  KEY_CACHE_SIZE)
        self._current: ExpiringCache[str, DataKey] = ExpiringCache(CURRENT_KEY_SECONDS,
                                                                   KEY_CACHE_SIZE)

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise KeyUnavailable("this process has no database connection to find keys with")
        return self._pool

    # --- encryption ---------------------------------------------------------------------

    async def for_encryption(self, scope: Scope) -> DataKey:
        """The key new payloads of ``scope`` are sealed with.

        A per-workflow key must exist already (created by whoever started the workflow, see
        :meth:`prepare`): it is created here only for a workflow started before encryption,
        so a purged workflow cannot get a new key for text it still holds.
        """
        tenant_id = await self.tenant_id(scope.tenant)
        if not scope.per_workflow:
            return await self.newest_tenant_key(tenant_id)
        cached = self._current.get(scope.name)
        if cached is not None:
            return cached
        async with tenant_tx(self.pool, tenant_id) as conn:
            row = await store.workflow_key_for(conn, scope.name)
        if row is not None:
            key = await self._unwrap_workflow_key(tenant_id, row)
        elif await self.started_before_encryption(scope.name):
            (key,) = await self._create_workflow_keys(tenant_id, [scope.name])  # an older history
        else:
            raise KeyUnavailable(f"no key for workflow {scope.name} (purged, or not started "
                                 "by Team Memory)")
        self._current.put(scope.name, key)
        return key

    async def prepare(self, tenant_id: UUID, workflow_id: str) -> None:
        """Make sure a workflow about to start (or be signalled) has its key, committed
        before Temporal sees the workflow, so a worker can always decode it."""
        await self.prepare_many(tenant_id, [workflow_id])

    async def prepare_many(self, tenant_id: UUID, workflow_ids: Sequence[str]) -> None:
        """:meth:`prepare` for workflows of one tenant, their keys in one transaction."""
        scopes = [scope for scope in map(scope_of, dict.fromkeys(workflow_ids))
                  if scope is not None and scope.per_workflow]
        if not scopes:
            return
        wanted = [scope.name for scope in scopes]
        for scope in scopes:
            self._tenant_ids.setdefault(scope.tenant, tenant_id)
        try:
            keys = await self._create_workflow_keys(tenant_id, wanted)
        except asyncpg.ForeignKeyViolationError:
            # The tenant key this process took for the newest was retired meanwhile.
            self._newest.drop(tenant_id)
            keys = await self._create_workflow_keys(tenant_id, wanted)
        for workflow_id, key in zip(wanted, keys, strict=True):
            self._current.put(workflow_id, key)

    async def _create_workflow_keys(self, tenant_id: UUID,
                                    workflow_ids: list[str]) -> list[DataKey]:
        """The workflows' keys, in their order: new ones, or those another process created
        first."""
        wrapping = await self.newest_tenant_key(tenant_id)
        fresh: dict[str, DataKey] = {}
        rows: list[NewWorkflowKey] = []
        for workflow_id in workflow_ids:
            material = secrets.token_bytes(KEY_BYTES)
            key_id = uuid.uuid4()
            rows.append(NewWorkflowKey(key_id, workflow_id, seal(
                wrapping.aead, material, workflow_key_aad(key_id, tenant_id, workflow_id))))
            fresh[workflow_id] = DataKey(key_id, tenant_id, workflow_id, AESGCM(material))
        async with tenant_tx(self.pool, tenant_id) as conn:
            existing = await store.insert_workflow_keys(conn, tenant_id, wrapping.id, rows)
        for row in existing:
            fresh[row.workflow_id] = await self._unwrap_workflow_key(tenant_id, row)
        for key in fresh.values():
            self._by_id.put(key.id, key)
        return [fresh[workflow_id] for workflow_id in workflow_ids]

    async def newest_tenant_key(self, tenant_id: UUID) -> DataKey:
        cached = self._newest.get(tenant_id)
        if cached is not None:
            return cached
        async with tenant_tx(self.pool, tenant_id) as conn:
            row = await store.newest_tenant_key(conn)
        key = (await self.unwrap_tenant_key(tenant_id, row) if row is not None
               else await self.add_tenant_key(tenant_id))
        self._newest.put(tenant_id, key)
        return key

    async def add_tenant_key(self, tenant_id: UUID, *, only_if_none: bool = True) -> DataKey:
        """A new newest key for the tenant (its first one, or a rotation)."""
        material = secrets.token_bytes(KEY_BYTES)
        key_id = uuid.uuid4()
        wrapped = seal(self.kek.aead, material, tenant_key_aad(key_id, tenant_id))
        async with tenant_tx(self.pool, tenant_id) as conn:
            await store.lock_tenant_keyring(conn, tenant_id)
            existing = await store.newest_tenant_key(conn) if only_if_none else None
            if existing is None:
                await store.insert_tenant_key(conn, key_id=key_id, tenant_id=tenant_id,
                                              kek_id=self.kek.id, wrapped=wrapped)
        if existing is not None:  # another process created the first key meanwhile
            return await self.unwrap_tenant_key(tenant_id, existing)
        key = DataKey(key_id, tenant_id, None, AESGCM(material))
        self._tenant_keys[key_id] = key
        self._newest.put(tenant_id, key)
        return key

    # --- decryption ---------------------------------------------------------------------

    async def for_decryption(self, tenant_id: UUID, key_id: UUID, per_workflow: bool, *,
                             still_stored: bool = False) -> DataKey:
        """The key named by a payload, looked up under the tenant's Row-Level Security.

        ``still_stored``: only if the database still holds it (a key this process used may
        have been shredded by a purge in another process since).
        """
        key = self._by_id.get(key_id) if per_workflow else self._tenant_keys.get(key_id)
        if key is not None and key.tenant_id != tenant_id:
            raise KeyUnavailable(f"key {key_id} is not a key of tenant {tenant_id}")
        if key is not None and not still_stored:
            return key
        async with tenant_tx(self.pool, tenant_id) as conn:
            stored: WorkflowKey | TenantKey | None = await (
                store.workflow_key(conn, key_id) if per_workflow
                else store.tenant_key(conn, key_id))
        if stored is None:
            raise KeyUnavailable(f"no key {key_id} for tenant {tenant_id} (purged, retired or "
                                 "never issued)")
        if key is not None:
            return key
        if isinstance(stored, WorkflowKey):
            return await self._unwrap_workflow_key(tenant_id, stored)
        return await self.unwrap_tenant_key(tenant_id, stored)

    async def tenant_id(self, name: str) -> UUID:
        found = self._tenant_ids.get(name)
        if found is None:
            async with self.pool.acquire() as conn:
                found = await tenant_id_named(conn, name)
            if found is None:
                raise KeyUnavailable(f"no tenant named {name!r}")
            self._tenant_ids[name] = found
        return found

    async def _unwrap_workflow_key(self, tenant_id: UUID, row: WorkflowKey) -> DataKey:
        key_id = row.id
        wrapping = await self.for_decryption(tenant_id, row.wrapped_by, per_workflow=False)
        material = unseal(wrapping.aead, row.wrapped,
                          workflow_key_aad(key_id, tenant_id, row.workflow_id))
        key = DataKey(key_id, tenant_id, row.workflow_id, AESGCM(material))
        self._by_id.put(key_id, key)
        # A workflow has one stored key at a time: the one it was just read with is the one
        # its next payloads are sealed with (a worker decodes a workflow before it encodes).
        self._current.put(row.workflow_id, key)
        return key

    async def unwrap_tenant_key(self, tenant_id: UUID, row: TenantKey) -> DataKey:
        key_id = row.id
        cached = self._tenant_keys.get(key_id)
        if cached is not None:
            return cached
        if row.kek_id != self.kek.id:
            raise WrongKek(f"tenant key {key_id} is wrapped by KEK {row.kek_id}, but this "
                           f"process holds KEK {self.kek.id}: every process needs the same "
                           "TEAM_MEMORY_TEMPORAL_KEK (or data dir temporal-kek file)")
        material = unseal(self.kek.aead, row.wrapped, tenant_key_aad(key_id, tenant_id))
        key = DataKey(key_id, tenant_id, None, AESGCM(material))
        self._tenant_keys[key_id] = key
        return key

    # --- purge --------------------------------------------------------------------------

    @staticmethod
    async def shred(conn: asyncpg.Connection, workflow_ids: list[str]) -> list[str]:
        """Delete the keys of these workflows, in the caller's tenant transaction."""
        return await store.delete_workflow_keys(conn, workflow_ids)

    def forget(self, workflow_ids: list[str]) -> None:
        """Drop shredded keys from this process's memory."""
        for workflow_id in workflow_ids:
            key = self._current.get(workflow_id)
            self._current.drop(workflow_id)
            if key is not None:
                self._by_id.drop(key.id)

    # --- payloads written before encryption -----------------------------------------------

    async def encryption_start(self) -> datetime:
        if self.encrypted_since is None:
            async with self.pool.acquire() as conn:
                value = await schema_info(conn, "temporal_plaintext_until")
            if value is None:
                raise KeyUnavailable("the database is not migrated: run `team-memory migrate`")
            self.encrypted_since = datetime.fromisoformat(value)
        return self.encrypted_since

    async def started_before_encryption(self, workflow_id: str) -> bool:
        """Whether the workflow's current run started before payloads were encrypted (its
        history may hold unencrypted payloads written by the previous version)."""
        if self.client is None:
            return False
        request = DescribeWorkflowExecutionRequest(
            namespace=self.client.namespace,
            execution=WorkflowExecution(workflow_id=workflow_id))
        try:
            described = await self.client.workflow_service.describe_workflow_execution(request)
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        started = described.workflow_execution_info.start_time.ToDatetime(UTC)
        return started < await self.encryption_start()
