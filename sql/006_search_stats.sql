-- Full-text search structures kept by triggers on memories (docs/retrieval.md):
--
-- memory_postings: an inverted index per scope (tenant, project, lexeme -> memory, with the
-- term frequency and document length BM25 needs). The GIN index on memories.search_text cannot
-- serve the application role: under Row-Level Security a qualifier may only become an index
-- condition if its operator is leakproof, and tsvector @@ tsquery is not, so every keyword
-- search scanned the whole scope. Lookups here are btree equalities on uuid and text, which are
-- leakproof, so the index applies, and the scope is part of the key.
--
-- memory_lexemes / memory_scopes: BM25 collection statistics, exact and read instead of
-- counted: how many active memories contain each lexeme, and how many active memories (and
-- lexemes in all) a scope holds.
CREATE TABLE memory_postings (
    tenant_id  uuid    NOT NULL REFERENCES tenants (id),
    project    text    NOT NULL,
    lexeme     text    NOT NULL,
    memory_id  uuid    NOT NULL,
    tf         integer NOT NULL,
    doc_length integer NOT NULL,
    PRIMARY KEY (tenant_id, project, lexeme, memory_id)
);

CREATE TABLE memory_lexemes (
    tenant_id  uuid   NOT NULL REFERENCES tenants (id),
    project    text   NOT NULL,
    lexeme     text   NOT NULL,
    docs       bigint NOT NULL,
    PRIMARY KEY (tenant_id, project, lexeme)
);

CREATE TABLE memory_scopes (
    tenant_id  uuid   NOT NULL REFERENCES tenants (id),
    project    text   NOT NULL,
    docs       bigint NOT NULL,
    lexemes    bigint NOT NULL,
    PRIMARY KEY (tenant_id, project)
);

ALTER TABLE memory_postings ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_postings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memory_postings
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());

ALTER TABLE memory_lexemes ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_lexemes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memory_lexemes
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());

ALTER TABLE memory_scopes ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_scopes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memory_scopes
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());

-- One memory's contribution to the statistics: +1 when it becomes active, -1 when it stops.
CREATE TYPE memory_stat_change AS (tenant_id uuid, project text, search_text tsvector, sign int);

CREATE FUNCTION memory_stat_change_of(m memories, sign int) RETURNS memory_stat_change
    LANGUAGE sql IMMUTABLE AS $$ SELECT m.tenant_id, m.project, m.search_text, sign $$;

-- One memory's postings: a row per distinct lexeme of its text.
CREATE FUNCTION memory_postings_of(m memories) RETURNS SETOF memory_postings
    LANGUAGE sql IMMUTABLE AS $$
        SELECT m.tenant_id, m.project, l.lexeme, m.id, coalesce(cardinality(l.positions), 1),
               length(m.search_text)
        FROM unnest(m.search_text) l
    $$;

CREATE FUNCTION apply_memory_stat_changes(changes memory_stat_change[]) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    -- One writer per scope at a time: concurrent commits would otherwise lock lexeme rows in
    -- different orders across statements and deadlock.
    PERFORM pg_advisory_xact_lock(hashtextextended(s.tenant_id::text || '/' || s.project, 6))
    FROM (SELECT DISTINCT c.tenant_id, c.project FROM unnest(changes) c ORDER BY 1, 2) s;

    WITH deltas AS (
        SELECT c.tenant_id, c.project, l.lexeme, sum(c.sign) AS delta
        FROM unnest(changes) c, unnest(c.search_text) l
        GROUP BY 1, 2, 3
        HAVING sum(c.sign) <> 0
    )
    INSERT INTO memory_lexemes AS s (tenant_id, project, lexeme, docs)
    SELECT tenant_id, project, lexeme, delta FROM deltas ORDER BY 1, 2, 3
    ON CONFLICT (tenant_id, project, lexeme) DO UPDATE SET docs = s.docs + EXCLUDED.docs;

    -- A word no active memory holds any more is dropped (a purged memory leaves no trace).
    DELETE FROM memory_lexemes s
    USING (SELECT DISTINCT c.tenant_id, c.project, l.lexeme
           FROM unnest(changes) c, unnest(c.search_text) l WHERE c.sign < 0) gone
    WHERE s.tenant_id = gone.tenant_id AND s.project = gone.project
      AND s.lexeme = gone.lexeme AND s.docs <= 0;

    INSERT INTO memory_scopes AS s (tenant_id, project, docs, lexemes)
    SELECT c.tenant_id, c.project, sum(c.sign), sum(c.sign * length(c.search_text))
    FROM unnest(changes) c
    GROUP BY 1, 2
    ORDER BY 1, 2
    ON CONFLICT (tenant_id, project) DO UPDATE
        SET docs = s.docs + EXCLUDED.docs, lexemes = s.lexemes + EXCLUDED.lexemes;
END $$;

-- Statement-level with transition tables: a bulk insert is one aggregated update, and an
-- update that changes neither project, status nor text (embedding, review flags) does nothing.
-- Postings follow the text of every memory whatever its status (history searches need them;
-- a purge empties the text and so drops them); statistics count active memories only.
CREATE FUNCTION memories_track_search() RETURNS trigger LANGUAGE plpgsql AS $$
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
        WHERE (o.search_text <> n.search_text OR o.project <> n.project)
          AND p.tenant_id = o.tenant_id AND p.project = o.project AND p.lexeme = l.lexeme
          AND p.memory_id = o.id;
        INSERT INTO memory_postings SELECT (memory_postings_of(n)).*
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE o.search_text <> n.search_text OR o.project <> n.project;
        SELECT array_agg(c) INTO changes FROM (
            SELECT memory_stat_change_of(n, 1) AS c
            FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE n.status = 'active' AND (o.status <> 'active'
                OR o.search_text <> n.search_text OR o.project <> n.project)
            UNION ALL
            SELECT memory_stat_change_of(o, -1)
            FROM old_rows o JOIN new_rows n ON n.id = o.id
            WHERE o.status = 'active' AND (n.status <> 'active'
                OR o.search_text <> n.search_text OR o.project <> n.project)
        ) x;
    END IF;
    IF changes IS NOT NULL THEN
        PERFORM apply_memory_stat_changes(changes);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER memories_stats_insert AFTER INSERT ON memories
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION memories_track_search();
CREATE TRIGGER memories_stats_update AFTER UPDATE ON memories
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION memories_track_search();
CREATE TRIGGER memories_stats_delete AFTER DELETE ON memories
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION memories_track_search();

-- Existing memories, tenant by tenant: the owner is subject to the FORCEd policies (a
-- superuser is not, hence the explicit tenant filter too).
DO $$
DECLARE
    t uuid;
BEGIN
    FOR t IN SELECT id FROM tenants LOOP
        PERFORM set_config('app.tenant_id', t::text, true);
        INSERT INTO memory_postings SELECT (memory_postings_of(m)).*
        FROM memories m WHERE m.tenant_id = t;
        PERFORM apply_memory_stat_changes(array_agg(memory_stat_change_of(m, 1)))
        FROM memories m WHERE m.tenant_id = t AND m.status = 'active'
        HAVING count(*) > 0;
    END LOOP;
    PERFORM set_config('app.tenant_id', '', true);
END $$;

GRANT SELECT, INSERT, UPDATE, DELETE ON memory_postings, memory_lexemes, memory_scopes
    TO team_memory_app;
