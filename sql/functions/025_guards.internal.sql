-- What the worker, the triggers and the searches check before they touch a set's tables. Whatever a role attaches to
-- a table runs with the privileges of whoever reads or writes it: a source's row-level security policies run as the
-- worker that reads it, a vectors table's triggers, rules, policies, defaults, constraints and index expressions as
-- the worker (or a searcher) that writes or reads it. So pgmrl reads and writes only tables that carry nothing but
-- built-in code (and pgvector's).

-- Whether an object is built in (created by initdb) or part of the pgvector extension.
CREATE OR REPLACE FUNCTION mrl_internal._trusted_object(classid oid, objid oid)
RETURNS bool
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT objid < mrl_internal._first_normal_oid()
        OR EXISTS (SELECT FROM pg_depend e JOIN pg_extension x ON x.oid = e.refobjid
                    WHERE e.classid = _trusted_object.classid AND e.objid = _trusted_object.objid AND e.deptype = 'e'
                      AND e.refclassid = 'pg_extension'::regclass AND x.extname = 'vector')
$fn$;

-- Whether a vectors table's row-level security policies are other than pgmrl's (the only code a SELECT of it runs).
-- pgmrl's policies call only pinned built-in functions, so they depend on nothing but the table. Cheap: every
-- search checks it.
CREATE OR REPLACE FUNCTION mrl_internal._policies_tampered(vt regclass)
RETURNS bool
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = vt AND (NOT p.polpermissive OR p.polname NOT IN
                     ('mrl_source_readers', 'mrl_worker', 'mrl_sync_writers', 'mrl_sync_updaters', 'mrl_sync_deleters')))
        OR EXISTS (SELECT FROM pg_policy p
                    CROSS JOIN LATERAL (SELECT FROM pg_depend d
                                         WHERE d.classid = 'pg_policy'::regclass AND d.objid = p.oid
                                           AND NOT (d.refclassid = 'pg_class'::regclass AND d.refobjid = vt)
                                           -- (a distributed set's policies name its source, in pgmrl's form only)
                                           AND NOT (d.refclassid = 'pg_class'::regclass AND d.refobjsubid = 0
                                                    AND d.refobjid IN (SELECT e.source FROM mrl.embedding_sets e
                                                                        WHERE vt IN (e.vectors_table, e.words_table)
                                                                          AND mrl_internal._is_distributed(e.source))
                                                    AND coalesce(pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid))
                                                        ~ '^has_table_privilege\(\(?''[^'']+''::regclass\)?(::oid)?, ''[A-Z, ]+''::text\)$'
                                                    AND (p.polqual IS NULL OR p.polwithcheck IS NULL))
                                         OFFSET 0) z
                    WHERE p.polrelid = vt)
$fn$;

