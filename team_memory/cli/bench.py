"""`team-memory bench`: the benchmark, which lives beside the product in a source checkout
(bench/ is not part of the wheel), so it runs as `python -m bench` in that checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

import team_memory
from team_memory.cli.common import fail

app = typer.Typer()


def checkout() -> Path | None:
    """The source checkout this program runs from, if it is one (it holds bench/)."""
    root = Path(team_memory.__file__).resolve().parent.parent
    return root if (root / "bench" / "__main__.py").is_file() else None


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(ctx: typer.Context) -> None:
    """Benchmark a fresh stack on a temp data dir (options: `python -m bench --help`).

    Runs from a source checkout (the bench package is not part of the wheel).
    """
    root = checkout()
    if root is None:
        fail("team-memory bench needs a source checkout of Team Memory (the benchmark is not "
             "part of the installed package): run `./team-memory bench` in a clone")
    done = subprocess.run([sys.executable, "-m", "bench", *ctx.args], cwd=root, check=False)
    raise typer.Exit(done.returncode)
