-- Internal helpers (schema mrl_internal) of 046_hybrid.sql: not part of the API; EXECUTE is granted in 090_privileges.sql.

-- The full-text leg of mrl.hybrid_search: the set's rows (each once, whatever its chunks) that contain words of the
-- query, best first. The query is read by websearch_to_tsquery in the set's text search configuration ("quoted
-- phrases", -excluded, or). A row scores the inverse document frequency (BM25's idf) of each query word it holds,
-- so that a rare word (a name, an error code) outweighs common ones; rows that match the whole query (all words,
-- phrases in order) come first. Rows holding an excluded word are left out.
CREATE OR REPLACE FUNCTION mrl_internal._text_ranks(s mrl.embedding_sets, query_text text, n int, filter jsonb)
RETURNS TABLE (id text, score double precision)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET extra_float_digits = 1 SET TimeZone = 'UTC' SET bytea_output = 'hex'
AS $fn$
DECLARE
    q tsquery := websearch_to_tsquery(s.text_search_config::regconfig, query_text);
    words tsquery[];
    excluded tsquery[];
    total float8;
    cond text;
    src text;
BEGIN
    -- the excluded terms (!'word', or !( phrase )), each a tsquery; then the lexemes of the others, one tsquery each
    SELECT array_agg(DISTINCT substr(m[1], 2)::tsquery) INTO excluded
      FROM regexp_matches(q::text, '(!''(?:[^'']|'''')*''|!\([^()]*\))', 'g') m;
    SELECT array_agg(DISTINCT format('''%s''', m[1])::tsquery) INTO words
      FROM regexp_matches(regexp_replace(q::text, '!''(?:[^'']|'''')*''|!\([^()]*\)', '', 'g'),
                          '''((?:[^'']|'''')*)''', 'g') m;
    IF words IS NULL THEN
        RETURN;
    END IF;
    IF s.words_table IS NULL OR mrl_internal._read_unsafe(s.words_table) THEN
        RAISE EXCEPTION 'embedding set "%" is refused: %', s.slug,
            coalesce(mrl_internal._vectors_problem(s.words_table), 'it has no words table')
            USING ERRCODE = 'insufficient_privilege', HINT = 'Remove what was added to the words table, or recreate the set.';
    END IF;
    SELECT CASE WHEN c.reltuples > 0 THEN c.reltuples END INTO total FROM pg_class c WHERE c.oid = s.words_table;
    IF total IS NULL THEN
        EXECUTE format('SELECT count(*) FROM %s', s.words_table) INTO total;
    END IF;
    cond := mrl_internal._filter_sql(s, filter, 5);
    src := format('%s v', s.words_table);  -- (v: its rows have the vectors' key, id or (id, chunk))
    IF cond IS NOT NULL THEN
        src := format('%s JOIN ONLY %s src ON src.%I = v.id AND %s', src, s.source, s.pk_column, cond);
    END IF;
    RETURN QUERY EXECUTE format(
        'WITH hits AS MATERIALIZED (
              SELECT DISTINCT w.i, v.id FROM unnest($1) WITH ORDINALITY w(q, i)
                JOIN %1$s ON v.tsv OPERATOR(pg_catalog.@@) w.q),
              df AS (SELECT h.i, count(*) AS n FROM hits h GROUP BY h.i),
              scored AS (
              SELECT h.id, sum(ln(1 + (greatest($3, d.n) - d.n + 0.5) / (d.n + 0.5))) AS score
                FROM hits h JOIN df d ON d.i = h.i GROUP BY h.id),
              whole AS (SELECT DISTINCT v.id FROM %1$s
                         WHERE v.id IN (SELECT sc.id FROM scored sc) AND v.tsv OPERATOR(pg_catalog.@@) $2),
              dropped AS (SELECT DISTINCT v.id FROM unnest($4) x(q) JOIN %1$s ON v.tsv OPERATOR(pg_catalog.@@) x.q
                           WHERE v.id IN (SELECT sc.id FROM scored sc))
         SELECT sc.id::text, (sc.score + CASE WHEN sc.id IN (SELECT w.id FROM whole w) THEN 1000 ELSE 0 END)::float8
           FROM scored sc WHERE sc.id NOT IN (SELECT d.id FROM dropped d)
          ORDER BY 2 DESC, 1 LIMIT $6', src)
        USING words, q, total, coalesce(excluded, '{}'), filter, n;
END
$fn$;
