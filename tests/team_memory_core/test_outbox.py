"""The outbox relay (team_memory_core/outbox.py) on the real PostgreSQL and Temporal: woken by
a save's notification, two relays never start one memory, a row waits while its start fails."""

from __future__ import annotations

import asyncio
import uuid

import anyio
import pytest
from pydantic import SecretStr

from team_memory_core.outbox import ALREADY_STARTED, STARTED, OutboxRelay
from team_memory_core.store.pool import tenant_tx
from team_memory_core.temporal import connect
from team_memory_core.temporal_keys import new_kek_text
from tests.conftest import Stack

pytestmark = pytest.mark.anyio


def relay(stack: Stack, **options: object) -> OutboxRelay:
    return OutboxRelay(pool=stack.pool, client=stack.client,  # type: ignore[arg-type]
                       task_queue=stack.settings.task_queue, **options)


async def waiting(stack: Stack) -> dict[uuid.UUID, tuple[int, str | None]]:
    """The tenant's outbox rows: attempts and last error by memory."""
    async with tenant_tx(stack.pool, stack.principal.tenant_id) as conn:
        rows = await conn.fetch("SELECT memory_id, attempts, last_error FROM ingest_outbox")
    return {row["memory_id"]: (row["attempts"], row["last_error"]) for row in rows}


async def test_a_save_wakes_the_relay_without_waiting_for_a_sweep(stack: Stack) -> None:
    asleep = relay(stack, dsn=stack.settings.database_url, sweep_s=3600)
    async with asleep.running():
        with anyio.fail_after(30):  # its first sweep (at start); the next is an hour away
            while not asleep.sweeps:
                await anyio.sleep(0.01)
        saved = await stack.service.save(stack.principal, "Feature flags live in LaunchDarkly")
        with anyio.fail_after(30):
            while await waiting(stack):
                await anyio.sleep(0.05)
    assert asleep.outcomes == {STARTED: 1}
    await stack.started(saved.workflow_id)


async def test_saves_during_a_burst_are_claimed_in_one_round(stack: Stack) -> None:
    """A round of claims starts ``gather_s`` after the last ended: the saves notified
    meanwhile are started together."""
    gathering = relay(stack, dsn=stack.settings.database_url, sweep_s=3600, gather_s=10)
    async with gathering.running():
        with anyio.fail_after(30):
            while not gathering.sweeps:
                await anyio.sleep(0.01)
        saved = [await stack.service.save(stack.principal, f"Service {n} logs to Loki")
                 for n in range(3)]
        with anyio.fail_after(60):
            while await waiting(stack):
                await anyio.sleep(0.05)
    assert gathering.outcomes == {STARTED: 3}
    assert gathering.sweeps == 2  # the first at start, then one for the three saves
    for one in saved:
        await stack.started(one.workflow_id)


async def test_two_relays_never_start_one_memory_twice(stack: Stack) -> None:
    ids = {(await stack.service.save(stack.principal, f"Queue {n} is drained by worker {n}")).id
           for n in range(150)}
    first, second = relay(stack), relay(stack)
    await asyncio.gather(first.relay_due(), second.relay_due())
    assert first.outcomes[STARTED] + second.outcomes[STARTED] == len(ids)
    assert first.outcomes[ALREADY_STARTED] + second.outcomes[ALREADY_STARTED] == 0
    assert first.outcomes[STARTED] and second.outcomes[STARTED], "no overlap: nothing tested"
    assert await waiting(stack) == {}


async def test_a_failed_start_keeps_the_row_until_a_relay_can_start_it(stack: Stack) -> None:
    """A worker started with another key-encryption key than the server's cannot seal the
    workflow's input: the save waits in the outbox, with the reason, and is started once a
    worker with the right key relays it."""
    first = await stack.service.save(stack.principal, "Payloads are sealed per workflow")
    await relay(stack).relay_due()  # the tenant's keyring now exists, under the right KEK
    saved = await stack.service.save(stack.principal, "Every worker holds the same KEK")
    misconfigured = await connect(stack.settings.model_copy(update={
        "temporal_kek": SecretStr(new_kek_text())}), stack.pool)
    wrong = OutboxRelay(pool=stack.pool, client=misconfigured,
                        task_queue=stack.settings.task_queue)
    await wrong.relay_due()
    attempts, error = (await waiting(stack))[saved.id]
    assert wrong.outcomes == {"failed": 1} and attempts == 1
    assert error is not None and error.startswith("WrongKek:")
    assert (await stack.service.status(stack.principal, saved.id)).status == "pending"
    right = relay(stack)
    with anyio.fail_after(30):
        while await waiting(stack):
            await anyio.sleep(await right.relay_due())
    assert right.outcomes == {STARTED: 1}
    for workflow_id in (first.workflow_id, saved.workflow_id):
        await stack.started(workflow_id)
