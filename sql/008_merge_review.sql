-- Merges and supersedes proposed by the model that would change another author's memory.
-- Applied by `team-memory migrate` as the schema owner, inside one transaction.
--
-- A memory's author is the API key that saved it (memories.created_by; members come later).
-- When the model proposes to rewrite (merge) or retire (supersede) a memory of another author,
-- or of no recorded author, the change is not applied: the new memory is kept as its own
-- memory and the proposal waits here for a person (status 'pending'). A later review queue
-- approves or rejects it (status, decided_by, decided_at).

CREATE TABLE memory_proposals (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id),
    project       text NOT NULL,
    -- merge: target_id would take proposed_text and source_ids would fold into it;
    -- supersede: target_id would be retired in favour of source_ids[1].
    kind          text NOT NULL CHECK (kind IN ('merge', 'supersede')),
    target_id     uuid NOT NULL REFERENCES memories (id),
    source_ids    uuid[] NOT NULL CHECK (cardinality(source_ids) > 0),
    proposed_text text,
    reason        text,
    -- ingest: a save's decision (key_id: the key that saved); consolidation: a nightly run.
    origin        text NOT NULL CHECK (origin IN ('ingest', 'consolidation')),
    key_id        uuid,
    run_id        uuid,
    policy        text NOT NULL,
    model         text,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'approved', 'rejected')),
    decided_by    text,
    decided_at    timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX memory_proposals_status_idx ON memory_proposals (tenant_id, status, id DESC);
CREATE INDEX memory_proposals_target_idx ON memory_proposals (tenant_id, target_id);
-- The same change proposed again (a retried step, the nightly run after the save) is one row.
CREATE UNIQUE INDEX memory_proposals_once ON memory_proposals (tenant_id, kind, target_id, source_ids)
    WHERE status = 'pending';

ALTER TABLE memory_proposals ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_proposals FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memory_proposals
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());

-- Insert; update only the review decision and, for a purge, the text.
GRANT SELECT, INSERT ON memory_proposals TO team_memory_app;
GRANT UPDATE (status, decided_by, decided_at, proposed_text, reason)
    ON memory_proposals TO team_memory_app;