-- What the planner may run while it plans any query on a table: the expressions and predicates of its indexes and
-- its extended statistics are simplified, and a function with constant arguments in them is called then, as the
-- user planning the query. NULL when they call only built-in (and pgvector's) code; else what they call.
DROP FUNCTION IF EXISTS mrl_internal._planner_code(regclass);  -- (an earlier one-argument form)
CREATE OR REPLACE FUNCTION mrl_internal._planner_code(rel regclass, with_defaults bool DEFAULT false)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT string_agg(DISTINCT r.what, ', ')
      FROM (SELECT 'pg_class'::regclass AS classid, i.indexrelid AS objid FROM pg_index i WHERE i.indrelid = rel
            UNION ALL
            SELECT 'pg_statistic_ext'::regclass, x.oid FROM pg_statistic_ext x WHERE x.stxrelid = rel
            UNION ALL  -- with_defaults: also what column defaults, generated columns and constraints call (run on writes)
            SELECT 'pg_attrdef'::regclass, a.oid FROM pg_attrdef a WHERE with_defaults AND a.adrelid = rel
            UNION ALL
            SELECT 'pg_constraint'::regclass, c.oid FROM pg_constraint c WHERE with_defaults AND c.conrelid = rel) o
    CROSS JOIN LATERAL (
           SELECT pg_describe_object(d.refclassid, d.refobjid, 0) AS what
             FROM pg_depend d
            WHERE d.classid = o.classid AND d.objid = o.objid
              AND d.refclassid IN ('pg_proc'::regclass, 'pg_operator'::regclass, 'pg_type'::regclass, 'pg_opclass'::regclass,
                                   'pg_opfamily'::regclass, 'pg_collation'::regclass)
              AND d.refobjid >= mrl_internal._first_normal_oid()
              AND (SELECT e.refobjid FROM pg_depend e
                    WHERE e.classid = d.refclassid AND e.objid = d.refobjid AND e.deptype = 'e' LIMIT 1)
                  IS DISTINCT FROM (SELECT x.oid FROM pg_extension x WHERE x.extname = 'vector')
           OFFSET 0) r  -- (per-object index lookups, never a join over all of pg_depend: every search runs this)
$fn$;

-- Whether reading a vectors table could run a role's code: policies other than pgmrl's, inherited children (whose
-- indexes the planner also looks at), or index and statistics expressions (see above). What every search checks.
CREATE OR REPLACE FUNCTION mrl_internal._read_unsafe(vt regclass)
RETURNS bool
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT mrl_internal._policies_tampered(vt) OR EXISTS (SELECT FROM pg_inherits WHERE inhparent = vt)
        OR mrl_internal._planner_code(vt) IS NOT NULL
$fn$;

-- NULL when a vectors table carries only what pgmrl put there; else what is wrong.
CREATE OR REPLACE FUNCTION mrl_internal._vectors_problem(vt regclass)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    bad text;
BEGIN
    IF vt IS NULL OR NOT EXISTS (SELECT FROM pg_class WHERE oid = vt AND relkind = 'r'
                                    AND relnamespace IN ('mrl_data'::regnamespace, 'mrl_words'::regnamespace)) THEN
        RETURN format('%s is not a vectors or words table in mrl_data or mrl_words', vt);
    END IF;
    SELECT string_agg(format('trigger %I', tgname), ', ') INTO bad FROM pg_trigger WHERE tgrelid = vt AND NOT tgisinternal;
    IF bad IS NULL THEN
        SELECT string_agg(format('rule %I', rulename), ', ') INTO bad FROM pg_rewrite WHERE ev_class = vt;
    END IF;
    IF bad IS NULL THEN
        SELECT string_agg(format('inheriting table %s', inhrelid::regclass), ', ') INTO bad FROM pg_inherits WHERE inhparent = vt;
    END IF;
    IF bad IS NULL AND mrl_internal._policies_tampered(vt) THEN
        SELECT string_agg(format('policy %I', polname), ', ') INTO bad FROM pg_policy WHERE polrelid = vt;
    END IF;
    IF bad IS NULL THEN
        SELECT string_agg(format('column %I of type %s', a.attname, a.atttypid::regtype), ', ') INTO bad
          FROM pg_attribute a
         WHERE a.attrelid = vt AND a.attnum > 0 AND NOT a.attisdropped
           AND NOT mrl_internal._trusted_object('pg_type'::regclass, a.atttypid);
    END IF;
    IF bad IS NULL THEN
        bad := mrl_internal._planner_code(vt, true);
    END IF;
    RETURN CASE WHEN bad IS NULL THEN NULL
                ELSE format('%s carries %s, which pgmrl did not create', vt, bad) END;
END
$fn$;

-- NULL when reading a source runs no role's code (row-level security policies, planner-evaluated expressions);
-- else what would run. Checked at creation, by the worker, by filtered searches and by mrl.set_status.
CREATE OR REPLACE FUNCTION mrl_internal._source_problem(source regclass)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    code text;
BEGIN
    IF (SELECT relrowsecurity FROM pg_class WHERE oid = source) THEN
        RETURN format('%s has row-level security enabled: its policies would run as whoever reads it (the worker, '
                      'a searcher), and hide rows from the worker', source);
    END IF;
    code := mrl_internal._planner_code(source);
    IF code IS NOT NULL THEN
        RETURN format('the indexes or statistics of %s call %s: the planner would run them as whoever reads it '
                      '(the worker, a searcher)', source, code);
    END IF;
    RETURN NULL;
END
$fn$;

-- NULL when the set's tables are safe to read and write; else what is wrong.
CREATE OR REPLACE FUNCTION mrl_internal._tables_problem(s mrl.embedding_sets)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    problem text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_class WHERE oid = s.source) THEN
        RETURN format('the source table of embedding set "%s" was dropped', s.slug);
    END IF;
    problem := mrl_internal._source_problem(s.source);
    IF problem IS NOT NULL THEN
        RETURN problem;
    END IF;
    BEGIN
        PERFORM mrl_internal._check_columns(s.source, s.text_columns || s.pk_column, format('embedding set "%s"', s.slug));
    EXCEPTION WHEN OTHERS THEN
        RETURN SQLERRM;
    END;
    RETURN coalesce(mrl_internal._vectors_problem(s.vectors_table),
                    CASE WHEN s.words_table IS NOT NULL THEN mrl_internal._vectors_problem(s.words_table) END);
