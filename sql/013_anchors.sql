-- Issue 18: memories anchored to the files they are about, and whether those files moved on.
-- Applied by `team-memory migrate` as the schema owner, inside one transaction.
-- Design: docs/freshness.md.
--
-- The server never reads a repository. The Claude Code hook, which runs in it, reports file
-- states: a path and its git blob hash (sha1 of "blob <size>\0" + content), or NULL when the
-- file does not exist. No file content ever reaches the server.

-- The last state of each file the hooks reported, per project (the newest by the hook's
-- clock wins: a spooled report replayed late does not undo a newer one).
CREATE TABLE file_states (
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    project     text NOT NULL,
    path        text NOT NULL,
    blob        text,              -- NULL: the file did not exist
    session_id  text,              -- the Claude Code session that reported it
    observed_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, project, path)
);

-- A memory's files. blob is the file's hash when the memory was saved (NULL until a hook
-- first reports the file: the first report is the baseline). freshness compares the file's
-- reported state with that baseline: fresh (same), changed (other content), gone (deleted
-- or moved away). changed_at/changed_session: when and in which session it stopped being
-- fresh. reviewed_at: when the nightly consolidation last judged the change.
CREATE TABLE memory_anchors (
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    memory_id       uuid NOT NULL REFERENCES memories (id),
    project         text NOT NULL,
    path            text NOT NULL,
    blob            text,
    freshness       text NOT NULL DEFAULT 'fresh'
                    CHECK (freshness IN ('fresh', 'changed', 'gone')),
    changed_at      timestamptz,
    changed_session text,
    reviewed_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (memory_id, path)
);
CREATE INDEX memory_anchors_path_idx ON memory_anchors (tenant_id, project, path);

-- The memory's freshness, from its anchors (NULL: it cites no file): gone when every file
-- is gone, changed when one changed or went, else fresh. Kept by the application in the
-- transaction that changes an anchor, so every read (search, working set, get) has it.
ALTER TABLE memories ADD COLUMN freshness text
    CHECK (freshness IN ('fresh', 'changed', 'gone'));

ALTER TABLE file_states ENABLE ROW LEVEL SECURITY;
ALTER TABLE file_states FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON file_states
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());

ALTER TABLE memory_anchors ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_anchors FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memory_anchors
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());

-- Project-bound keys (sql/009): a file of another project is as invisible as another tenant's.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['file_states', 'memory_anchors'] LOOP
        EXECUTE format(
            'CREATE POLICY project_scope ON %I AS RESTRICTIVE'
            ' USING (NOT ((project <> ALL (current_projects())) IS TRUE))'
            ' WITH CHECK (NOT ((project <> ALL (current_projects())) IS TRUE))', t);
    END LOOP;
END $$;

-- Anchors are deleted only by a purge (a path can say more than it should).
GRANT SELECT, INSERT, UPDATE ON file_states TO team_memory_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON memory_anchors TO team_memory_app;

-- The nightly review of changed memories proposes a revised text, or archiving a memory when
-- what suggests it was written by another author: held for a person, like merges.
ALTER TABLE memory_proposals DROP CONSTRAINT memory_proposals_kind_check;
ALTER TABLE memory_proposals ADD CONSTRAINT memory_proposals_kind_check
    CHECK (kind IN ('merge', 'supersede', 'revise', 'archive'));
