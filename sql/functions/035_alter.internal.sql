-- Internal helpers (schema mrl_internal) of 035_alter.sql: not part of the API; EXECUTE is granted in 090_privileges.sql.

-- Replacements ready to switch in: fully embedded, and with a fitted rotation where one will be fitted.
CREATE OR REPLACE FUNCTION mrl_internal._switch_due()
RETURNS SETOF text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    n mrl.embedding_sets;
    rows bigint;
BEGIN
    FOR n IN SELECT * FROM mrl.embedding_sets WHERE replaces IS NOT NULL LOOP
        CONTINUE WHEN mrl_internal._tables_problem(n) IS NOT NULL;
        CONTINUE WHEN EXISTS (SELECT FROM mrl.queue q WHERE q.set_id = n.id AND NOT q.dead)
                   OR EXISTS (SELECT FROM mrl.queue_intake i WHERE i.set_id = n.id);
        IF n.coarse_method = 'rotation' AND n.rotation_version = 0 THEN
            EXECUTE format('SELECT count(*) FROM %s', n.vectors_table) INTO rows;
            CONTINUE WHEN rows >= n.rotation_min_rows;  -- the rotation is fitted first
        END IF;
        RETURN NEXT (SELECT slug FROM mrl.embedding_sets WHERE id = n.replaces);
    END LOOP;
END
$fn$;

-- What mrl.tune chose (coarse_k, ef_search) was measured on the old coarse vectors: a smaller coarse dimension or
-- another model needs more candidates (measured: 128 -> 64 dims kept a tuned coarse_k and agreement fell from
-- 0.99 to 0.94). A switch that changes the coarse vectors puts the defaults back and says to tune again; a switch
-- that keeps them (e.g. only the rotation method named again) keeps the tuning.
CREATE OR REPLACE FUNCTION mrl_internal._reset_tuning(old mrl.embedding_sets, replacement mrl.embedding_sets)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF old.config = replacement.config AND old.truncate_dim IS NOT DISTINCT FROM replacement.truncate_dim
       AND old.coarse_method = replacement.coarse_method THEN
        RETURN;
    END IF;
    UPDATE mrl.embedding_sets
       SET default_coarse_k = replacement.default_coarse_k, binary_coarse_k = replacement.binary_coarse_k,
           default_ef_search = replacement.default_ef_search, tuned_at = NULL, tuned_agreement = NULL,
           tuned_agreement_low = NULL
     WHERE id = old.id;
    IF old.tuned_at IS NOT NULL THEN
        RAISE NOTICE 'set "%": its coarse vectors changed, so the tuned search settings were reset to the defaults (coarse_k %)',
            old.slug, replacement.default_coarse_k
              USING HINT = format('Tune again: SELECT * FROM mrl.tune(%L);', old.slug);
    END IF;
END
$fn$;
