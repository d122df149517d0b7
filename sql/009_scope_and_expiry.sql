-- Issue 13: project-bound keys enforced by the database, re-saves after a forget or purge,
-- key expiry, capture sessions per key, SECURITY DEFINER functions for the application only.
-- Applied by `team-memory migrate` as the schema owner, inside one transaction.

-- --- Project scope ---------------------------------------------------------------------------
-- app.projects: the projects a project-bound key may reach (its own and '*'), set for the
-- transaction by db.tenant_tx from the principal. Unset or empty (the worker, operators,
-- unbound keys) it is NULL and the tenant policy alone applies. The policies below are
-- RESTRICTIVE: they narrow what tenant_isolation grants, never widen it, so a memory of
-- another project is exactly as invisible as a memory of another tenant (no row, no error).
CREATE FUNCTION current_projects() RETURNS text[]
    LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('app.projects', true), '')::text[] $$;

-- Every table with a project column that a request reads: the memories, the manifestos, the
-- search structures (which hold the words of the memories) and the proposed merges (their
-- text).
--
-- The condition reads "the project is in app.projects, or app.projects is unset", written so
-- that the planner estimates it right: it folds current_projects() to a constant for its
-- estimates, and "x IS NULL OR ..." over a constant is estimated at 0.5% of the rows (an
-- unbound key's search then chose an exact scan over the HNSW index: 3x slower), while
-- NOT ((project <> ALL (NULL)) IS TRUE) is estimated at 100%, and at the projects' share of
-- the rows when the array is set. Unset, "<> ALL (NULL)" is NULL, so the row is visible.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['memories', 'manifestos', 'memory_postings', 'memory_lexemes',
                             'memory_scopes', 'memory_proposals'] LOOP
        EXECUTE format(
            'CREATE POLICY project_scope ON %I AS RESTRICTIVE'
            ' USING (NOT ((project <> ALL (current_projects())) IS TRUE))'
            ' WITH CHECK (NOT ((project <> ALL (current_projects())) IS TRUE))', t);
    END LOOP;
END $$;

-- An event is visible when its memory is (the subquery is itself under the memories policies).
CREATE POLICY project_scope ON memory_events AS RESTRICTIVE
    USING (current_projects() IS NULL
           OR EXISTS (SELECT 1 FROM memories m WHERE m.id = memory_events.memory_id))
    WITH CHECK (current_projects() IS NULL
                OR EXISTS (SELECT 1 FROM memories m WHERE m.id = memory_events.memory_id));

GRANT EXECUTE ON FUNCTION current_projects() TO team_memory_app;

-- --- Re-saving forgotten or purged text --------------------------------------------------------
-- A memory's id derives from (tenant, project, content hash, generation). Saving text whose
-- memory was forgotten or purged creates the next generation: a new row and a new ingestion
-- workflow, instead of answering with the old, dead one.
ALTER TABLE memories ADD COLUMN generation integer NOT NULL DEFAULT 0 CHECK (generation >= 0);

-- --- Key expiry --------------------------------------------------------------------------------
ALTER TABLE api_keys ADD COLUMN expires_at timestamptz;

-- Same signature as in 001 (callers and grants unchanged); an expired key is refused like a
-- revoked one.
CREATE OR REPLACE FUNCTION authenticate_key(p_key_hash text)
    RETURNS TABLE (key_id uuid, tenant_id uuid, tenant_name text, project text,
                   read_only boolean)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
    AS $$
        SELECT k.id, k.tenant_id, t.name, k.project, k.read_only
        FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
        WHERE k.key_hash = p_key_hash AND k.revoked_at IS NULL
          AND (k.expires_at IS NULL OR k.expires_at > now())
    $$;

CREATE OR REPLACE FUNCTION audit_auth_failure(p_key_hash text, p_prefix text, p_transport text)
    RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public
    AS $$
    DECLARE
        found_key api_keys%ROWTYPE;
        caller_tenant text := current_setting('app.tenant_id', true);
    BEGIN
        SELECT * INTO found_key FROM api_keys WHERE key_hash = p_key_hash;
        PERFORM set_config('app.tenant_id', coalesce(found_key.tenant_id::text, ''), true);
        INSERT INTO audit_log (tenant_id, key_id, actor, action, target, outcome, detail)
        VALUES (found_key.tenant_id, found_key.id, 'anonymous', 'authenticate', NULL, 'denied',
                jsonb_build_object(
                    'reason', CASE WHEN found_key.id IS NULL THEN 'unknown key'
                                   WHEN found_key.revoked_at IS NOT NULL THEN 'revoked key'
                                   ELSE 'expired key' END,
                    'prefix', left(p_prefix, 8),
                    'transport', left(p_transport, 16)));
        PERFORM set_config('app.tenant_id', coalesce(caller_tenant, ''), true);
    END
    $$;

-- --- Capture sessions per key ------------------------------------------------------------------
-- A session id comes from the client: two keys sending the same one (or none: "unknown") must
-- not share a session's project, budget or de-duplication. The all-zero uuid stands for "no
-- key" (principals without a key never capture; the default only fills existing rows).
ALTER TABLE capture_sessions
    ADD COLUMN key_id uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000';
ALTER TABLE capture_sessions DROP CONSTRAINT capture_sessions_pkey;
ALTER TABLE capture_sessions ADD PRIMARY KEY (tenant_id, key_id, session_id);

ALTER TABLE capture_events
    ADD COLUMN key_id uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000';
ALTER TABLE capture_events DROP CONSTRAINT capture_events_pkey;
ALTER TABLE capture_events ADD PRIMARY KEY (tenant_id, key_id, session_id, event_key);

-- --- SECURITY DEFINER functions: the application role only --------------------------------------
-- Functions are executable by PUBLIC unless revoked; 004's two were, these three were not.
REVOKE ALL ON FUNCTION authenticate_key(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION consolidation_scopes() FROM PUBLIC;
REVOKE ALL ON FUNCTION tenant_id_named(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION authenticate_key(text) TO team_memory_app;
GRANT EXECUTE ON FUNCTION consolidation_scopes() TO team_memory_app;
GRANT EXECUTE ON FUNCTION tenant_id_named(text) TO team_memory_app;
