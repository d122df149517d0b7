-- Issue 17: the members of a tenant. Every API key belongs to one member (a person, or a
-- service acting as one); personal memories, authorship and review are per member.
-- Applied by `team-memory migrate` as the schema owner, inside one transaction.

-- A registry table like api_keys: RLS-protected from the application role but not FORCEd,
-- because the schema owner administers members across tenants and authentication (before
-- any tenant is known) reads them through authenticate_key, run as the owner.
CREATE TABLE members (
    id         uuid PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);

ALTER TABLE members ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON members USING (tenant_id = current_tenant());

ALTER TABLE api_keys ADD COLUMN member_id uuid REFERENCES members (id);

-- Existing keys: one member each, named after the key, with the key's id as its id (so a
-- memory's recorded author, the key that saved it, names its member too). Two keys of one
-- tenant with the same name become two members, the second and later named with their
-- key's public prefix: merging them could show one person's personal memories to another.
INSERT INTO members (id, tenant_id, name, created_at)
SELECT k.id, k.tenant_id,
       CASE WHEN row_number() OVER same_name = 1 THEN k.name
            ELSE left(k.name, 80) || ' (' || k.prefix || ')' END,
       k.created_at
FROM (SELECT id, tenant_id, created_at, prefix,
             left(coalesce(nullif(btrim(name), ''), 'key'), 100) AS name
      FROM api_keys) k
WINDOW same_name AS (PARTITION BY k.tenant_id, k.name ORDER BY k.created_at, k.id);

UPDATE api_keys SET member_id = id;
ALTER TABLE api_keys ALTER COLUMN member_id SET NOT NULL;
CREATE INDEX api_keys_member_idx ON api_keys (member_id);

-- The key's member comes with its owner. The return type changes, so the function is
-- dropped and created again (with its grants).
DROP FUNCTION authenticate_key(text);
CREATE FUNCTION authenticate_key(p_key_hash text)
    RETURNS TABLE (key_id uuid, tenant_id uuid, tenant_name text, project text,
                   read_only boolean, member_id uuid, member_name text)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
    AS $$
        SELECT k.id, k.tenant_id, t.name, k.project, k.read_only, m.id, m.name
        FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
        JOIN members m ON m.id = k.member_id
        WHERE k.key_hash = p_key_hash AND k.revoked_at IS NULL
          AND (k.expires_at IS NULL OR k.expires_at > now())
    $$;
REVOKE ALL ON FUNCTION authenticate_key(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION authenticate_key(text) TO team_memory_app;

GRANT SELECT ON members TO team_memory_app;
