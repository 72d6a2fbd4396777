-- What a DBA looks at: how far each set is from being fully embedded.

-- Queued: rows in mrl.queue plus keys written but not yet expanded from mrl.queue_intake.
CREATE OR REPLACE VIEW mrl.queue_status WITH (security_barrier) AS
SELECT e.slug,
       (SELECT count(*) FROM mrl.queue q WHERE q.set_id = e.id AND NOT q.dead)
         + (SELECT coalesce(sum(cardinality(i.ids)), 0) FROM mrl.queue_intake i WHERE i.set_id = e.id)::bigint AS queued,
       (SELECT count(*) FROM mrl.queue q WHERE q.set_id = e.id AND q.dead) AS failed,
       clock_timestamp() - least((SELECT min(q.queued_at) FROM mrl.queue q WHERE q.set_id = e.id AND NOT q.dead),
                                 (SELECT min(i.queued_at) FROM mrl.queue_intake i WHERE i.set_id = e.id)) AS oldest_queued_age
  FROM mrl.embedding_sets e
 WHERE mrl_internal._may_see(e.source, e.owner);

CREATE OR REPLACE FUNCTION mrl.set_status(set_slug text)
RETURNS TABLE (slug text, config text, coarse_method text, truncate_dim int, rows bigint, embedded bigint,
               queued bigint, failed bigint, oldest_queued_age interval, rotation_fitted_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
    n_rows bigint;
    n_vec bigint;
BEGIN
    -- counts only tables that run nobody's code (a source's row-level security, a changed vectors table)
    IF EXISTS (SELECT FROM pg_class WHERE oid = s.source) AND mrl_internal._source_problem(s.source) IS NULL THEN
        EXECUTE format('SELECT count(*) FROM ONLY %s', s.source) INTO n_rows;
    END IF;
    IF mrl_internal._vectors_problem(s.vectors_table) IS NULL THEN
        EXECUTE format('SELECT count(%s) FROM %s', CASE WHEN s.chunking IS NULL THEN '*' ELSE 'DISTINCT id' END,
                       s.vectors_table) INTO n_vec;  -- rows embedded (of a chunked set: rows with chunks)
    END IF;
    RETURN QUERY
    SELECT s.slug, s.config, s.coarse_method, s.truncate_dim, n_rows, n_vec,
           qs.queued, qs.failed, qs.oldest_queued_age, s.rotation_fitted_at
      FROM mrl.queue_status qs WHERE qs.slug = s.slug;
END
$fn$;
