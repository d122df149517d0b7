-- Cheaper ingestion commits (docs/benchmarks.md, issue 16).
--
-- Keep a memory's vector in its row. A row of a 384-dimension vector (1.5 KB) with its text
-- and search_text is just over PostgreSQL's default TOAST target (about 2 KB), so the vector
-- (storage external) was moved out of line: every exact scan over vectors (the dedupe
-- candidates of each ingestion, consolidation's neighbourhoods, small projects' searches)
-- read each vector from the TOAST table, about 4x the CPU of reading it in place. Rows up to
-- 4 KB now stay whole; longer texts are still moved out first (they are larger than the
-- vector), larger vectors as before. Rows written earlier keep their out-of-line vector until
-- they are next updated.
ALTER TABLE memories SET (toast_tuple_target = 4080);

-- No query can use it: under Row-Level Security `tsvector @@ tsquery` (not leakproof) never
-- becomes an index condition, which is why keyword search reads memory_postings
-- (docs/retrieval.md). Every new row version paid for its upkeep.
DROP INDEX memories_search_text_idx;
