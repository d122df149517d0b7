"""`team-memory reembed`: move every stored vector to another embedding model (the
ReembedMemories workflow; docs/retrieval.md, "Changing the embedding model")."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Annotated, cast, get_args

import typer

from team_memory.cli.common import (
    exit_after_temporal_client,
    fail,
    load_settings,
    on_database,
    small_pool,
)
from team_memory.embedded import Database
from team_memory_core.settings import Settings

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowHandle

    from team_memory_core.embedder import EmbeddingModel
    from team_memory_core.models.reembed import ReembedProgress
    from team_memory_core.reembed import ReembedStatus

# The embedder (numpy, httpx, onnxruntime) and Temporal are imported by the commands that use
# them: every other command would pay for them (cli/__init__.py).

app = typer.Typer(name="reembed", invoke_without_command=True, no_args_is_help=False,
                  help="Re-embed every memory with another model, then switch (one "
                       "transaction); `reembed status` shows where it stands, `reembed "
                       "cancel` stops it.")

POLL_S = 0.5


@app.callback()
def reembed(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option(
        help="The new model: for the local provider all-MiniLM-L6-v2-dynamic-int8 or "
             "sentence-transformers/all-MiniLM-L6-v2 (the bundled one), for openai/voyage "
             "the provider's model id")] = None,
    provider: Annotated[str | None, typer.Option(
        help="local, openai or voyage (default: TEAM_MEMORY_EMBEDDING_PROVIDER)")] = None,
    dim: Annotated[int | None, typer.Option(
        help="Dimensions (local: 384, or fewer to truncate; API models: required)")] = None,
    page_size: Annotated[int, typer.Option(min=1, max=5000,
                                           help="Memories embedded per page")] = 200,
    detach: Annotated[bool, typer.Option("--detach", help="Start it and return (watch with "
                                         "`team-memory reembed status`)")] = False,
) -> None:
    """Start the re-embed and show its progress until it has switched and cleaned up. Search
    keeps serving from the current model meanwhile; needs the worker running."""
    if ctx.invoked_subcommand is not None:
        return
    if model is None:
        fail("team-memory reembed: --model is required (or `team-memory reembed status`)")
    settings = load_settings()
    target = _target(settings, model, provider, dim)
    _probe(settings, target)

    async def run(database: Database) -> bool:
        from temporalio.exceptions import WorkflowAlreadyStartedError

        from team_memory_core.reembed import start_reembed
        from team_memory_core.temporal import connect

        async with small_pool(database.app_url) as pool:
            client = await connect(settings, pool)
            try:
                handle = await start_reembed(client, settings, target, page_size=page_size)
            except WorkflowAlreadyStartedError:
                fail("a re-embed is running: `team-memory reembed status`")
            typer.echo(f"started {handle.id}: re-embedding with {target}")
            if not detach and not await _watch(client, settings):
                typer.secho(f"team-memory reembed: {await _failure(handle)}", fg="red",
                            err=True)
                return False
        return True

    exit_after_temporal_client(0 if on_database(settings, run) else 1)


def _target(settings: Settings, name: str, provider: str | None,
            dim: int | None) -> EmbeddingModel:
    from team_memory_core.embedder import (
        BUNDLED_DIM,
        EmbeddingModel,
        Provider,
        UnknownModel,
        local_model,
    )

    chosen = provider or settings.embedding_provider
    if chosen not in get_args(Provider):
        fail(f"team-memory reembed: unknown provider {chosen!r} (local, openai or voyage)")
    if dim is None and chosen != "local":
        fail("team-memory reembed: --dim is required for an API model")
    try:
        if chosen == "local":  # by its one name: the database compares names as written
            name = local_model(name).name
        target = EmbeddingModel(cast(Provider, chosen), name, dim or BUNDLED_DIM)
        target.check()
    except UnknownModel as error:
        fail(f"team-memory reembed: {error}")
    return target


def _probe(settings: Settings, target: EmbeddingModel) -> None:
    """Load the model here and embed one text: a model that cannot load, or an API that
    answers another dimension, is refused before anything starts."""
    from team_memory_core.embedder import create_embedder_for

    try:
        vector = create_embedder_for(target, settings).embed(["probe"])[0]
    except Exception as error:  # any failure of loading or calling the model, shown as is
        fail(f"team-memory reembed: {target} does not load here: {error}")
    if vector.shape[0] != target.dim:
        fail(f"team-memory reembed: {target} returned {vector.shape[0]} dimensions")


async def _failure(handle: WorkflowHandle[object, ReembedProgress]) -> str:
    """Why the run failed: its failure's innermost message (ReembedRefused and the like)."""
    from temporalio.client import WorkflowFailureError

    try:
        await handle.result()
    except WorkflowFailureError as error:
        cause: BaseException = error
        while cause.__cause__ is not None:
            cause = cause.__cause__
        return str(cause)
    return "it ended without completing"


