-- Search defaults chosen per set (mrl.tune, mrl.configure_search) and the binary coarse stage.
ALTER TABLE mrl.embedding_sets ADD COLUMN default_ef_search int CHECK (default_ef_search > 0);
ALTER TABLE mrl.embedding_sets ADD COLUMN binary_coarse_k int NOT NULL DEFAULT 400 CHECK (binary_coarse_k > 0);
ALTER TABLE mrl.embedding_sets ADD COLUMN default_strategy text NOT NULL DEFAULT 'two_stage'
    CHECK (default_strategy IN ('two_stage', 'binary_two_stage', 'hnsw', 'coarse', 'exact'));
ALTER TABLE mrl.embedding_sets ADD COLUMN tuned_at timestamptz;
ALTER TABLE mrl.embedding_sets ADD COLUMN tuned_agreement double precision;
-- The searches gain a filter and a per-set default strategy: the old signatures go, sql/functions re-creates them.
DROP FUNCTION IF EXISTS mrl.two_stage_search(text, @vec@.vector, int, int, int);
DROP FUNCTION IF EXISTS mrl.two_stage_search(text, text, int, int, int);
DROP FUNCTION IF EXISTS mrl.search(text, text, int, text, int, int);
DROP FUNCTION IF EXISTS mrl.search(text, @vec@.vector, int, text, int, int);
