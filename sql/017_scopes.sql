-- Issue 17: personal memories enforced by Row-Level Security, provenance, and promotion with
-- review. Applied by `team-memory migrate` as the schema owner, inside one transaction.
-- Design: docs/security.md ("Members and scopes").

-- --- The member of the transaction ----------------------------------------------------------
-- app.member_id: the member a request acts for, set for the transaction by pool.principal_tx
-- from the key's member. Unset (the worker, operators' commands) it is NULL and the member
-- policies below let every row of the tenant through, as before.
CREATE FUNCTION current_member() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('app.member_id', true), '')::uuid $$;
GRANT EXECUTE ON FUNCTION current_member() TO team_memory_app;

-- --- Provenance and scope of a memory -----------------------------------------------------------
-- author_id: the member who saved it (or whose session captured it). NULL: saved by an
--   operator, or before members existed and by no key.
-- origin: how it came in: a tool call (save_memory, the browser, the API), a hook capture
--   (origin_session: the Claude Code session), an import, or a merge (its text was rewritten
--   by merging memories: at ingestion or by the nightly consolidation).
-- private_to: the one member who may see it: its author, for a personal memory. NULL: shared
--   with the project (or, in project '*', with the team). It never changes: a promotion
--   creates the shared memory beside it. A personal memory's id (and its ingestion
--   workflow's) derives from its member too, so the same text saved personally by two members,
--   or personally and shared, is never one memory.
ALTER TABLE memories
    ADD COLUMN author_id      uuid REFERENCES members (id),
    ADD COLUMN origin         text NOT NULL DEFAULT 'tool'
                              CHECK (origin IN ('tool', 'capture', 'import', 'merge')),
    ADD COLUMN origin_session text,
    ADD COLUMN private_to     uuid REFERENCES members (id);

-- Existing memories: the key that saved a memory (created_by) became the member with its id
-- (sql/014); a captured memory names its session in source; a merged one has merged_from.
DO $$
DECLARE
    t uuid;
BEGIN
    FOR t IN SELECT id FROM tenants LOOP
        PERFORM set_config('app.tenant_id', t::text, true);
        UPDATE memories m SET
            author_id = (SELECT mb.id FROM members mb WHERE mb.id = m.created_by),
            origin = CASE WHEN m.source LIKE 'claude-code:%' THEN 'capture'
                          WHEN cardinality(m.merged_from) > 0 THEN 'merge'
                          ELSE 'tool' END,
            origin_session = CASE WHEN m.source LIKE 'claude-code:%'
                                  THEN nullif(substr(m.source, 13), '') END
        WHERE m.tenant_id = t
          AND (m.created_by IS NOT NULL OR m.source LIKE 'claude-code:%'
               OR cardinality(m.merged_from) > 0);
    END LOOP;
    PERFORM set_config('app.tenant_id', '', true);
END $$;

-- A personal memory is exactly as invisible to another member as a memory of another tenant
-- (no row, no error). RESTRICTIVE: it narrows tenant_isolation and project_scope, never
-- widens them. Written as sql/009's project policy is, for the planner's estimates: unset
-- member or shared memory ("<>" is NULL) pass; else the member must be the memory's.
CREATE POLICY member_scope ON memories AS RESTRICTIVE
    USING (NOT ((private_to <> current_member()) IS TRUE))
    WITH CHECK (NOT ((private_to <> current_member()) IS TRUE));

-- --- The search structures hold the words of the memories: per member too ---------------------
-- memory_postings has a row per word of each memory; memory_lexemes / memory_scopes count
-- them. Keyed by private_to as well (NULL: the shared memories), so that the words of a
-- personal memory, and even how many memories hold a word, are its member's alone; a search
-- sums the shared statistics and its member's own (Row-Level Security picks them).
ALTER TABLE memory_postings ADD COLUMN private_to uuid;
ALTER TABLE memory_lexemes ADD COLUMN private_to uuid;
ALTER TABLE memory_scopes ADD COLUMN private_to uuid;
ALTER TABLE memory_lexemes DROP CONSTRAINT memory_lexemes_pkey;
ALTER TABLE memory_lexemes ADD CONSTRAINT memory_lexemes_key
    UNIQUE NULLS NOT DISTINCT (tenant_id, project, lexeme, private_to);
