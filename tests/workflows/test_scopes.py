"""The worker sees every member's memories: the nightly consolidation never folds a personal
memory into a shared one (or the other way), nor writes a personal memory into the manifesto."""

from __future__ import annotations

import pytest

from team_memory_core.models.memories import MemoryStatus
from tests.conftest import Stack
from tests.workflows.test_consolidate import consolidate, save
from tests.workflows.test_distillation import row

pytestmark = pytest.mark.anyio

SAME = "Deploys to the zebrafish cluster need two approvals"
RULE = "Never deploy on Fridays"


async def test_consolidation_keeps_personal_and_shared_apart(stack: Stack) -> None:
    async with stack.worker():  # the local policy: exact copies would be folded
        shared = await save(stack, SAME, importance=5)
        personal = await save(stack, SAME, importance=5, scope="personal")
        await save(stack, RULE, importance=4)
        report = await consolidate(stack)
        view = await stack.service.manifesto(stack.principal, None)
    assert shared != personal
    assert report.folded == 0
    for memory_id in (shared, personal):
        found = await row(stack, memory_id)
        assert (found["status"], found["duplicate_of"]) == (MemoryStatus.ACTIVE, None)
    assert (await row(stack, personal))["private_to"] == stack.principal.member_id
    texts = [rule.text for rule in view.rules]
    assert RULE in texts and SAME in texts  # the shared copy, once


async def test_a_personal_memory_never_reaches_the_manifesto(stack: Stack) -> None:
    async with stack.worker():
        await save(stack, "The zebrafish vault opens with the code on the team wiki",
                   importance=5, scope="personal")
        await save(stack, RULE, importance=4)
        report = await consolidate(stack)
    view = await stack.service.manifesto(stack.principal, None)
    assert report.manifesto == "regenerated"
    assert [rule.text for rule in view.rules] == [RULE]
