"""`team-memory eval locomo`: retrieval quality on LoCoMo-format data."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from team_memory.cli.common import fail, load_settings
from team_memory.embedded import database

if TYPE_CHECKING:
    from team_memory.locomo import Report

eval_app = typer.Typer(no_args_is_help=True, help="Measure retrieval quality.")
app = typer.Typer()
app.add_typer(eval_app, name="eval")


@eval_app.command("locomo")
def eval_locomo(
    path: Annotated[Path, typer.Argument(help="LoCoMo-format JSON file")],
    configured: Annotated[bool, typer.Option(
        "--configured", help="Use the configured PostgreSQL and Temporal (a new tenant) "
        "instead of a throwaway stack")] = False,
    concurrency: Annotated[int, typer.Option(help="Saves in flight during import")] = 8,
) -> None:
    """Evidence recall@5/10/20 and search latency of search_memory on LoCoMo-format data,
    beside BM25-only and vector-only rankings."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress

    from team_memory import locomo

    try:
        conversations = locomo.load(path)
    except locomo.BadDataset as error:
        fail(f"team-memory eval: {error}")
    settings = load_settings()

    async def run(stack: locomo.Stack) -> Report:
        with Progress("{task.description}", BarColumn(), MofNCompleteColumn()) as bar:
            task = bar.add_task("importing", total=sum(len(c.turns) for c in conversations))
            offset = 0

            def show(phase: str, done: int, total: int) -> None:
                nonlocal offset
                if phase == "committed":
                    bar.update(task, completed=offset + done)
                    if done == total:
                        offset += total

            return await locomo.evaluate(stack, conversations, concurrency=concurrency,
                                         progress=show)

    async def isolated() -> Report:
        async with locomo.throwaway_stack(settings) as stack:
            return await run(stack)

    if configured:
        with database(settings) as configured_database:
            report = asyncio.run(run(locomo.Stack(settings, configured_database)))
    else:
        report = asyncio.run(isolated())
    typer.echo(report.table())
