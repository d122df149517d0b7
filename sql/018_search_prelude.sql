-- Issue 16: a search's small statements in one round trip. Applied by `team-memory migrate` as
-- the schema owner, inside one transaction. Design: docs/retrieval.md ("The method").
--
-- Before the hybrid statement a search needs: the active embedding model (read after locking
-- memories, sql/016), the acknowledged memories that have no vector yet (read-your-writes),
-- and the query's words with the scope's BM25 statistics (which also set ef_search and custom
-- plans for the rest of the transaction). Each was a statement of its own: three round trips,
-- each planned and run by itself. These functions run them in order in one. Both run with the
-- caller's rights, in the caller's scope (set with the transaction's BEGIN: pool.tenant_tx):
-- Row-Level Security applies to every table they read, as to the statements they replace.

-- The query's words with their document frequencies in the scope ``p_projects``, the
-- scope's totals on every row (one row with a NULL lexeme when the query has no word); also
-- prepares the transaction for the hybrid statement: HNSW ef_search scaled by the scope's
-- share of the table (filters keep about that share of what the index returns, at least
-- twice ``p_vector_candidates``), and custom plans: with its limits and optional filters as
-- unknown parameters, a generic plan sorts every memory of the project to find a candidate's
-- two neighbours.
CREATE FUNCTION search_terms(p_query text, p_projects text[], p_vector_candidates integer)
    RETURNS TABLE (docs bigint, lexemes bigint, lexeme text, df bigint)
    LANGUAGE plpgsql VOLATILE
    AS $$
    DECLARE
        scope_docs bigint;
        scope_lexemes bigint;
        table_rows bigint;
    BEGIN
        SELECT coalesce(sum(s.docs), 0), coalesce(sum(s.lexemes), 0)
          INTO scope_docs, scope_lexemes
          FROM memory_scopes s WHERE s.project = ANY(p_projects);
        SELECT greatest(c.reltuples, 0)::bigint INTO table_rows
          FROM pg_class c WHERE c.oid = 'memories'::regclass;
        PERFORM set_config('plan_cache_mode', 'force_custom_plan', true),
                set_config('hnsw.ef_search', least(1000, greatest(40, ceil(
                    2.0 * p_vector_candidates * greatest(table_rows, scope_docs, 1)
                    / greatest(scope_docs, 1))))::int::text, true);
        RETURN QUERY
            SELECT scope_docs, scope_lexemes, t.lexeme, t.df
            FROM (SELECT 1) one LEFT JOIN LATERAL (
                SELECT q.lexeme, coalesce(sum(l.docs), 0)::bigint AS df
                FROM unnest(to_tsvector('english', p_query)) AS q
                LEFT JOIN memory_lexemes l ON l.lexeme = q.lexeme AND l.project = ANY(p_projects)
                GROUP BY q.lexeme
            ) t ON true;
    END
    $$;

-- Everything a search reads before its hybrid statement, in one row: the active model (and
-- the one a re-embed builds), then the newest ``p_pending_limit`` pending memories without a
-- vector that pass the search's filters, then the query's words (``search_terms``, as
-- arrays). Outside a scoped transaction it reads no memory (an unset tenant matches none).
CREATE FUNCTION search_prelude(
    p_query text, p_projects text[], p_category text, p_tags text[],
    p_since timestamptz, p_until timestamptz, p_pending_limit integer,
    p_vector_candidates integer)
    RETURNS TABLE (provider text, name text, dim integer,
                   next_provider text, next_name text, next_dim integer,
                   pending_ids uuid[], pending_contents text[],
                   docs bigint, lexemes bigint, terms text[], dfs bigint[])
    LANGUAGE plpgsql VOLATILE
    AS $$
    BEGIN
        SELECT a.provider, a.name, a.dim, a.next_provider, a.next_name, a.next_dim
          INTO provider, name, dim, next_provider, next_name, next_dim
          FROM active_embedding_model(false) a;
        SELECT coalesce(array_agg(p.id ORDER BY p.created_at DESC), '{}'),
               coalesce(array_agg(p.content ORDER BY p.created_at DESC), '{}')
          INTO pending_ids, pending_contents
          FROM (SELECT m.id, m.content, m.created_at FROM memories m
                WHERE m.embedding IS NULL AND m.status = 'pending'
                  AND m.project = ANY(p_projects)
                  AND (p_category IS NULL OR m.category = p_category)
                  AND (p_tags IS NULL OR m.tags && p_tags)
                  AND (p_since IS NULL OR m.occurred_at >= p_since)
                  AND (p_until IS NULL OR m.occurred_at < p_until)
                ORDER BY m.created_at DESC
                LIMIT p_pending_limit) p;
        SELECT max(t.docs), max(t.lexemes),
               coalesce(array_agg(t.lexeme) FILTER (WHERE t.lexeme IS NOT NULL), '{}'),
               coalesce(array_agg(t.df) FILTER (WHERE t.lexeme IS NOT NULL), '{}')
          INTO docs, lexemes, terms, dfs
          FROM search_terms(p_query, p_projects, p_vector_candidates) t;
        RETURN NEXT;
    END
    $$;

REVOKE ALL ON FUNCTION search_terms(text, text[], integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION search_prelude(text, text[], text, text[], timestamptz, timestamptz,
                                      integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION search_terms(text, text[], integer) TO team_memory_app;
GRANT EXECUTE ON FUNCTION search_prelude(text, text[], text, text[], timestamptz, timestamptz,
                                         integer, integer) TO team_memory_app;
