"""Fixtures of the LLM task tests: the real anthropic client against the scripted fake."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from team_memory_core.llm.client import Distiller
from tests.support.anthropic_server import FakeAnthropic
from tests.support.llm import MODEL


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
async def distiller(fake: FakeAnthropic) -> AsyncIterator[Distiller]:
    async with Distiller(
        api_key="sk-test", model=MODEL, base_url=fake.base_url, timeout_s=5.0
    ) as client:
        yield client
