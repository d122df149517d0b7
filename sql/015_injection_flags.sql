-- Issue 17 (part 5): shared-memory injection defence. Design: docs/security.md, "Shared memory".
-- Applied by `team-memory migrate` as the schema owner, inside one transaction.
--
-- Why a memory looks aimed at AI agents rather than at the team: the codes of the local rules
-- it trips (team_memory_core/rules/injection.py), set when the save writes its pending row, and
-- "model" when Claude Haiku judged it so at ingestion. Empty: not flagged. A flagged memory is
-- never put in a session's start context or the working set, takes part in no dedupe, merge,
-- consolidation or manifesto, and is shown with a warning wherever a model or a person reads it.
-- The application adds flags; it never clears one (no review step clears them yet).
ALTER TABLE memories ADD COLUMN injection_flags text[] NOT NULL DEFAULT '{}';
