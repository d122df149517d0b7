"""`team-memory eval locomo`: retrieval quality on LoCoMo-format data."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from team_memory.cli.common import fail, load_settings
from team_memory.embedded import database

if TYPE_CHECKING:
    from team_memory.model_comparison import ModelResult, ProgressFor

eval_app = typer.Typer(no_args_is_help=True, help="Measure retrieval quality.")
app = typer.Typer()
app.add_typer(eval_app, name="eval")


@eval_app.command("locomo")
def eval_locomo(
    path: Annotated[Path, typer.Argument(help="LoCoMo-format JSON file")],
    models: Annotated[list[str] | None, typer.Option(
        "--model", help="A local embedding model to evaluate (repeatable: the models side by "
        "side, each on a throwaway stack of its own). Default: the configured model")] = None,
    configured: Annotated[bool, typer.Option(
        "--configured", help="Use the configured PostgreSQL and Temporal (a new tenant) "
        "instead of a throwaway stack")] = False,
    concurrency: Annotated[int, typer.Option(help="Saves in flight during import")] = 8,
) -> None:
    """Evidence recall@5/10/20 (turn and session level) and search latency of search_memory
    on LoCoMo-format data, beside BM25-only and vector-only rankings and the fusion weights
    cross-validated over the conversations; with each model's CPU per embedded text."""
    from team_memory import locomo, model_comparison

    try:
        conversations = locomo.load(path)
    except locomo.BadDataset as error:
        fail(f"team-memory eval: {error}")
    settings = load_settings()
    if configured and models:
        fail("team-memory eval: --model evaluates on throwaway stacks; the configured "
             "database keeps the configured model")
    try:
        candidates = ([model_comparison.configured_candidate(settings, name) for name in models]
                      if models else [model_comparison.configured_candidate(settings)])
    except ValueError as error:
        fail(f"team-memory eval: {error}")

    def compare(stack_for: model_comparison.StackFor) -> list[ModelResult]:
        with _progress() as progress_for:
            return asyncio.run(model_comparison.compare(
                settings, conversations, candidates, concurrency=concurrency,
                progress_for=progress_for, stack_for=stack_for, done=show))

    if configured:
        with database(settings) as configured_database:
            results = compare(lambda s: model_comparison.existing_stack(
                locomo.Stack(s, configured_database)))
    else:
        results = compare(locomo.throwaway_stack)
    typer.echo("\n## Side by side\n\n" + model_comparison.summary(results))


def show(result: ModelResult) -> None:
    typer.echo(f"\n## {result.name}\n\n{result.report.table()}")


@contextlib.contextmanager
def _progress() -> Iterator[ProgressFor]:
    """An import progress bar per model."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress

    with Progress("{task.description}", BarColumn(), MofNCompleteColumn()) as bar:
        def progress_for(model: str, total: int) -> Callable[[str, int, int], None]:
            task = bar.add_task(f"importing ({model})", total=total)
            offset = 0

            def show(phase: str, done: int, conversation_total: int) -> None:
                nonlocal offset
                if phase == "committed":
                    bar.update(task, completed=offset + done)
                    if done == conversation_total:
                        offset += conversation_total

            return show

        yield progress_for
