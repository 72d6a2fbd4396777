-- Fine-tuning data: the documents of a set (what its vectors embed) and the datasets generated from them.

CREATE OR REPLACE FUNCTION mrl.set_documents(set_slug text)
RETURNS TABLE (id text, body text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET extra_float_digits = 1 SET TimeZone = 'UTC' SET bytea_output = 'hex'
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
BEGIN
    PERFORM mrl_internal._check_tables(s);
    RETURN QUERY EXECUTE format(
        'SELECT (mrl_src.%1$I)::text, (%2$s)::text FROM ONLY %3$s mrl_src WHERE coalesce((%2$s)::text, '''') <> '''' ORDER BY mrl_src.%1$I',
        s.pk_column, s.text_expr, s.source);
END
$fn$;

CREATE OR REPLACE VIEW mrl.finetune_summary AS
SELECT d.name, d.source ->> 'slug' AS set_slug, d.config, d.created_at,
       count(p.n) FILTER (WHERE p.split = 'train') AS train_pairs,
       count(p.n) FILTER (WHERE p.split = 'validation') AS validation_pairs,
       count(DISTINCT p.doc_id) AS documents
  FROM mrl.finetune_datasets d LEFT JOIN mrl.finetune_pairs p ON p.dataset = d.name
 GROUP BY d.name;

-- Real query-document pairs: the query side from the source's own column or expression (a product's name, an
-- article's headline, a ticket's subject), checked like a set's text expression. Runs as the caller.
CREATE OR REPLACE FUNCTION mrl.set_document_pairs(set_slug text, query_expr text)
RETURNS TABLE (id text, body text, query text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET extra_float_digits = 1 SET TimeZone = 'UTC' SET bytea_output = 'hex'
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
    q text;
BEGIN
    PERFORM mrl_internal._check_tables(s);
    q := (mrl_internal._text_expr(s.source, query_expr)).expr;
    RETURN QUERY EXECUTE format(
        'SELECT (mrl_src.%1$I)::text, (%2$s)::text, (%4$s)::text FROM ONLY %3$s mrl_src '
        'WHERE coalesce((%2$s)::text, '''') <> '''' ORDER BY mrl_src.%1$I',
        s.pk_column, s.text_expr, s.source, q);
END
$fn$;

-- The stored full vectors of some of a set's rows (what hard-negative mining compares; a chunked set's first
-- chunks). Runs as the caller: the
-- vectors table's row-level security shows only rows of a source the caller may read.
CREATE OR REPLACE FUNCTION mrl.set_embeddings(set_slug text, ids text[])
RETURNS TABLE (id text, embedding @vec@.vector)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET extra_float_digits = 1 SET TimeZone = 'UTC' SET bytea_output = 'hex'
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
    key_type text;
BEGIN
    PERFORM mrl_internal._check_tables(s);
    SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) INTO key_type
      FROM pg_catalog.pg_attribute a WHERE a.attrelid = s.vectors_table AND a.attname = 'id';
    -- a chunked set: the vector of each row's first chunk (its beginning, what a model with a short window sees)
    RETURN QUERY EXECUTE format('SELECT v.id::text, v.embedding::@vec@.vector FROM %s v WHERE v.id = ANY ($1::%s[])%s',
                                s.vectors_table, key_type,
                                CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_attribute a
                                                   WHERE a.attrelid = s.vectors_table AND a.attname = 'chunk'
                                                     AND NOT a.attisdropped)
                                     THEN ' AND v.chunk = 0' ELSE '' END)
        USING ids;
END
$fn$;
