-- Team Memory schema, version 1.
-- Applied by `team-memory migrate` as the schema owner, inside one transaction.
-- {embedding_dim} is substituted from the settings at first apply and recorded in schema_info.

CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE schema_info (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- Tenants are the isolation boundary (a team or an org).
CREATE TABLE tenants (
    id         uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- API keys: only a SHA-256 of the secret is stored.
CREATE TABLE api_keys (
    id         uuid PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    name       text NOT NULL,
    prefix     text NOT NULL,
    key_hash   text NOT NULL UNIQUE,
    project    text,
    read_only  boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

CREATE TABLE memories (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id),
    project       text NOT NULL,
    content       text NOT NULL,
    category      text NOT NULL
                  CHECK (category IN ('architecture', 'preference', 'bugfix',
                                      'business_rule', 'general')),
    importance    smallint NOT NULL DEFAULT 1 CHECK (importance BETWEEN 1 AND 5),
    tags          text[] NOT NULL DEFAULT '{}',
    content_hash  text NOT NULL,
    embedding     vector({embedding_dim}),
    -- pending: acknowledged, not yet committed by its workflow (searchable already);
    -- active: current; duplicate: folded into duplicate_of; superseded: replaced by
    -- superseded_by; archived: decayed; forgotten: soft-deleted by a user.
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'active', 'duplicate', 'superseded',
                                    'archived', 'forgotten')),
    duplicate_of  uuid REFERENCES memories (id),
    superseded_by uuid REFERENCES memories (id),
    merged_from   uuid[] NOT NULL DEFAULT '{}',
    source        text,
    created_by    uuid,
    valid_from    timestamptz NOT NULL DEFAULT now(),
    valid_to      timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    occurred_at   timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    search_text   tsvector GENERATED ALWAYS AS (
                      to_tsvector('english'::regconfig, content) || array_to_tsvector(tags)
                  ) STORED
);

-- Current memories of a scope, newest first (recent_summary, working set, exact scans).
CREATE INDEX memories_scope_idx ON memories (tenant_id, project, status, occurred_at DESC);
CREATE INDEX memories_hash_idx ON memories (tenant_id, project, content_hash);
CREATE INDEX memories_embedding_idx ON memories USING hnsw (embedding vector_cosine_ops)
    WITH (m = 16, ef_construction = 64);
CREATE INDEX memories_search_text_idx ON memories USING gin (search_text);
CREATE INDEX memories_tags_idx ON memories USING gin (tags);

-- History of every change to a memory; append-only for the application role.
CREATE TABLE memory_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    memory_id   uuid NOT NULL REFERENCES memories (id),
    event       text NOT NULL,
    before_text text,
    after_text  text,
    related_id  uuid,
    reason      text,
    policy      text,
    model       text,
    input_tokens  integer,
    output_tokens integer,
    detail      jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX memory_events_memory_idx ON memory_events (tenant_id, memory_id, id);

-- Row-Level Security: every tenant-owned table is visible only to the tenant named by
-- the transaction-local setting app.tenant_id. Unset, the setting is NULL and no row matches.
CREATE FUNCTION current_tenant() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('app.tenant_id', true), '')::uuid $$;

ALTER TABLE memories ENABLE ROW LEVEL SECURITY;
ALTER TABLE memories FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memories
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());

ALTER TABLE memory_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memory_events
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());

-- The registry tables (tenants, keys) are RLS-protected from the application role but not
-- FORCEd: the schema owner administers them across tenants, and authentication (before any
-- tenant is known) goes through the SECURITY DEFINER function below, run as the owner.
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants USING (id = current_tenant());

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys USING (tenant_id = current_tenant());

CREATE FUNCTION authenticate_key(p_key_hash text)
    RETURNS TABLE (key_id uuid, tenant_id uuid, tenant_name text, project text,
                   read_only boolean)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
    AS $$
        SELECT k.id, k.tenant_id, t.name, k.project, k.read_only
        FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
        WHERE k.key_hash = p_key_hash AND k.revoked_at IS NULL
    $$;

GRANT USAGE ON SCHEMA public TO team_memory_app;
GRANT SELECT, INSERT, UPDATE ON memories TO team_memory_app;
GRANT SELECT, INSERT ON memory_events TO team_memory_app;
GRANT SELECT ON tenants, api_keys, schema_info TO team_memory_app;
GRANT EXECUTE ON FUNCTION authenticate_key(text) TO team_memory_app;
GRANT EXECUTE ON FUNCTION current_tenant() TO team_memory_app;
