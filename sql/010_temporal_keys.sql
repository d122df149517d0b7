-- Temporal payload encryption (issue 13): the keys that keep memory text out of Temporal.
-- Applied by `team-memory migrate` as the schema owner, inside one transaction.
-- docs/security.md ("Temporal") explains the key hierarchy, rotation and backups.

-- A tenant's keyring: random 256-bit data keys, each wrapped (AES-256-GCM) by the
-- key-encryption key (KEK) every Team Memory process holds; kek_id names that KEK (a
-- fingerprint, never the key). The newest key wraps new workflow keys and encrypts the
-- payloads of tenant-wide workflows (consolidation); older keys decode until retired.
CREATE TABLE temporal_tenant_keys (
    id         uuid PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    kek_id     text NOT NULL,
    wrapped    bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX temporal_tenant_keys_newest_idx ON temporal_tenant_keys (tenant_id, created_at DESC);

-- One key per workflow that carries memory or hook text (ingest/<tenant>/..., one per memory;
-- capture/<tenant>/..., one per Claude Code session), wrapped by one of the tenant's keys.
-- Purge deletes it in its transaction: the workflow's history is unreadable from then on,
-- whether or not Temporal has deleted it yet (crypto-shredding).
CREATE TABLE temporal_workflow_keys (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    workflow_id text NOT NULL,
    wrapped_by  uuid NOT NULL REFERENCES temporal_tenant_keys (id),
    wrapped     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, workflow_id)
);
CREATE INDEX temporal_workflow_keys_wrapping_idx ON temporal_workflow_keys (wrapped_by);

ALTER TABLE temporal_tenant_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE temporal_tenant_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON temporal_tenant_keys
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());

ALTER TABLE temporal_workflow_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE temporal_workflow_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON temporal_workflow_keys
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());

-- Keys are created by the processes that start workflows, deleted by purge (workflow keys)
-- and by `team-memory temporal-key retire` (tenant keys), re-wrapped by `temporal-key rotate`
-- (workflow keys, under the new tenant key) and `temporal-key rotate-kek` (tenant keys).
GRANT SELECT, INSERT, UPDATE, DELETE ON temporal_tenant_keys TO team_memory_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON temporal_workflow_keys TO team_memory_app;

-- The cut-over: payloads written from now on are encrypted. Unencrypted input is accepted only
-- from workflows started before this instant (histories written before the upgrade).
INSERT INTO schema_info (key, value)
VALUES ('temporal_plaintext_until',
        to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'))
ON CONFLICT (key) DO NOTHING;
