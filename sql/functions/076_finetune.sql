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
