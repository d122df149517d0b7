-- Retrieval support (issue 4).
-- seq: insertion order. Memories saved next to each other in one working session (or the
-- turns of one imported conversation) are context for each other; search lends a relevant
-- memory's score to its neighbours in this order (see docs/retrieval.md).
CREATE SEQUENCE memories_seq;
ALTER TABLE memories ADD COLUMN seq bigint NOT NULL DEFAULT nextval('memories_seq');
ALTER SEQUENCE memories_seq OWNED BY memories.seq;

-- Neighbours of a memory in insertion order within its project; also export order.
CREATE INDEX memories_seq_idx ON memories (tenant_id, project, seq);

GRANT USAGE ON SEQUENCE memories_seq TO team_memory_app;
