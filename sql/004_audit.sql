-- Audit trail and purge (issue 5).
-- Applied by `team-memory migrate` as the schema owner, inside one transaction.

-- Append-only record of every write, key change and authentication failure. It holds ids,
-- reasons and outcomes, never memory content, so a purge never needs to touch it.
-- tenant_id is NULL only for authentication failures of unknown keys (no tenant is known).
CREATE TABLE audit_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  uuid REFERENCES tenants (id),
    key_id     uuid,
    actor      text NOT NULL,
    action     text NOT NULL,
    target     text,
    outcome    text NOT NULL CHECK (outcome IN ('ok', 'denied', 'rejected', 'failed')),
    detail     jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_tenant_idx ON audit_log (tenant_id, id DESC);

ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_log
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());
-- Unscoped rows (failed authentication with an unknown key) belong to the schema owner
-- alone: the function below writes them, `team-memory audit --unscoped` reads them.
CREATE POLICY owner_unscoped ON audit_log TO CURRENT_USER
    USING (tenant_id IS NULL) WITH CHECK (tenant_id IS NULL);

-- Append-only even for the owner's everyday sessions (a deliberate DROP TRIGGER is visible).
CREATE FUNCTION audit_log_is_append_only() RETURNS trigger
    LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();

-- A failed authentication, recorded before any tenant is known. Runs as the owner: a revoked
-- key's attempt goes to its tenant's log, an unknown key's to the owner-only unscoped rows.
-- Only the key's public prefix is stored, never the secret or its hash.
CREATE FUNCTION audit_auth_failure(p_key_hash text, p_prefix text, p_transport text)
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
                                   ELSE 'revoked key' END,
                    'prefix', left(p_prefix, 8),
                    'transport', left(p_transport, 16)));
        PERFORM set_config('app.tenant_id', coalesce(caller_tenant, ''), true);
    END
    $$;

-- Purge: the row stays (ids referenced by history and other memories stay valid) but its
-- content, tags, source and embedding are erased; purged_at marks it unrecoverable.
ALTER TABLE memories ADD COLUMN purged_at timestamptz;

-- History is append-only for the application role, except through this one erasure: the
-- text fields of the events of the given memories (in the caller's tenant only) are cleared.
CREATE FUNCTION purge_event_text(p_memory_ids uuid[]) RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public
    AS $$
    DECLARE
        erased integer;
    BEGIN
        IF current_tenant() IS NULL THEN
            RAISE EXCEPTION 'purge_event_text needs app.tenant_id';
        END IF;
        UPDATE memory_events
           SET before_text = NULL, after_text = NULL, reason = NULL, detail = '{}'
         WHERE tenant_id = current_tenant()
           AND (memory_id = ANY (p_memory_ids) OR related_id = ANY (p_memory_ids));
        GET DIAGNOSTICS erased = ROW_COUNT;
        RETURN erased;
    END
    $$;

GRANT SELECT, INSERT ON audit_log TO team_memory_app;
REVOKE ALL ON FUNCTION audit_auth_failure(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_auth_failure(text, text, text) TO team_memory_app;
REVOKE ALL ON FUNCTION purge_event_text(uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION purge_event_text(uuid[]) TO team_memory_app;
