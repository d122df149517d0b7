-- Issue 19: re-embedding every memory with another model while search keeps serving.
-- Applied by `team-memory migrate` as the schema owner, inside one transaction.
-- Design: docs/retrieval.md ("Changing the embedding model").
--
-- memories.embedding holds the vectors of the database's ACTIVE model: every search, dedupe
-- and consolidation reads it, and every process embeds queries and texts with that model. The
-- model is one for the whole database (an HNSW index serves one column of one dimension, and
-- a search spans a project and the tenant-wide memories, so queries of every tenant are
-- embedded by the same process-wide model). A re-embed (the ReembedMemories workflow) adds
-- memories.embedding_next of the new model's dimension with its own HNSW index, fills it page
-- by page, then switches in one transaction: the columns are renamed under an ACCESS
-- EXCLUSIVE lock, so a search runs wholly before the switch (old column, old model) or wholly
-- after it (new column, new model).

-- The models the database has held, by generation: exactly one active, at most one building.
CREATE TABLE embedding_models (
    generation  integer PRIMARY KEY,
    provider    text NOT NULL CHECK (provider IN ('local', 'openai', 'voyage')),
    name        text NOT NULL,
    -- pgvector 0.6 indexes (HNSW) at most 2000 dimensions
    dim         integer NOT NULL CHECK (dim BETWEEN 8 AND 2000),
    state       text NOT NULL CHECK (state IN ('active', 'building', 'retired', 'abandoned')),
    workflow_id text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    switched_at timestamptz
);
CREATE UNIQUE INDEX embedding_models_one_active ON embedding_models ((true))
    WHERE state = 'active';
CREATE UNIQUE INDEX embedding_models_one_building ON embedding_models ((true))
    WHERE state = 'building';

-- Vectors stay in the row even beside a second one during a re-embed (two 384-dimension
-- vectors and a short text pass toast_tuple_target, and a vector moved out of line costs
-- every exact scan about 4x, see sql/012). MAIN: moved out only when the row cannot fit a page;
-- the text (EXTENDED) goes first.
ALTER TABLE memories ALTER COLUMN embedding SET STORAGE MAIN;

-- The active model, read after locking memories: a caller that reads it holds a lock that the
-- switch (ACCESS EXCLUSIVE) waits for, so the columns it then reads or writes are that model's
-- until its transaction ends. A statement taking the lock sees what the switch committed
-- meanwhile: this function's query runs after the LOCK with a new snapshot.
-- Also the model a re-embed is building, if any (processes load it before the switch).
CREATE FUNCTION active_embedding_model(p_write boolean DEFAULT false)
    RETURNS TABLE (generation integer, provider text, name text, dim integer,
                   next_provider text, next_name text, next_dim integer)
    LANGUAGE plpgsql VOLATILE
    AS $$
    BEGIN
        IF p_write THEN
            LOCK TABLE memories IN ROW EXCLUSIVE MODE;
        ELSE
            LOCK TABLE memories IN ACCESS SHARE MODE;
        END IF;
        RETURN QUERY SELECT e.generation, e.provider, e.name, e.dim, b.provider, b.name, b.dim
                     FROM embedding_models e
                     LEFT JOIN embedding_models b ON b.state = 'building'
                     WHERE e.state = 'active';
    END
    $$;

-- A write that changes a memory's text or active vector while a re-embed runs makes its new
-- vector stale: cleared here, so the re-embed embeds it again before the switch. Attached to
-- memories only while embedding_next exists (reembed_begin .. reembed_switch).
CREATE FUNCTION memories_next_vector_stale() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
    BEGIN
        NEW.embedding_next := NULL;
        RETURN NEW;
    END
    $$;

-- Every tenant, for the re-embed's pages (run per tenant, under Row-Level Security).
CREATE FUNCTION reembed_tenants() RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
    AS $$ SELECT id FROM tenants ORDER BY id $$;

-- Give up a re-embed before its switch: the new column, its index and trigger go.
CREATE FUNCTION reembed_abandon(p_generation integer) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public
    AS $$
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM embedding_models
                       WHERE generation = p_generation AND state = 'building') THEN
            RETURN;
        END IF;
        DROP TRIGGER IF EXISTS memories_next_vector_stale ON memories;
        ALTER TABLE memories DROP COLUMN IF EXISTS embedding_next;
        UPDATE embedding_models SET state = 'abandoned' WHERE generation = p_generation;
    END
    $$;

