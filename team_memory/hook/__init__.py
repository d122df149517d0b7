"""The Claude Code hook: ``python -m team_memory.hook EVENT`` (also ``team-memory hook EVENT``).
A thin HTTP client of the running Team Memory server.

It must never slow Claude Code down, so it imports only the standard library (the CLI's typer,
pydantic or the embedder would cost hundreds of milliseconds; tests/test_layering.py keeps it
so), sends one small request with a short timeout, and always exits 0. When the server cannot
be reached, the event is appended to a local spool (spool.py) and a later hook call replays it
in a detached process. Replays are safe: every event carries an idempotency key (records.py)
that the server de-duplicates.

config.py     where the server, the key and the data directory are
records.py    the compact event record of a Claude Code hook payload
transport.py  one POST, without http.client on the plain-HTTP path
spool.py      the durable local spool and its replay
events.py     what each hook event does (SessionStart prints the context to inject)
self_capture.py  capture by the session's own Claude (opt-in)
__main__.py   the entry point: arguments, and a hook never fails Claude Code
"""