ALTER TABLE memory_scopes DROP CONSTRAINT memory_scopes_pkey;
ALTER TABLE memory_scopes ADD CONSTRAINT memory_scopes_key
    UNIQUE NULLS NOT DISTINCT (tenant_id, project, private_to);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['memory_postings', 'memory_lexemes', 'memory_scopes'] LOOP
        EXECUTE format(
            'CREATE POLICY member_scope ON %I AS RESTRICTIVE'
            ' USING (NOT ((private_to <> current_member()) IS TRUE))'
            ' WITH CHECK (NOT ((private_to <> current_member()) IS TRUE))', t);
    END LOOP;
END $$;

ALTER TYPE memory_stat_change ADD ATTRIBUTE private_to uuid;

CREATE OR REPLACE FUNCTION memory_stat_change_of(m memories, sign int) RETURNS memory_stat_change
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT m.tenant_id, m.project, m.search_text, sign, m.private_to $$;

CREATE OR REPLACE FUNCTION memory_postings_of(m memories) RETURNS SETOF memory_postings
    LANGUAGE sql IMMUTABLE AS $$
        SELECT m.tenant_id, m.project, l.lexeme, m.id, coalesce(cardinality(l.positions), 1),
               length(m.search_text), m.private_to
        FROM unnest(m.search_text) l
    $$;

CREATE OR REPLACE FUNCTION apply_memory_stat_changes(changes memory_stat_change[]) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    -- One writer per scope at a time: concurrent commits would otherwise lock lexeme rows in
    -- different orders across statements and deadlock.
    PERFORM pg_advisory_xact_lock(hashtextextended(s.tenant_id::text || '/' || s.project, 6))
    FROM (SELECT DISTINCT c.tenant_id, c.project FROM unnest(changes) c ORDER BY 1, 2) s;

    WITH deltas AS (
        SELECT c.tenant_id, c.project, c.private_to, l.lexeme, sum(c.sign) AS delta
        FROM unnest(changes) c, unnest(c.search_text) l
        GROUP BY 1, 2, 3, 4
        HAVING sum(c.sign) <> 0
    )
    INSERT INTO memory_lexemes AS s (tenant_id, project, private_to, lexeme, docs)
    SELECT tenant_id, project, private_to, lexeme, delta FROM deltas ORDER BY 1, 2, 3, 4
    ON CONFLICT (tenant_id, project, lexeme, private_to)
        DO UPDATE SET docs = s.docs + EXCLUDED.docs;

    -- A word no active memory holds any more is dropped (a purged memory leaves no trace).
    DELETE FROM memory_lexemes s
    USING (SELECT DISTINCT c.tenant_id, c.project, c.private_to, l.lexeme
           FROM unnest(changes) c, unnest(c.search_text) l WHERE c.sign < 0) gone
    WHERE s.tenant_id = gone.tenant_id AND s.project = gone.project
      AND s.private_to IS NOT DISTINCT FROM gone.private_to
      AND s.lexeme = gone.lexeme AND s.docs <= 0;

    INSERT INTO memory_scopes AS s (tenant_id, project, private_to, docs, lexemes)
    SELECT c.tenant_id, c.project, c.private_to, sum(c.sign), sum(c.sign * length(c.search_text))
    FROM unnest(changes) c
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT (tenant_id, project, private_to) DO UPDATE
        SET docs = s.docs + EXCLUDED.docs, lexemes = s.lexemes + EXCLUDED.lexemes;
END $$;

