-- Run once. Compact storage for the re-rank: stage 2 of a two-stage search reads `coarse_k` rows of the vectors
-- table at random (and stage 1 reads each candidate's row too), so every byte of a row is read again whenever memory
-- is short.
--   full_type             how a set keeps its full vectors: 'vector' (4 bytes a dimension, sets created before this
--                         migration keep it) or 'halfvec' (2 bytes; the default of new sets: half the heap, cosine
--                         ranking barely changes; scripts/bench_scale.py)
--   words_table           the full-text words of the set's rows (or chunks), for mrl.hybrid_search: in their own
--                         table in schema mrl_words, no longer beside the vectors, where a row's words (about 470 bytes
--                         for a Debian description) stayed in the row below the 2 kB toast threshold and took a third
--                         of each page
--   tuned_agreement_low   mrl.tune's lower confidence bound on the agreement it chose (the margin it tuned for)
CREATE SCHEMA IF NOT EXISTS mrl_words;
COMMENT ON SCHEMA mrl_words IS 'pgmrl: per-set full-text words (one table per embedding set, beside its vectors in mrl_data)';
ALTER TABLE mrl.embedding_sets ADD COLUMN full_type text NOT NULL DEFAULT 'vector'
    CONSTRAINT embedding_sets_full_type_check CHECK (full_type IN ('vector', 'halfvec'));
ALTER TABLE mrl.embedding_sets ALTER COLUMN full_type SET DEFAULT 'halfvec';
ALTER TABLE mrl.embedding_sets ADD COLUMN words_table regclass;
ALTER TABLE mrl.embedding_sets ADD COLUMN tuned_agreement_low double precision;

-- Existing sets: their words move to a words table (same owner as the vectors; its row-level security and the
-- worker's grants are applied by the install's upgrade step), and the vectors lose the column. The space of the
-- dropped column is given back when the table is next rewritten (mrl.compact_embedding_set, or a refit).
DO $words$
DECLARE
    e record;
    chunked bool;
    wt text;
BEGIN
    FOR e IN SELECT s.id, s.slug, s.vectors_table, s.pk_type, c.relowner
               FROM mrl.embedding_sets s JOIN pg_catalog.pg_class c ON c.oid = s.vectors_table
              WHERE EXISTS (SELECT FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tsv' AND NOT a.attisdropped)
              ORDER BY s.id LOOP
        chunked := EXISTS (SELECT FROM pg_catalog.pg_attribute a WHERE a.attrelid = e.vectors_table AND a.attname = 'chunk' AND NOT a.attisdropped);
        wt := format('%I.%I', 'mrl_words', e.slug);
        EXECUTE format('CREATE TABLE %s (id %s NOT NULL,%s tsv tsvector NOT NULL, PRIMARY KEY (id%s),
                                         FOREIGN KEY (id%s) REFERENCES %s ON DELETE CASCADE ON UPDATE CASCADE)',
                       wt, e.pk_type, CASE WHEN chunked THEN ' chunk int NOT NULL,' ELSE '' END,
                       CASE WHEN chunked THEN ', chunk' ELSE '' END, CASE WHEN chunked THEN ', chunk' ELSE '' END,
                       e.vectors_table);
        EXECUTE format('INSERT INTO %s SELECT id,%s tsv FROM %s WHERE tsv IS NOT NULL', wt,
                       CASE WHEN chunked THEN ' chunk,' ELSE '' END, e.vectors_table);
        EXECUTE format('DROP INDEX IF EXISTS mrl_data.%I', e.slug || '_fts');
        EXECUTE format('CREATE INDEX %I ON %s USING gin (tsv)', e.slug || '_fts', wt);
        EXECUTE format('ALTER TABLE %s DROP COLUMN tsv', e.vectors_table);
        EXECUTE format('COMMENT ON TABLE %s IS %L', wt, format('pgmrl full-text words of embedding set %s', e.slug));
        EXECUTE format('ALTER TABLE %s OWNER TO %I', wt, pg_catalog.pg_get_userbyid(e.relowner));
        UPDATE mrl.embedding_sets SET words_table = wt::regclass WHERE id = e.id;
    END LOOP;
END
$words$;