async def _watch(client: Client, settings: Settings) -> bool:
    """A progress bar until the run ends (Ctrl-C leaves it running); whether it completed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from team_memory_core.reembed import reembed_status

    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns) as bar:
        task = bar.add_task("starting", total=None)
        while True:
            status = await reembed_status(client, settings)
            if status is not None and status.progress is not None:
                shown = status.progress
                bar.update(task, description=shown.phase.value, completed=shown.embedded,
                           total=max(shown.total, 1))
            if status is None or not status.running:
                break
            await asyncio.sleep(POLL_S)
    typer.echo(_summary(status))
    return status is not None and status.status == "COMPLETED"


@app.command("status")
def status_() -> None:
    """Where the re-embed stands (running or the last one), and the models the database has
    held."""
    settings = load_settings()

    async def run(database: Database) -> str:
        from team_memory_core.reembed import reembed_status
        from team_memory_core.store import embeddings
        from team_memory_core.temporal import connect

        async with small_pool(database.app_url) as pool:
            async with pool.acquire() as conn:
                records = await embeddings.model_records(conn)
            client = await connect(settings, pool)
            status = await reembed_status(client, settings)
        lines = [f"generation {r.generation}: {r.provider}:{r.name} ({r.dim} dimensions) "
                 f"{r.state}" + (f", switched {r.switched_at:%Y-%m-%d %H:%M:%S%z}"
                                 if r.switched_at else "") for r in records]
        return "\n".join([_summary(status), *lines])

    typer.echo(on_database(settings, run))
    exit_after_temporal_client()


@app.command("cancel")
def cancel() -> None:
    """Cancel the running re-embed: before its switch the new column is dropped and nothing
    changed for search; after it, the new model stays."""
    settings = load_settings()

    async def run(database: Database) -> str:
        from temporalio.client import WorkflowFailureError

        from team_memory_core.contract import reembed_workflow_id
        from team_memory_core.reembed import reembed_status
        from team_memory_core.temporal import connect

        async with small_pool(database.app_url) as pool:
            client = await connect(settings, pool)
            status = await reembed_status(client, settings)
            if status is None or not status.running:
                return "no re-embed is running"
            handle = client.get_workflow_handle(reembed_workflow_id(settings.task_queue))
            await handle.cancel()
            with contextlib.suppress(WorkflowFailureError):  # cancelled, as asked
                await handle.result()
            return _summary(await reembed_status(client, settings))

    typer.echo(on_database(settings, run))
    exit_after_temporal_client()


def _summary(status: ReembedStatus | None) -> str:
    if status is None:
        return "no re-embed has run"
    shown = status.progress
    if shown is None:
        return f"re-embed {status.status.lower()}"
    return (f"re-embed {status.status.lower()}: {shown.phase.value}, {shown.embedded}/"
            f"{shown.total} memories with {shown.model.provider}:{shown.model.name} "
            f"({shown.model.dim} dimensions), {shown.passes} pass(es), {shown.pages} pages, "
            f"{shown.switch_attempts} switch attempt(s)")
