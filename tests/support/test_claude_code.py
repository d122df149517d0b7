"""How the pinned Claude Code CLI gets installed, and what happens without npm."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support.claude_code import CLI_DIR, PACKAGE, REQUIRED_ENV, install_cli, launcher


def test_without_npm_the_tests_skip_unless_required(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm, no node
    monkeypatch.delenv(REQUIRED_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="npm and node are needed"):
        install_cli()
    monkeypatch.setenv(REQUIRED_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=f"{REQUIRED_ENV}=1 requires"):
        install_cli()


@pytest.mark.timeout(900)  # may install the CLI first (npm ci)
def test_a_skipped_postinstall_is_run_again(tmp_path: Path) -> None:
    """npm may skip install scripts (allowScripts, --ignore-scripts): bin/claude.exe is then
    the package's placeholder, and the launcher places the native binary itself."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    installed = (CLI_DIR / "node_modules" / PACKAGE).parent
    native_package = installed / "claude-code-linux-x64"
    if not native_package.is_dir():
        install_cli()
    if not native_package.is_dir():
        pytest.skip("this test knows the linux-x64 layout only")
    scope = tmp_path / "node_modules" / "@anthropic-ai"
    package = scope / "claude-code"
    shutil.copytree(installed / "claude-code", package,
                    ignore=shutil.ignore_patterns("claude.exe"))
    (scope / "claude-code-linux-x64").symlink_to(native_package)
    stub = package / "bin" / "claude.exe"
    stub.write_text("#!/bin/sh\necho 'placeholder: the postinstall did not run'\n")
    stub.chmod(0o755)

    cli = launcher(str(shutil.which("node")), package)

    assert cli.launcher == "native binary (postinstall run by hand)"
    assert cli.command == (str(stub),)
    assert stub.stat().st_size > 1_000_000
    assert os.access(stub, os.X_OK)
