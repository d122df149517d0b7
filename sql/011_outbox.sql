-- Issue 15: the transactional outbox of the save path.
-- Applied by `team-memory migrate` as the schema owner, inside one transaction.
--
-- A save commits its pending memory, one row here and its audit entry in one transaction and
-- answers; the worker's relay (team_memory_core/outbox.py) starts the memory's IngestMemory
-- workflow and deletes the row. So a save never waits on Temporal: while Temporal is down,
-- saves are acknowledged and the rows wait here.
--
-- The row holds no text: the workflow's input is read from the pending memory when the relay
-- starts it (purge erases that text and deletes this row in its own transaction). redactions
-- names the kinds of secrets removed before storage, which the memory row does not keep.
CREATE TABLE ingest_outbox (
    memory_id    uuid PRIMARY KEY REFERENCES memories (id) ON DELETE CASCADE,
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    -- The task queue the save's server was configured with: the workflow starts there, and
    -- only a relay serving that queue takes the row.
    task_queue   text NOT NULL,
    redactions   text[] NOT NULL DEFAULT '{}',
    -- The save's trace (W3C traceparent/tracestate), so its workflow's spans join it.
    trace_context jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- Not before then: a failed start backs off (attempts, last_error say why).
    available_at timestamptz NOT NULL DEFAULT now(),
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text
);
CREATE INDEX ingest_outbox_due_idx ON ingest_outbox (task_queue, available_at);
CREATE INDEX ingest_outbox_tenant_idx ON ingest_outbox (tenant_id, task_queue, available_at);

-- The application role sees its transaction's tenant only. The schema owner reads across
-- tenants by an explicit policy (not by an exemption from FORCE): the relay finds which
-- tenants have rows waiting through the SECURITY DEFINER function below, which runs as the
-- owner, and `team-memory status` counts the backlog as the owner.
ALTER TABLE ingest_outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE ingest_outbox FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ingest_outbox
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());
CREATE POLICY owner_reads_all ON ingest_outbox FOR SELECT TO CURRENT_USER USING (true);

GRANT SELECT, INSERT, UPDATE, DELETE ON ingest_outbox TO team_memory_app;

-- Wakes the relays of the row's task queue when the save commits (NOTIFY is delivered at
-- commit, and not at all on rollback). A relay also sweeps periodically: a notification missed
-- while its connection was down strands nothing.
CREATE FUNCTION notify_ingest_outbox() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
    BEGIN
        PERFORM pg_notify('team_memory_outbox', NEW.task_queue);
        RETURN NULL;
    END
    $$;

CREATE TRIGGER ingest_outbox_notify AFTER INSERT ON ingest_outbox
    FOR EACH ROW EXECUTE FUNCTION notify_ingest_outbox();

-- The tenants with rows for a task queue, and when the first of them is due: the relay's only
-- cross-tenant read. It returns names and times, never memories; the relay then claims each
-- tenant's rows in that tenant's transaction, under Row-Level Security.
CREATE FUNCTION ingest_outbox_tenants(p_task_queue text)
    RETURNS TABLE (tenant_id uuid, tenant_name text, due_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
    AS $$
        SELECT o.tenant_id, t.name, min(o.available_at)
        FROM ingest_outbox o JOIN tenants t ON t.id = o.tenant_id
        WHERE o.task_queue = p_task_queue
        GROUP BY o.tenant_id, t.name
        ORDER BY min(o.available_at)
    $$;

REVOKE ALL ON FUNCTION ingest_outbox_tenants(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ingest_outbox_tenants(text) TO team_memory_app;
