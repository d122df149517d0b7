-- Capture from Claude Code hooks: per-session and per-tenant-day token accounting for the
-- distillation of hook events into observations, and the event keys already distilled (so a
-- replayed or re-sent event is never distilled twice, even after its session workflow ended).

CREATE TABLE capture_sessions (
    tenant_id        uuid NOT NULL REFERENCES tenants (id),
    session_id       text NOT NULL,
    project          text NOT NULL,
    events_received  integer NOT NULL DEFAULT 0,
    events_distilled integer NOT NULL DEFAULT 0,
    events_skipped   integer NOT NULL DEFAULT 0,
    observations     integer NOT NULL DEFAULT 0,
    input_tokens     integer NOT NULL DEFAULT 0,
    output_tokens    integer NOT NULL DEFAULT 0,
    last_skip_reason text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, session_id)
);

CREATE TABLE capture_usage_daily (
    tenant_id     uuid NOT NULL REFERENCES tenants (id),
    day           date NOT NULL,
    calls         integer NOT NULL DEFAULT 0,
    input_tokens  bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day)
);

CREATE TABLE capture_events (
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    session_id  text NOT NULL,
    event_key   text NOT NULL,
    outcome     text NOT NULL CHECK (outcome IN ('distilled', 'skipped')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, session_id, event_key)
);

ALTER TABLE capture_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE capture_sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON capture_sessions
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());

ALTER TABLE capture_usage_daily ENABLE ROW LEVEL SECURITY;
ALTER TABLE capture_usage_daily FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON capture_usage_daily
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());

ALTER TABLE capture_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE capture_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON capture_events
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());

GRANT SELECT, INSERT, UPDATE ON capture_sessions, capture_usage_daily TO team_memory_app;
GRANT SELECT, INSERT ON capture_events TO team_memory_app;
