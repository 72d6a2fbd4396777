-- Internal helpers (schema mrl_internal) of 045_tuning.sql: not part of the API; EXECUTE is granted in 090_privileges.sql.

CREATE OR REPLACE FUNCTION mrl_internal._sample_queries(s mrl.embedding_sets, sample int, noise double precision)
RETURNS @vec@.vector[]
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    out @vec@.vector[];
BEGIN
    PERFORM mrl_internal._check_tables(s);
    IF sample IS NULL OR sample < 1 OR sample > 100000 THEN
        RAISE EXCEPTION 'sample must be between 1 and 100000, got %', coalesce(sample::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF noise IS NULL OR noise < 0 OR noise > 10 THEN
        RAISE EXCEPTION 'noise must be between 0 and 10, got %', coalesce(noise::text, 'NULL') USING ERRCODE = 'invalid_parameter_value',
              HINT = '1.2 (default) puts a query about as far from its document (cosine ~0.64) as the real short-description queries of the Debian corpus are; 0 uses stored vectors as they are.';
    END IF;
    EXECUTE format(
        'SELECT array_agg(@vec@.l2_normalize((SELECT array_agg(u.x + $2 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) / sqrt(%s)
                                                       ORDER BY u.o)
                                                FROM unnest(e.embedding::real[]) WITH ORDINALITY u(x, o))::@vec@.vector))
           FROM (SELECT embedding FROM %s ORDER BY random() LIMIT $1) e', s.dims, s.vectors_table)
        INTO out USING sample, noise;
    IF out IS NULL THEN
        RAISE EXCEPTION 'set "%" has no embedded rows to measure with', s.slug USING ERRCODE = 'no_data_found',
              HINT = 'Let `pgmrl serve` embed the set first (SELECT * FROM mrl.set_status(...) shows progress).';
    END IF;
    RETURN out;
END
$fn$;

-- Runs each query through mrl.search; the ids (a JSON array per query) and latency percentiles in ms.
CREATE OR REPLACE FUNCTION mrl_internal._run_queries(set_slug text, queries @vec@.vector[], k int, strategy text, coarse_k int,
                                            OUT results jsonb, OUT p50_ms double precision, OUT p95_ms double precision)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    q @vec@.vector;
    t0 timestamptz;
    ids text[];
    times double precision[] := '{}';
BEGIN
    results := '[]';
    FOREACH q IN ARRAY queries LOOP
        t0 := clock_timestamp();
        SELECT array_agg(r.id) INTO ids FROM mrl.search(set_slug, q, k, strategy, coarse_k) r;
        times := times || (extract(epoch FROM clock_timestamp() - t0) * 1000)::double precision;
        results := results || jsonb_build_array(to_jsonb(coalesce(ids, '{}')));
    END LOOP;
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t), percentile_cont(0.95) WITHIN GROUP (ORDER BY t)
      INTO p50_ms, p95_ms FROM unnest(times) t;
END
$fn$;

-- Mean share of each truth list (exact top-k) found in the matching result list.
CREATE OR REPLACE FUNCTION mrl_internal._agreement(results jsonb, truth jsonb)
RETURNS double precision
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT avg((SELECT count(*) FROM jsonb_array_elements_text(t.v) e WHERE r.v ? e)::double precision
               / greatest(jsonb_array_length(t.v), 1))
      FROM jsonb_array_elements(results) WITH ORDINALITY r(v, i)
      JOIN jsonb_array_elements(truth) WITH ORDINALITY t(v, i) ON r.i = t.i
$fn$;

-- The lower bound of a one-sided 95% confidence interval on the mean agreement: mean - 1.645 standard errors of the
-- per-query shares (0 standard error for one query).
CREATE OR REPLACE FUNCTION mrl_internal._agreement_low(results jsonb, truth jsonb)
RETURNS double precision
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT avg(a) - 1.645 * coalesce(stddev_samp(a), 0) / sqrt(greatest(count(*), 1))
      FROM (SELECT (SELECT count(*) FROM jsonb_array_elements_text(t.v) e WHERE r.v ? e)::double precision
                   / greatest(jsonb_array_length(t.v), 1) AS a
              FROM jsonb_array_elements(results) WITH ORDINALITY r(v, i)
              JOIN jsonb_array_elements(truth) WITH ORDINALITY t(v, i) ON r.i = t.i) x
$fn$;
