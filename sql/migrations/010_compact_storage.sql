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
-- The installer reads each vectors table here, so a table that could run its owner's code while it is read (index
-- or statistics expressions calling anything but built-in or pgvector code, triggers, rules, policies pgmrl did not
-- create, inheriting tables) is left as it is, with a warning: the worker refuses such a set anyway. So is a set
-- whose column cannot be dropped (e.g. a view uses it): one set never stops the upgrade of the others.
DO $words$
DECLARE
    e record;
    chunked bool;
    wt text;
    vec oid := (SELECT x.oid FROM pg_catalog.pg_extension x WHERE x.extname = 'vector');
BEGIN
    FOR e IN SELECT s.id, s.slug, s.vectors_table, s.pk_type, c.relowner
               FROM mrl.embedding_sets s JOIN pg_catalog.pg_class c ON c.oid = s.vectors_table
              WHERE EXISTS (SELECT FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tsv' AND NOT a.attisdropped)
              ORDER BY s.id LOOP
        -- (nothing can be added to the table between the check and the read)
        EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', e.vectors_table);
        IF EXISTS (SELECT FROM pg_catalog.pg_depend d
                    WHERE ((d.classid = 'pg_catalog.pg_class'::regclass
                            AND d.objid IN (SELECT i.indexrelid FROM pg_catalog.pg_index i WHERE i.indrelid = e.vectors_table))
                           OR (d.classid = 'pg_catalog.pg_statistic_ext'::regclass
                               AND d.objid IN (SELECT x.oid FROM pg_catalog.pg_statistic_ext x WHERE x.stxrelid = e.vectors_table)))
                      AND d.refclassid IN ('pg_catalog.pg_proc'::regclass, 'pg_catalog.pg_operator'::regclass,
                                           'pg_catalog.pg_type'::regclass, 'pg_catalog.pg_opclass'::regclass,
                                           'pg_catalog.pg_opfamily'::regclass, 'pg_catalog.pg_collation'::regclass)
                      AND d.refobjid >= 16384
                      AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend x WHERE x.classid = d.refclassid AND x.objid = d.refobjid
                                                                      AND x.deptype = 'e' AND x.refobjid = vec))
           OR EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgrelid = e.vectors_table AND NOT t.tgisinternal)
           OR EXISTS (SELECT FROM pg_catalog.pg_rewrite r WHERE r.ev_class = e.vectors_table)
           OR EXISTS (SELECT FROM pg_catalog.pg_inherits h WHERE h.inhparent = e.vectors_table)
           OR EXISTS (SELECT FROM pg_catalog.pg_policy p WHERE p.polrelid = e.vectors_table AND p.polname NOT IN
                        ('mrl_source_readers', 'mrl_worker', 'mrl_sync_writers', 'mrl_sync_updaters', 'mrl_sync_deleters')) THEN
            RAISE WARNING 'pgmrl: the full-text words of set "%" stay in %: it carries objects pgmrl did not create', e.slug, e.vectors_table
                USING HINT = 'Remove them and recreate the set (its hybrid search is refused until then).';
            CONTINUE;
        END IF;
        BEGIN
            chunked := EXISTS (SELECT FROM pg_catalog.pg_attribute a WHERE a.attrelid = e.vectors_table AND a.attname = 'chunk' AND NOT a.attisdropped);
            wt := format('%I.%I', 'mrl_words', e.slug);
            EXECUTE format('CREATE TABLE %s (id %s NOT NULL,%s tsv tsvector NOT NULL, PRIMARY KEY (id%s),
                                             FOREIGN KEY (id%s) REFERENCES %s ON DELETE CASCADE ON UPDATE CASCADE)',
                           wt, e.pk_type, CASE WHEN chunked THEN ' chunk int NOT NULL,' ELSE '' END,
                           CASE WHEN chunked THEN ', chunk' ELSE '' END, CASE WHEN chunked THEN ', chunk' ELSE '' END,
                           e.vectors_table);
            EXECUTE format('INSERT INTO %s SELECT id,%s tsv FROM %s WHERE tsv IS NOT NULL', wt,
                           CASE WHEN chunked THEN ' chunk,' ELSE '' END, e.vectors_table);
            -- rows whose words were never written (stored around the worker) and are not queued already (009
            -- queues every stored key when it adds the column): queued once, for their words only
            EXECUTE format('INSERT INTO mrl.queue_intake (set_id, ids)
                            SELECT $1, array_agg(x.k) FROM (SELECT y.k, (row_number() OVER (ORDER BY y.k) - 1) / 5000 AS g
                                                              FROM (SELECT DISTINCT v.id::text AS k FROM %s v WHERE v.tsv IS NULL) y
                                                             WHERE NOT EXISTS (SELECT FROM mrl.queue q WHERE q.set_id = $1 AND q.id = y.k)
                                                               AND NOT EXISTS (SELECT FROM mrl.queue_intake i WHERE i.set_id = $1 AND y.k = ANY (i.ids))) x
                             GROUP BY x.g', e.vectors_table) USING e.id;
            EXECUTE format('DROP INDEX IF EXISTS mrl_data.%I', e.slug || '_fts');
            EXECUTE format('CREATE INDEX %I ON %s USING gin (tsv)', e.slug || '_fts', wt);
            EXECUTE format('ALTER TABLE %s DROP COLUMN tsv', e.vectors_table);
            EXECUTE format('COMMENT ON TABLE %s IS %L', wt, format('pgmrl full-text words of embedding set %s', e.slug));
            EXECUTE format('ALTER TABLE %s OWNER TO %I', wt, pg_catalog.pg_get_userbyid(e.relowner));
            UPDATE mrl.embedding_sets SET words_table = wt::regclass WHERE id = e.id;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'pgmrl: the full-text words of set "%" stay in %: %', e.slug, e.vectors_table, SQLERRM
                USING HINT = 'Remove what prevents it (e.g. a view on the column) and recreate the set.';
        END;
    END LOOP;
END
$words$;
