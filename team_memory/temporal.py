"""The Temporal client every process connects with, and the search attributes operators use."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter

from team_memory.settings import Settings

# Registered on the embedded dev server by `up` (and in docker-compose) so the Web UI and
# `temporal workflow list --query` can filter ingestions by tenant, project, category, decision.
TENANT_KEY = SearchAttributeKey.for_keyword("TenantName")
PROJECT_KEY = SearchAttributeKey.for_keyword("Project")
CATEGORY_KEY = SearchAttributeKey.for_keyword("Category")
DECISION_KEY = SearchAttributeKey.for_keyword("Decision")
SEARCH_ATTRIBUTES = (TENANT_KEY, PROJECT_KEY, CATEGORY_KEY, DECISION_KEY)


async def connect(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_target,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        interceptors=[TracingInterceptor()],
    )