-- As in sql/006, with private_to among what moves a memory's postings and statistics.
CREATE OR REPLACE FUNCTION memories_track_search() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changes memory_stat_change[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO memory_postings SELECT (memory_postings_of(n)).* FROM new_rows n;
        SELECT array_agg(memory_stat_change_of(n, 1))
        INTO changes FROM new_rows n WHERE n.status = 'active';
    ELSIF TG_OP = 'DELETE' THEN
        DELETE FROM memory_postings p USING old_rows o, unnest(o.search_text) l
        WHERE p.tenant_id = o.tenant_id AND p.project = o.project AND p.lexeme = l.lexeme
          AND p.memory_id = o.id;
        SELECT array_agg(memory_stat_change_of(o, -1))
        INTO changes FROM old_rows o WHERE o.status = 'active';
    ELSE
        DELETE FROM memory_postings p
        USING old_rows o JOIN new_rows n ON n.id = o.id, unnest(o.search_text) l
        WHERE (o.search_text <> n.search_text OR o.project <> n.project
               OR o.private_to IS DISTINCT FROM n.private_to)
          AND p.tenant_id = o.tenant_id AND p.project = o.project AND p.lexeme = l.lexeme
          AND p.memory_id = o.id;
        INSERT INTO memory_postings SELECT (memory_postings_of(n)).*
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE o.search_text <> n.search_text OR o.project <> n.project
           OR o.private_to IS DISTINCT FROM n.private_to;
        SELECT array_agg(c) INTO changes FROM (
            SELECT memory_stat_change_of(n, 1) AS c
            FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE n.status = 'active' AND (o.status <> 'active'
                OR o.search_text <> n.search_text OR o.project <> n.project
                OR o.private_to IS DISTINCT FROM n.private_to)
            UNION ALL
            SELECT memory_stat_change_of(o, -1)
            FROM old_rows o JOIN new_rows n ON n.id = o.id
            WHERE o.status = 'active' AND (n.status <> 'active'
                OR o.search_text <> n.search_text OR o.project <> n.project
                OR o.private_to IS DISTINCT FROM n.private_to)
        ) x;
    END IF;
    IF changes IS NOT NULL THEN
        PERFORM apply_memory_stat_changes(changes);
    END IF;
    RETURN NULL;
END $$;

-- --- Every other table that carries a memory's id or text ------------------------------------
-- A row is visible to a member when its memory is (the subquery is itself under the memories
-- policies): its history (texts before and after), the files it cites, its outbox row.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['memory_events', 'memory_anchors', 'ingest_outbox'] LOOP
        EXECUTE format(
            'CREATE POLICY member_scope ON %1$I AS RESTRICTIVE'
            ' USING (current_member() IS NULL'
            '        OR EXISTS (SELECT 1 FROM memories m WHERE m.id = %1$I.memory_id))'
            ' WITH CHECK (current_member() IS NULL'
            '        OR EXISTS (SELECT 1 FROM memories m WHERE m.id = %1$I.memory_id))', t);
    END LOOP;
END $$;

-- --- Promotion and review ------------------------------------------------------------------------
-- A project is open (a promotion to it is applied at once) or reviewed (promotions, and the
-- observations captured from sessions, wait for another member's approval). Set by
-- `team-memory project set`; the team scope is project '*'.
ALTER TABLE memory_projects ADD COLUMN review text NOT NULL DEFAULT 'open'
    CHECK (review IN ('open', 'reviewed'));

-- A proposal to share a personal memory (target_id) with its project or the team (scope):
-- a member's promotion, or an observation captured in a reviewed project. Its text is a copy
-- of the memory's, for the review queue: every member of the project may read a pending
-- promotion (that is what review is), while the personal memory itself stays its author's.
ALTER TABLE memory_proposals DROP CONSTRAINT memory_proposals_kind_check;
ALTER TABLE memory_proposals ADD CONSTRAINT memory_proposals_kind_check
    CHECK (kind IN ('merge', 'supersede', 'revise', 'archive', 'promote'));
ALTER TABLE memory_proposals DROP CONSTRAINT memory_proposals_origin_check;
ALTER TABLE memory_proposals ADD CONSTRAINT memory_proposals_origin_check
    CHECK (origin IN ('ingest', 'consolidation', 'promotion', 'capture', 'save'));
ALTER TABLE memory_proposals
    ADD COLUMN scope           text CHECK (scope IN ('project', 'team')),
    ADD COLUMN member_id       uuid REFERENCES members (id),
    ADD COLUMN decision_reason text,
    ADD COLUMN result_id       uuid;

CREATE POLICY member_scope ON memory_proposals AS RESTRICTIVE
    USING (current_member() IS NULL
           OR (kind = 'promote' AND status = 'pending')
           OR EXISTS (SELECT 1 FROM memories m WHERE m.id = memory_proposals.target_id))
    WITH CHECK (current_member() IS NULL
                OR EXISTS (SELECT 1 FROM memories m WHERE m.id = memory_proposals.target_id));

GRANT UPDATE (decision_reason, result_id) ON memory_proposals TO team_memory_app;
