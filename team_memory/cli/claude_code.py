"""Claude Code: install claude-code, uninstall claude-code, doctor, hook."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from team_memory import claude_code_files as claude_code
from team_memory.cli.common import DataDir, load_settings
from team_memory.hook.__main__ import main as run_hook
from team_memory_core.hook_protocol import LOCAL_KEY_FILE, PROJECT_HEADER
from team_memory_core.settings import Settings

install_app = typer.Typer(no_args_is_help=True, help="Connect a client to Team Memory.")
uninstall_app = typer.Typer(no_args_is_help=True, help="Undo `install` exactly.")
app = typer.Typer()
app.add_typer(install_app, name="install")
app.add_typer(uninstall_app, name="uninstall")

ScopeOption = Annotated[str, typer.Option(help="user (~/.claude) or project (this repository)")]
HomeOption = Annotated[Path | None, typer.Option(help="Home directory holding .claude "
                                                 "(default: yours)")]
ProjectOption = Annotated[Path | None, typer.Option("--project-dir", help="Project root for "
                                                    "--scope project (default: .)")]


def _claude_paths(scope: str, home: Path | None, project_dir: Path | None) -> claude_code.Paths:
    root = (project_dir or Path.cwd()).resolve()
    if scope == "user":
        return claude_code.Paths.for_scope("user", home or Path.home(), root)
    if scope == "project":
        return claude_code.Paths.for_scope("project", home or Path.home(), root)
    raise typer.BadParameter("scope must be user or project")


def _local_key(settings: Settings) -> str | None:
    if settings.api_key is not None:
        return settings.api_key.get_secret_value()
    try:
        return (settings.data_dir / LOCAL_KEY_FILE).read_text().strip() or None
    except OSError:
        return None


@install_app.command("claude-code")
def install_claude_code(
    scope: ScopeOption = "user",
    prompts: Annotated[bool, typer.Option("--prompts", help="Also capture the prompts you "
                                          "type (UserPromptSubmit)")] = False,
    self_capture: Annotated[bool, typer.Option(
        "--self-capture", help="Without an ANTHROPIC_API_KEY on the server: at the end of a "
        "turn that changed the repository, ask this session's Claude to save its decisions "
        "(one extra turn)")] = False,
    home: HomeOption = None,
    project_dir: ProjectOption = None,
    data_dir: DataDir = None,
) -> None:
    """Register the MCP server with Claude Code and install the capture and context hooks."""
    settings = load_settings(data_dir)
    paths = _claude_paths(scope, home, project_dir)
    server = f"http://{settings.mcp_host}:{settings.mcp_port}"
    events = [*claude_code.INSTALLED_EVENTS] + (["UserPromptSubmit"] if prompts else [])
    entry = claude_code.mcp_entry(paths.scope, settings.mcp_url, _local_key(settings),
                                  claude_code.headers_helper_command(paths.scope,
                                                                     settings.data_dir))
    try:
        report = claude_code.install(
            paths, settings.data_dir,
            commands=claude_code.hook_commands(events, lambda e: claude_code.hook_command(
                e, server, settings.data_dir, self_capture=self_capture)),
            entry=entry, add_command=claude_code.mcp_add_command(paths.scope, entry),
        )
    except claude_code.InstallError as error:
        typer.secho(f"team-memory install: {error} (nothing was written)", fg="red", err=True)
        raise typer.Exit(1) from None
    for path in report.written:
        typer.echo(f"wrote {path}")
    for note in report.notes:
        typer.echo(note)
    typer.echo(f"hooks: {', '.join(events)} -> {server}/hooks/...")
    typer.echo(f"each session sends its repository's project ({PROJECT_HEADER}, from "
               "the headersHelper); check with: team-memory doctor")
    if scope == "project":
        typer.echo("the committed MCP entry holds no key: the headersHelper reads "
                   "$TEAM_MEMORY_API_KEY or the local key file")
    if self_capture:
        typer.echo("self-capture: at the end of a turn that changed the repository, Claude is "
                   "asked to save its decisions (when the server has no ANTHROPIC_API_KEY); "
                   "allow mcp__team-memory__save_memory once so it can")
    elif settings.anthropic_api_key is None:
        typer.echo("capture is off until ANTHROPIC_API_KEY is set for the server and worker "
                   "(or reinstall with --self-capture): only explicit memories are kept")
    typer.echo(f"undo with: team-memory uninstall claude-code --scope {scope}")


@uninstall_app.command("claude-code")
def uninstall_claude_code(
    scope: ScopeOption = "user",
    home: HomeOption = None,
    project_dir: ProjectOption = None,
    data_dir: DataDir = None,
) -> None:
    """Remove exactly what `install claude-code` added (original files restored byte for byte
    when nothing else changed them)."""
    settings = load_settings(data_dir)
    report = claude_code.uninstall(_claude_paths(scope, home, project_dir), settings.data_dir)
    for path in report.restored:
        typer.echo(f"restored {path}")
    for path in report.removed:
        typer.echo(f"removed {path}")
    for note in report.notes:
        typer.echo(note)


@app.command()
def doctor(home: HomeOption = None) -> None:
    """Check the Claude Code setup from this directory: config files and hooks, the server,
    the key, the project this directory resolves to, the capture mode and the hook spool."""
    from team_memory.doctor import Doctor, render

    cwd = Path.cwd()
    findings = Doctor(cwd, home or Path.home()).run()
    typer.echo(render(findings, cwd))
    raise typer.Exit(1 if any(f.status == "fail" for f in findings) else 0)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def hook(ctx: typer.Context, event: str) -> None:
    """Run one Claude Code hook (reads the hook's JSON on stdin). Installed hooks call
    `python -m team_memory.hook` directly, which skips this CLI's imports."""
    raise typer.Exit(run_hook([event, *ctx.args]))
