"""The Temporal contract: what running workflows, schedules, the front door and operators refer
to by name. Workflow and activity type names, ids and search attributes are stored in
histories, schedules and operators' scripts: they never change.

The front door starts workflows by these names (it never imports workflows/ or activities/);
the worker registers its workflows and activities under them.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from uuid import UUID

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

# --- workflow and activity type names --------------------------------------------------------

INGEST_WORKFLOW = "IngestMemory"
CONSOLIDATE_WORKFLOW = "Consolidate"
CAPTURE_WORKFLOW = "SessionObservations"
CAPTURE_SIGNAL = "event"

EMBED_ACTIVITY = "embed_memory"
DECIDE_ACTIVITY = "decide_memory"
COMMIT_ACTIVITY = "commit_memory"
INGEST_ACTIVITY = "ingest_memory"  # embed, decide and commit in one step (rules decide alone)
ENSURE_SCHEDULE_ACTIVITY = "ensure_project_schedule"
START_CONSOLIDATION_ACTIVITY = "start_consolidation"
FIND_CLUSTERS_ACTIVITY = "find_clusters"
REVIEW_CLUSTER_ACTIVITY = "review_cluster"
ARCHIVE_ACTIVITY = "archive_stale"
MANIFESTO_ACTIVITY = "refresh_manifesto"
REVIEW_CHANGED_ACTIVITY = "review_changed_memories"
# workflow.patched() id of the Consolidate step that reviews changed memories: runs recorded
# before it existed replay without it.
REVIEW_CHANGED_PATCH = "review-changed-memories"
FINISH_CONSOLIDATION_ACTIVITY = "finish_consolidation"
DISTILL_ACTIVITY = "distill_session_events"

# Re-embedding every memory with another model (one run at a time per database).
REEMBED_WORKFLOW = "ReembedMemories"
REEMBED_PROGRESS_QUERY = "progress"
BEGIN_REEMBED_ACTIVITY = "begin_reembed"
REEMBED_PASS_ACTIVITY = "start_reembed_pass"
REEMBED_PAGE_ACTIVITY = "reembed_page"
SWITCH_EMBEDDING_ACTIVITY = "switch_embedding_model"
RECLAIM_PAGE_ACTIVITY = "reclaim_retired_vectors"
FINISH_REEMBED_ACTIVITY = "finish_reembed"
ABANDON_REEMBED_ACTIVITY = "abandon_reembed"


class Policy(StrEnum):
    """Who decides what becomes of a memory: Claude Haiku, or the local rules without a key."""

    HAIKU = "haiku"
    LOCAL = "local"


# --- search attributes (registered on the namespace by `up` and compose's temporal-init) -----

TENANT_KEY = SearchAttributeKey.for_keyword("TenantName")
PROJECT_KEY = SearchAttributeKey.for_keyword("Project")
CATEGORY_KEY = SearchAttributeKey.for_keyword("Category")
DECISION_KEY = SearchAttributeKey.for_keyword("Decision")
SEARCH_ATTRIBUTES = (TENANT_KEY, PROJECT_KEY, CATEGORY_KEY, DECISION_KEY)


def scope_attributes(tenant: str, project: str) -> TypedSearchAttributes:
    """A workflow about one project of one tenant (consolidation, a capture session)."""
    return TypedSearchAttributes([SearchAttributePair(TENANT_KEY, tenant),
                                  SearchAttributePair(PROJECT_KEY, project)])


def ingest_attributes(tenant: str, project: str, category: str) -> TypedSearchAttributes:
    """An ingestion; its Decision is upserted once it is decided."""
    return TypedSearchAttributes([*scope_attributes(tenant, project).search_attributes,
                                  SearchAttributePair(CATEGORY_KEY, category)])


# --- ids -----------------------------------------------------------------------------------


def ingest_workflow_id(tenant_name: str, project: str, digest: str, generation: int,
                       private_to: UUID | None = None) -> str:
    """Generation 0 keeps the original form (running workflows and purges of old memories);
    a later generation can never collide with it (a digest segment is 24 hex digits). A
    personal memory's names its member: another member's (or a shared) memory of the same
    text is another workflow."""
    base = f"ingest/{tenant_name}/{project}/{digest[:24]}"
    if private_to is not None:
        base = f"{base}/personal/{private_to}"
    return f"{base}/g{generation}" if generation else base


def personal_member_of(workflow_id: str) -> UUID | None:
    """The member whose personal memory an ingestion workflow ingests (None: shared)."""
    if not workflow_id.startswith("ingest/"):
        return None
    _, found, rest = workflow_id.partition("/personal/")
    try:
        return UUID(rest.split("/", 1)[0]) if found else None
    except ValueError:
        return None


def consolidation_schedule_id(tenant: str, project: str) -> str:
    return f"consolidate/{tenant}/{project}"


# The re-embed belongs to no tenant: its payloads hold a model's name, counts and memory ids
# (no text), and are not encrypted (see payload_codec). One per database, named by the task
# queue of the deployment's workers.
UNSCOPED_KINDS = frozenset({"reembed"})


def reembed_workflow_id(task_queue: str) -> str:
    return f"reembed/{task_queue}"


def is_unscoped(workflow_id: str | None) -> bool:
    """A workflow of no tenant (its id's first segment is an unscoped kind)."""
    return workflow_id is not None and workflow_id.partition("/")[0] in UNSCOPED_KINDS


# The key of a principal without one (stdio with a key, the CLI) in capture tables and ids.
NO_KEY = UUID(int=0)


def capture_workflow_id(tenant_name: str, key_id: UUID | None, session_id: str) -> str:
    """One workflow per key and session: a session id is chosen by the client, so another
    key sending the same one must not join this key's workflow (its project, its budget)."""
    digest = hashlib.sha256(f"{key_id or NO_KEY}/{session_id}".encode()).hexdigest()[:24]
    return f"capture/{tenant_name}/{digest}"


def is_capture_workflow(workflow_id: str) -> bool:
    return workflow_id.startswith("capture/")


# Visibility queries operators and the worker use.
INGESTIONS = f"WorkflowType='{INGEST_WORKFLOW}'"
RUNNING_INGESTIONS = f"{INGESTIONS} AND ExecutionStatus='Running'"
