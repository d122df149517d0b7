"""The Temporal payload codec: every payload and memo leaves a process encrypted.

A payload is sealed with AES-256-GCM under the key of its workflow (team_memory_core.temporal_keys)
and carries in its metadata which key (id, tenant) and which scope it belongs to; the
authenticated data binds the ciphertext to all three, so it cannot be moved to another
tenant's or another workflow's history. The SDK hands the codec the workflow id through its
serialization context (a child workflow's own id for its input, the running workflow's for
activities).

Decoding refuses, as a non-retryable error that fails the workflow task before any activity
runs: an unencrypted payload in a workflow started after the cut-over (forged input from
someone with access to the Temporal frontend), a payload of another workflow or tenant, and
ciphertext that does not authenticate. Unencrypted payloads of workflows started before the
cut-over (running when the encrypting version was deployed) are let through, so they finish.

The one workflow of no tenant, the re-embed (contract.UNSCOPED_KINDS), is not encrypted:
its payloads are a model's name, counts and memory ids, never text. Whoever can start workflows
on the frontend can start it (as they can terminate any workflow): it can only re-embed with a
model the worker's settings can reach.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Self
from uuid import UUID

from cryptography.exceptions import InvalidTag
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
)
from temporalio.exceptions import ApplicationError

from team_memory_core.contract import is_capture_workflow, is_unscoped, personal_member_of
from team_memory_core.temporal_keys import (
    DataKey,
    Keyring,
    KeyUnavailable,
    Scope,
    scope_of,
    seal,
    unseal,
)

ENCODING = b"binary/team-memory-encrypted"
_KEY = "team-memory-key"
_KEY_KIND = "team-memory-key-kind"
_TENANT = "team-memory-tenant"
_SCOPE = "team-memory-scope"
_WORKFLOW_KEY = b"workflow"
_TENANT_KEY = b"tenant"
REFUSED = "PayloadRefused"


def refused(reason: str) -> ApplicationError:
    # Non-retryable: the workflow fails instead of retrying a task that can never succeed.
    return ApplicationError(f"payload refused: {reason}", type=REFUSED, non_retryable=True)


# Envelopes made or read recently: each workflow's payloads share one (its key and scope), and
# its metadata and authenticated data are built once instead of for every payload.
ENVELOPE_CACHE_SIZE = 4096


@dataclass(frozen=True)
class Envelope:
    """What an encrypted payload's metadata says about it (readable by anyone)."""

    key_id: UUID
    tenant_id: UUID
    scope: str
    per_workflow: bool

    @classmethod
    def read(cls, payload: Payload) -> Envelope:
        meta = payload.metadata
        try:
            return _read_envelope(meta[_KEY_KIND], meta[_KEY], meta[_TENANT], meta[_SCOPE])
        except (KeyError, ValueError, UnicodeDecodeError):
            raise refused("malformed encryption metadata") from None

    @functools.cached_property
    def aad(self) -> bytes:
        kind = "workflow" if self.per_workflow else "tenant"
        return f"team-memory payload|{kind}|{self.key_id}|{self.tenant_id}|{self.scope}".encode()

    @functools.cached_property
    def metadata(self) -> Mapping[str, bytes]:
        return MappingProxyType({
            "encoding": ENCODING,
            _KEY: str(self.key_id).encode(),
            _KEY_KIND: _WORKFLOW_KEY if self.per_workflow else _TENANT_KEY,
            _TENANT: str(self.tenant_id).encode(),
            _SCOPE: self.scope.encode(),
        })


@functools.lru_cache(maxsize=ENVELOPE_CACHE_SIZE)
def _read_envelope(kind: bytes, key_id: bytes, tenant_id: bytes, scope: bytes) -> Envelope:
    if kind not in (_WORKFLOW_KEY, _TENANT_KEY):
        raise ValueError(kind)
    return Envelope(UUID(key_id.decode()), UUID(tenant_id.decode()), scope.decode(),
                    kind == _WORKFLOW_KEY)


@functools.lru_cache(maxsize=ENVELOPE_CACHE_SIZE)
def _envelope(key_id: UUID, tenant_id: UUID, scope: str, per_workflow: bool) -> Envelope:
    return Envelope(key_id, tenant_id, scope, per_workflow)


