-- What a DBA looks at: how far each set is from being fully embedded.

CREATE OR REPLACE VIEW mrl.queue_status AS
SELECT e.slug,
       count(q.qid) FILTER (WHERE NOT q.dead)                  AS queued,
       count(q.qid) FILTER (WHERE q.dead)                      AS failed,
       clock_timestamp() - min(q.queued_at) FILTER (WHERE NOT q.dead) AS oldest_queued_age
  FROM mrl.embedding_sets e
  LEFT JOIN mrl.queue q ON q.set_id = e.id
 GROUP BY e.slug;

CREATE OR REPLACE FUNCTION mrl.set_status(set_slug text)
RETURNS TABLE (slug text, config text, coarse_method text, truncate_dim int, rows bigint, embedded bigint,
               queued bigint, failed bigint, oldest_queued_age interval, rotation_fitted_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl._set(set_slug);
    n_rows bigint;
    n_vec bigint;
BEGIN
    IF EXISTS (SELECT FROM pg_class WHERE oid = s.source) THEN
        EXECUTE format('SELECT count(*) FROM %s', s.source) INTO n_rows;
    END IF;
    EXECUTE format('SELECT count(*) FROM %s', s.vectors_table) INTO n_vec;
    RETURN QUERY
    SELECT s.slug, s.config, s.coarse_method, s.truncate_dim, n_rows, n_vec,
           qs.queued, qs.failed, qs.oldest_queued_age, s.rotation_fitted_at
      FROM mrl.queue_status qs WHERE qs.slug = s.slug;
END
$fn$;
