-- Held merges and supersedes (sql/008) in the members' review queue: decided by the authors
-- of the memories the change would rewrite or retire. Applied by `team-memory migrate` as the
-- schema owner, inside one transaction. Design: docs/security.md ("Merge review").

-- The members who approved a pending change so far: it is applied once every author of a
-- memory it changes is among them (mcp_server/merge_review.py); any of them may reject it.
ALTER TABLE memory_proposals ADD COLUMN approved_by uuid[] NOT NULL DEFAULT '{}';
GRANT UPDATE (approved_by) ON memory_proposals TO team_memory_app;

-- A merge or supersede names a target and its sources: a member reads it only when every
-- memory it names is visible to them (the subquery is itself under the memories policies:
-- tenant, project-bound key, personal memories). RESTRICTIVE: it narrows sql/017's
-- member_scope (which asks for the target alone), never widens it. No member set (the
-- worker, operators' commands): every row of the tenant, as before.
CREATE POLICY named_memories ON memory_proposals AS RESTRICTIVE
    USING (current_member() IS NULL
           OR kind NOT IN ('merge', 'supersede')
           OR NOT EXISTS (SELECT 1 FROM unnest(memory_proposals.source_ids) AS s (id)
                          WHERE NOT EXISTS (SELECT 1 FROM memories m WHERE m.id = s.id)));
