-- Run once. Long texts cut into chunks (each embedded on its own), and a full-text leg for hybrid search.
--   chunking            NULL: one vector per row (its beginning, as before); else how texts are cut, e.g.
--                       {"method": "tokens", "size": 256, "overlap": 32} or {"method": "paragraphs", ...}
--   text_search_config  the text search configuration of the set's tsvector (mrl.hybrid_search)
ALTER TABLE mrl.embedding_sets ADD COLUMN chunking jsonb;
ALTER TABLE mrl.embedding_sets ADD COLUMN text_search_config text NOT NULL DEFAULT 'english';

-- Existing sets gain the tsvector of each row's text (GIN-indexed). The worker fills it for rows already embedded:
-- every stored key is queued once (an unchanged text is not embedded again, only its tsvector written).
DO $fts$
DECLARE
    e record;
BEGIN
    FOR e IN SELECT s.id, s.slug, s.vectors_table FROM mrl.embedding_sets s
               JOIN pg_catalog.pg_class c ON c.oid = s.vectors_table LOOP
        EXECUTE format('ALTER TABLE %s ADD COLUMN IF NOT EXISTS tsv tsvector', e.vectors_table);
        -- rows grow past the toast threshold: their words go out of line, never the vectors
        EXECUTE format('ALTER TABLE %s ALTER COLUMN embedding SET STORAGE MAIN, ALTER COLUMN coarse SET STORAGE MAIN', e.vectors_table);
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING gin (tsv)', e.slug || '_fts', e.vectors_table);
        EXECUTE format('INSERT INTO mrl.queue_intake (set_id, ids)
                        SELECT $1, array_agg(x.id::text) FROM (SELECT id, (row_number() OVER () - 1) / 5000 AS g FROM %s) x
                         GROUP BY x.g', e.vectors_table) USING e.id;
    END LOOP;
END
$fts$;