END
$fn$;

-- Raises (42501) unless the set's tables are safe to read and write.
CREATE OR REPLACE FUNCTION mrl_internal._check_tables(s mrl.embedding_sets)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    problem text := mrl_internal._tables_problem(s);
BEGIN
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'embedding set "%" is refused: %', s.slug, problem
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'pgmrl reads and writes only tables that run no role''s code: remove what was added (or disable row-level security on the source), or recreate the set.';
    END IF;
END
$fn$;

-- _check_tables, holding the set's vectors and words tables in `mode` from before the check until the transaction
-- ends: ROW EXCLUSIVE (the worker's and sync writes: no trigger, index, rule, policy or constraint can be added to
-- them between the check and the write) or ACCESS EXCLUSIVE (a rewrite by a role that may not be their owner).
-- (Not for searches: a role that may only read a table may lock it only in ACCESS SHARE mode.)
CREATE OR REPLACE FUNCTION mrl_internal._lock_and_check(s mrl.embedding_sets, mode text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    t regclass;
BEGIN
    IF mode NOT IN ('ROW EXCLUSIVE', 'ACCESS EXCLUSIVE') THEN
        RAISE EXCEPTION 'unknown lock mode %', quote_literal(mode) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOREACH t IN ARRAY ARRAY[s.vectors_table, s.words_table] LOOP
        IF t IS NOT NULL AND EXISTS (SELECT FROM pg_class c WHERE c.oid = t AND c.relkind = 'r') THEN
            EXECUTE format('LOCK TABLE ONLY %s IN %s MODE', t, mode);
        END IF;
    END LOOP;
    PERFORM mrl_internal._check_tables(s);
END
$fn$;

-- Whether the current role may act as the owner of a table (ALTER TABLE, CLUSTER without MAINTAIN).
CREATE OR REPLACE FUNCTION mrl_internal._owns_table(t regclass)
RETURNS bool
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$ SELECT mrl_internal._owns((SELECT c.relowner FROM pg_class c WHERE c.oid = t)) $fn$;

-- Rewrites a table in its primary key's order, without dead row versions (as its owner: CLUSTER runs the table's
-- code, if any, as the owner). The caller holds the privilege (owner, or MAINTAIN on PostgreSQL 17+).
CREATE OR REPLACE FUNCTION mrl_internal._cluster(t regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    EXECUTE format('CLUSTER %s USING %I', t, (SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                                              WHERE i.indrelid = t AND i.indisprimary));
END
$fn$;
