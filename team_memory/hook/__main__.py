"""``python -m team_memory.hook EVENT|replay|headers [--server URL] [--data-dir DIR]
[--auth key] [--capture claude]``: the command installed hooks run (also
``team-memory hook EVENT``). Whatever happens, it exits 0: a hook never breaks Claude Code."""

from __future__ import annotations

import json
import os
import sys

from team_memory.hook.config import HookConfig
from team_memory.hook.events import request_headers, run
from team_memory.hook.spool import replay
from team_memory_core.hook_protocol import HOOK_EVENTS


def _options(args: list[str]) -> tuple[list[str], dict[str, str]]:
    positional, options = [], {}
    iterator = iter(args)
    for arg in iterator:
        if arg.startswith("--"):
            options[arg[2:]] = next(iterator, "")
        else:
            positional.append(arg)
    return positional, options


def main(argv: list[str] | None = None) -> int:
    positional, options = _options(sys.argv[1:] if argv is None else argv)
    if not positional:
        print(f"usage: team-memory hook {{{'|'.join(HOOK_EVENTS)}|replay|headers}} "
              "[--server URL] [--data-dir DIR] [--auth key] [--capture claude]",
              file=sys.stderr)
        return 2
    try:
        config = HookConfig.resolve(options.get("server"), options.get("data-dir"),
                                    options.get("capture"))
        if positional[0] == "replay":
            replay(config)
            return 0
        if positional[0] == "headers":
            with_key = options.get("auth") == "key"
            sys.stdout.write(json.dumps(request_headers(config, os.getcwd(), with_key)) + "\n")
            return 0
        raw = sys.stdin.read()
        payload = json.loads(raw) if raw.strip() else {}
        output = run(positional[0], payload if isinstance(payload, dict) else {}, config)
    except Exception as error:  # a hook must never break Claude Code: report and go on
        print(f"team-memory hook: {type(error).__name__}: {error}", file=sys.stderr)
        return 0
    if output:
        sys.stdout.write(output + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
