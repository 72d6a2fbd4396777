-- Run once. Compact storage for the re-rank: stage 2 of a two-stage search reads `coarse_k` rows of the vectors
-- table at random, so every byte of a row is read again whenever memory is short.
--   full_type             how a set keeps its full vectors: 'vector' (4 bytes a dimension, sets created before this
--                         migration keep it) or 'halfvec' (2 bytes; the default of new sets: half the heap, cosine
--                         ranking barely changes; scripts/bench_scale.py)
--   tuned_agreement_low   mrl.tune's lower confidence bound on the agreement it chose (the margin it tuned for)
ALTER TABLE mrl.embedding_sets ADD COLUMN full_type text NOT NULL DEFAULT 'vector'
    CONSTRAINT embedding_sets_full_type_check CHECK (full_type IN ('vector', 'halfvec'));
ALTER TABLE mrl.embedding_sets ALTER COLUMN full_type SET DEFAULT 'halfvec';
ALTER TABLE mrl.embedding_sets ADD COLUMN tuned_agreement_low double precision;

