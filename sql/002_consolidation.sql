-- Team Memory schema, version 2: nightly consolidation and the project manifesto.
-- Applied by `team-memory migrate` as the schema owner, inside one transaction.

-- consolidated_at: when the nightly run last reviewed the memory; a memory changed since
-- (updated_at later) is reviewed again, one left alone is not (a rerun changes nothing).
-- needs_review: kept without a model decision (API down, malformed reply); the nightly run
-- revisits it with its nearest neighbours and clears the flag.
ALTER TABLE memories
    ADD COLUMN consolidated_at timestamptz,
    ADD COLUMN needs_review    boolean NOT NULL DEFAULT false;

CREATE INDEX memories_needs_review_idx ON memories (tenant_id, project) WHERE needs_review;

-- Every (tenant, project) that holds memories; each gets one consolidation schedule.
CREATE TABLE memory_projects (
    tenant_id           uuid NOT NULL REFERENCES tenants (id),
    project             text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    schedule_id         text,
    schedule_ensured_at timestamptz,
    PRIMARY KEY (tenant_id, project)
);

-- One row per consolidation run (a continue-as-new chain is one run): what it did, spent.
CREATE TABLE consolidation_runs (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id),
    project       text NOT NULL,
    workflow_id   text NOT NULL,
    policy        text NOT NULL CHECK (policy IN ('haiku', 'local')),
    model         text,
    token_budget  integer NOT NULL,
    input_tokens  integer NOT NULL DEFAULT 0,
    output_tokens integer NOT NULL DEFAULT 0,
    status        text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed')),
    report        jsonb NOT NULL DEFAULT '{}',
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
CREATE INDEX consolidation_runs_scope_idx
    ON consolidation_runs (tenant_id, project, started_at DESC);

-- The manifesto of a project: a short ranked list of its high-level rules.
-- fingerprint: digest of the memories it was written from (unchanged inputs, no rewrite).
CREATE TABLE manifestos (
    tenant_id     uuid NOT NULL REFERENCES tenants (id),
    project       text NOT NULL,
    rules         jsonb NOT NULL,
    fingerprint   text NOT NULL,
    policy        text NOT NULL CHECK (policy IN ('haiku', 'local')),
    model         text,
    input_tokens  integer,
    output_tokens integer,
    generated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, project)
);

ALTER TABLE memory_projects ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_projects FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memory_projects
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());

ALTER TABLE consolidation_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE consolidation_runs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON consolidation_runs
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());

ALTER TABLE manifestos ENABLE ROW LEVEL SECURITY;
ALTER TABLE manifestos FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON manifestos
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());

-- The worker, at start-up, ensures one schedule per project of every tenant: the only
-- cross-tenant read the application role needs, and it returns names, never memories.
CREATE FUNCTION consolidation_scopes()
    RETURNS TABLE (tenant_id uuid, tenant_name text, project text)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
    AS $$
        SELECT p.tenant_id, t.name, p.project
        FROM memory_projects p JOIN tenants t ON t.id = p.tenant_id
        ORDER BY t.name, p.project
    $$;

-- A consolidation run is started by tenant name (schedules, operators' CLI commands).
CREATE FUNCTION tenant_id_named(p_name text) RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
    AS $$ SELECT id FROM tenants WHERE name = p_name $$;

GRANT SELECT, INSERT, UPDATE ON memory_projects, consolidation_runs, manifestos
    TO team_memory_app;
GRANT EXECUTE ON FUNCTION consolidation_scopes() TO team_memory_app;
GRANT EXECUTE ON FUNCTION tenant_id_named(text) TO team_memory_app;
