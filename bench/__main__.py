"""python -m bench [--quick] [--output FILE] [...]: start a stack, measure, print one table."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from dataclasses import replace
from pathlib import Path

from bench.run import Options, run


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="small run (a few minutes) for CI: 200 memories, 2k-row search")
    parser.add_argument("--throughput-memories", type=int)
    parser.add_argument("--saves-per-level", type=int)
    parser.add_argument("--search-sizes", help="comma-separated corpus sizes, e.g. 10000,100000")
    parser.add_argument("--searches", type=int, help="searches per measurement")
    parser.add_argument("--unique-vectors", type=int,
                        help="texts really embedded for the bulk corpus (the rest reuse them)")
    parser.add_argument("--burst-clients", type=int,
                        help="MCP clients (and no-op starters) in the CPU-per-memory burst")
    parser.add_argument("--burst-saves-per-client", type=int,
                        help="saves per client in that burst (default 60; --quick 20)")
    parser.add_argument("--profile-worker", type=Path, metavar="FILE",
                        help="after the measured burst, run another under py-spy and write "
                             "the worker's raw stacks here (summarised in the report)")
    parser.add_argument("--burst-only", action="store_true",
                        help="only the CPU-per-memory burst and the no-op floor (a minute or "
                             "two): for comparing one change with the last")
    parser.add_argument("--search-only", action="store_true",
                        help="only the bulk load and the searches at --search-sizes")
    parser.add_argument("--output", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    options = Options.quick() if args.quick else Options()
    changes = {name: getattr(args, name) for name in
               ("throughput_memories", "saves_per_level", "searches", "unique_vectors", "output",
                "burst_clients", "burst_saves_per_client", "profile_worker", "burst_only",
                 "search_only")
               if getattr(args, name) is not None}
    if args.search_sizes:
        changes["search_sizes"] = tuple(int(s) for s in args.search_sizes.split(","))
    return replace(options, **changes)


def main(argv: list[str] | None = None) -> None:
    # SIGTERM unwinds like Ctrl-C, so the stack under test is stopped and its dir removed.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    try:
        print(asyncio.run(run(parse(argv))))
    except BaseExceptionGroup as group:  # the MCP client nests task groups deeply
        raise _first_leaf(group) from group


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


if __name__ == "__main__":
    main()
