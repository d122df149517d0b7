"""`team-memory`: the command line, one Typer app per command group.

stack.py          up, migrate, worker, serve, status, config
tenants.py        tenant create; member add, list; key create, list, revoke; project set, show
memories.py       import, export, restore, purge, screen, audit, consolidate, review list
claude_code.py    install/uninstall claude-code, doctor, hook
temporal_keys.py  temporal-key list, rotate, retire, new-kek, rotate-kek
evaluation.py     eval locomo
reembed.py        reembed (start, with a progress bar), reembed status
bench.py          bench (runs `python -m bench` in a source checkout)
common.py         settings, the database, pools, the operator, the exit after Temporal

Imports of the MCP server, the worker, the embedder and the evaluation (0.2-1.2 s each),
and of httpx (status, doctor) and rich (progress bars) stay inside the commands that use them:
`--help`, `config`, `hook` and every other command would otherwise pay for them.
"""

from __future__ import annotations

import typer

from team_memory.cli import (
    bench,
    claude_code,
    evaluation,
    memories,
    reembed,
    stack,
    temporal_keys,
    tenants,
)

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Team Memory: long-term team memory for Claude over MCP.")
for group in (stack, memories, tenants, claude_code, temporal_keys, evaluation, reembed,
              bench):
    app.add_typer(group.app)