-- Start building generation p_generation's column and index (idempotent for the same
-- workflow). The index is built while the column is empty (instant); each page's writes then
-- insert into it, so no long build ever holds a lock that blocks saves.
CREATE FUNCTION reembed_begin(p_provider text, p_name text, p_dim integer, p_workflow_id text)
    RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public
    AS $$
    DECLARE
        found embedding_models%ROWTYPE;
        next_generation integer;
    BEGIN
        SELECT * INTO found FROM embedding_models WHERE state = 'building';
        IF found.generation IS NOT NULL THEN
            IF found.workflow_id IS DISTINCT FROM p_workflow_id THEN
                RAISE EXCEPTION 'a re-embed to %/% is running (workflow %)',
                    found.provider, found.name, found.workflow_id
                    USING ERRCODE = 'object_in_use';
            END IF;
            IF found.provider = p_provider AND found.name = p_name AND found.dim = p_dim THEN
                RETURN found.generation;  -- this run again (a retried step), or a new run
                                          -- of the same re-embed: it goes on from there
            END IF;
            -- A run of this workflow id left it (one run of an id is running at a time).
            PERFORM reembed_abandon(found.generation);
        END IF;
        -- Old vectors a cancelled re-embed left behind after its switch: dead, dropped.
        ALTER TABLE memories DROP COLUMN IF EXISTS embedding_retired;
        IF EXISTS (SELECT 1 FROM embedding_models WHERE state = 'active' AND provider = p_provider
                   AND name = p_name AND dim = p_dim) THEN
            RAISE EXCEPTION 'the database already uses %/% (% dimensions)', p_provider, p_name,
                p_dim USING ERRCODE = 'invalid_parameter_value';
        END IF;
        SELECT coalesce(max(generation), 0) + 1 INTO next_generation FROM embedding_models;
        INSERT INTO embedding_models (generation, provider, name, dim, state, workflow_id)
        VALUES (next_generation, p_provider, p_name, p_dim, 'building', p_workflow_id);
        EXECUTE format('ALTER TABLE memories ADD COLUMN embedding_next vector(%s)', p_dim);
        ALTER TABLE memories ALTER COLUMN embedding_next SET STORAGE MAIN;
        CREATE INDEX memories_embedding_next_idx ON memories
            USING hnsw (embedding_next vector_cosine_ops) WITH (m = 16, ef_construction = 64);
        CREATE TRIGGER memories_next_vector_stale BEFORE UPDATE OF content, embedding
            ON memories FOR EACH ROW
            WHEN (NEW.content IS DISTINCT FROM OLD.content
                  OR NEW.embedding IS DISTINCT FROM OLD.embedding)
            EXECUTE FUNCTION memories_next_vector_stale();
        RETURN next_generation;
    END
    $$;

-- How many memories of the transaction's tenant still lack a vector of the new model.
CREATE FUNCTION reembed_missing(p_tenant uuid) RETURNS bigint
    LANGUAGE plpgsql STABLE
    AS $$
    DECLARE
        missing bigint;
    BEGIN
        EXECUTE 'SELECT count(*) FROM memories WHERE tenant_id = $1'
                ' AND embedding IS NOT NULL AND embedding_next IS NULL'
            INTO missing USING p_tenant;
        RETURN missing;
    END
    $$;

-- The switch: generation p_generation becomes the active model in this transaction. The
-- caller holds the ACCESS EXCLUSIVE lock on memories and has filled the last missing vectors;
-- checked again here, tenant by tenant (the owner is bound by the FORCEd policies too).
CREATE FUNCTION reembed_switch(p_generation integer) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public
    AS $$
    DECLARE
        t uuid;
        caller_tenant text := current_setting('app.tenant_id', true);
    BEGIN
        IF EXISTS (SELECT 1 FROM embedding_models
                   WHERE generation = p_generation AND state = 'active') THEN
            RETURN;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM embedding_models
                       WHERE generation = p_generation AND state = 'building') THEN
            RAISE EXCEPTION 'generation % is not being built', p_generation;
        END IF;
        LOCK TABLE memories IN ACCESS EXCLUSIVE MODE;
        FOR t IN SELECT id FROM tenants LOOP
            PERFORM set_config('app.tenant_id', t::text, true);
            IF reembed_missing(t) > 0 THEN
                RAISE EXCEPTION 'memories of tenant % lack a vector of generation %', t,
                    p_generation USING ERRCODE = 'object_not_in_prerequisite_state';
            END IF;
        END LOOP;
        PERFORM set_config('app.tenant_id', coalesce(caller_tenant, ''), true);
        DROP TRIGGER memories_next_vector_stale ON memories;
        DROP INDEX memories_embedding_idx;
        ALTER TABLE memories RENAME COLUMN embedding TO embedding_retired;
        ALTER TABLE memories RENAME COLUMN embedding_next TO embedding;
        ALTER INDEX memories_embedding_next_idx RENAME TO memories_embedding_idx;
        UPDATE embedding_models SET state = 'retired' WHERE state = 'active';
        UPDATE embedding_models SET state = 'active', switched_at = now()
         WHERE generation = p_generation;
        UPDATE schema_info SET value = e.dim::text FROM embedding_models e
         WHERE schema_info.key = 'embedding_dim' AND e.generation = p_generation;
        UPDATE schema_info SET value = e.name FROM embedding_models e
         WHERE schema_info.key = 'embedding_model' AND e.generation = p_generation;
    END
    $$;

-- After the switch the old vectors are dead weight in every row (half of a short memory's
-- row): the re-embed clears them page by page (reclaiming the space as rows are rewritten),
-- then drops the column.
CREATE FUNCTION reembed_finish() RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public
    AS $$
    BEGIN
        ALTER TABLE memories DROP COLUMN IF EXISTS embedding_retired;
    END
    $$;

GRANT SELECT ON embedding_models TO team_memory_app;
GRANT EXECUTE ON FUNCTION active_embedding_model(boolean) TO team_memory_app;
GRANT EXECUTE ON FUNCTION reembed_missing(uuid) TO team_memory_app;
REVOKE ALL ON FUNCTION reembed_tenants() FROM PUBLIC;
REVOKE ALL ON FUNCTION reembed_begin(text, text, integer, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION reembed_switch(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION reembed_finish() FROM PUBLIC;
REVOKE ALL ON FUNCTION reembed_abandon(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION reembed_tenants() TO team_memory_app;
GRANT EXECUTE ON FUNCTION reembed_begin(text, text, integer, text) TO team_memory_app;
GRANT EXECUTE ON FUNCTION reembed_switch(integer) TO team_memory_app;
GRANT EXECUTE ON FUNCTION reembed_finish() TO team_memory_app;
GRANT EXECUTE ON FUNCTION reembed_abandon(integer) TO team_memory_app;