def is_encrypted(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == ENCODING


def encrypt(key: DataKey, scope: Scope, payload: Payload) -> Payload:
    envelope = _envelope(key.id, key.tenant_id, scope.name, key.per_workflow)
    return Payload(metadata=envelope.metadata,
                   data=seal(key.aead, payload.SerializeToString(), envelope.aad))


async def decrypt(keyring: Keyring, payload: Payload, envelope: Envelope, *,
                  still_stored: bool = False) -> Payload:
    """Raises KeyUnavailable (no such key here) or a refusal (not what it claims to be)."""
    key = await keyring.for_decryption(envelope.tenant_id, envelope.key_id, envelope.per_workflow,
                                       still_stored=still_stored)
    if key.bound_to is not None and key.bound_to != envelope.scope:
        raise refused(f"key {envelope.key_id} belongs to another workflow")
    try:
        return Payload.FromString(unseal(key.aead, payload.data, envelope.aad))
    except InvalidTag:
        raise refused("ciphertext does not authenticate") from None


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    def __init__(self, keyring: Keyring, workflow_id: str | None = None) -> None:
        self.keyring = keyring
        self._workflow_id = workflow_id

    def with_context(self, context: SerializationContext) -> Self:
        workflow_id = getattr(context, "workflow_id", None)
        return type(self)(self.keyring, workflow_id if isinstance(workflow_id, str) else None)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        if not payloads or is_unscoped(self._workflow_id):
            return list(payloads)
        scope = scope_of(self._workflow_id) if self._workflow_id else None
        if scope is None:
            raise KeyUnavailable(f"cannot encrypt for workflow id {self._workflow_id!r}: "
                                 "Team Memory's workflow ids name their tenant")
        key = await self.keyring.for_encryption(scope)
        return [encrypt(key, scope, payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [await self._decode(payload) for payload in payloads]

    async def _decode(self, payload: Payload) -> Payload:
        if not is_encrypted(payload):
            await self._admit_plaintext()
            return payload
        envelope = Envelope.read(payload)
        if self._workflow_id is not None:
            expected = scope_of(self._workflow_id)
            if expected is None or expected.name != envelope.scope:
                raise refused(f"a payload of {envelope.scope} does not belong to "
                              f"{self._workflow_id}")
        return await decrypt(self.keyring, payload, envelope)

    async def _admit_plaintext(self) -> None:
        if self._workflow_id is None:
            return  # read for display only (no workflow acts on it)
        if is_unscoped(self._workflow_id):
            return  # a workflow of no tenant, whose payloads hold no memory text
        if not await self.keyring.started_before_encryption(self._workflow_id):
            raise refused(f"unencrypted input for {self._workflow_id}, started after "
                          "payload encryption was deployed")


async def decode_for_tenant(
    keyring: Keyring, tenant_id: UUID, payloads: Sequence[Payload],
    member_id: UUID | None = None, own_captures: Collection[str] = (),
) -> tuple[list[Payload], int]:
    """The codec server's decode for one tenant (and member): its payloads decrypted, every
    other payload (another tenant's, another member's personal memory's or Claude Code
    session's, purged, unencrypted) returned as it came. ``own_captures``: the capture
    workflows of the member's sessions. Also returns how many were decrypted."""
    decoded: list[Payload] = []
    for payload in payloads:
        opened = await _open_if_theirs(keyring, tenant_id, payload, member_id, own_captures)
        decoded.append(opened or payload)
    return decoded, sum(1 for before, after in zip(payloads, decoded, strict=True)
                        if after is not before)


def capture_scopes(payloads: Sequence[Payload]) -> set[str]:
    """The capture sessions (workflow ids) whose sealed payloads are among these."""
    scopes = set()
    for payload in payloads:
        if is_encrypted(payload):
            try:
                scope = Envelope.read(payload).scope
            except ApplicationError:
                continue
            if is_capture_workflow(scope):
                scopes.add(scope)
    return scopes


async def _open_if_theirs(keyring: Keyring, tenant_id: UUID, payload: Payload,
                          member_id: UUID | None, own_captures: Collection[str]
                          ) -> Payload | None:
    if not is_encrypted(payload):
        return None
    try:
        envelope = Envelope.read(payload)
        if envelope.tenant_id != tenant_id or not _members(envelope, member_id, own_captures):
            return None
        # Checked against the database every time: a key this process holds may have been
        # shredded by a purge in another process.
        return await decrypt(keyring, payload, envelope, still_stored=True)
    except (ApplicationError, KeyUnavailable):
        return None


def _members(envelope: Envelope, member_id: UUID | None, own_captures: Collection[str]) -> bool:
    """A personal memory's ingestion and a Claude Code session's hook text are their
    member's alone (a principal of no member, such as the CLI, is the tenant's operator)."""
    if member_id is None or not envelope.per_workflow:
        return True
    if is_capture_workflow(envelope.scope):
        return envelope.scope in own_captures
    owner = personal_member_of(envelope.scope)
    return owner is None or owner == member_id


_CONTEXTUAL_PARTS = ("payload_converter", "payload_codec", "failure_converter", "external_storage")


class _ContextCheapDataConverter(DataConverter):
    """The SDK asks for a converter per workflow and per activity task (the serialization
    context names the workflow, whose key the codec uses). ``DataConverter.with_context``
    clones through ``dataclasses.replace``, which builds a new pydantic payload converter only
    to throw it away (~40 µs, several times per ingestion); this clone keeps the parts."""

    def with_context(self, context: SerializationContext) -> Self:
        changed = {}
        for name in _CONTEXTUAL_PARTS:
            part = getattr(self, name)
            if isinstance(part, WithSerializationContext):
                contextual = part.with_context(context)
                if contextual is not part:
                    changed[name] = contextual
        if not changed:
            return self
        cloned = copy.copy(self)
        for name, part in changed.items():
            object.__setattr__(cloned, name, part)
        return cloned


def encrypting_data_converter(keyring: Keyring) -> DataConverter:
    """The pydantic JSON converter, encrypted, with failure messages and stack traces moved
    into (encrypted) payloads: an error message can quote the text it failed on."""
    from temporalio.contrib.pydantic import PydanticPayloadConverter

    return _ContextCheapDataConverter(
        payload_converter_class=PydanticPayloadConverter,
        payload_codec=EncryptionCodec(keyring),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
