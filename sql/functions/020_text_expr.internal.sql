-- Internal helpers (schema mrl_internal) of 020_text_expr.sql: not part of the API; EXECUTE is granted in 090_privileges.sql.

-- Object ids below this were created by initdb (built in); anything else was created by some role.
CREATE OR REPLACE FUNCTION mrl_internal._first_normal_oid()
RETURNS oid
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$ SELECT 16384::oid $fn$;

-- Raises unless every column named has a built-in type. Used at creation and by the worker and the triggers
-- before every read, so that a type changed afterwards (ALTER COLUMN TYPE, a dropped and re-added column) is refused.
CREATE OR REPLACE FUNCTION mrl_internal._check_columns(source regclass, columns name[], what text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    col name;
    typ oid;
BEGIN
    IF columns IS NULL THEN
        RAISE EXCEPTION 'the % of % was never validated', what, source USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'Run `pgmrl install` again (it re-validates every set), or recreate the set.';
    END IF;
    FOREACH col IN ARRAY columns LOOP
        SELECT a.atttypid INTO typ FROM pg_attribute a
         WHERE a.attrelid = source AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'column "%" read by the % of % no longer exists', col, what, source
                USING ERRCODE = 'undefined_column';
        END IF;
        IF typ >= mrl_internal._first_normal_oid() THEN
            RAISE EXCEPTION 'column "%" of % has type %, which is not built in: pgmrl does not read it', col, source, typ::regtype
                USING ERRCODE = 'datatype_mismatch',
                      HINT = 'A type, domain or cast defined by a role would run that role''s code in the worker and the triggers. '
                             'Embed a column of a built-in type (text, varchar, jsonb, ...), e.g. a generated column.';
        END IF;
    END LOOP;
END
$fn$;

-- Raises unless the current role may read the source (a set's creator must).
CREATE OR REPLACE FUNCTION mrl_internal._check_readable(source regclass)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF NOT has_table_privilege(source, 'SELECT') THEN
        RAISE EXCEPTION 'permission denied for table %: the role creating an embedding set must be able to read its source', source
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('GRANT SELECT ON %s TO %I (as its owner), or create the set as a role that can read it.', source, current_user);
    END IF;
END
$fn$;

-- Returns the canonical SQL expression to embed and the source columns it reads. Runs as the caller (who must be
-- able to read the source); needs the TEMP privilege for the throw-away view.
CREATE OR REPLACE FUNCTION mrl_internal._text_expr(source regclass, text_column text, OUT expr text, OUT columns name[])
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET citus.enable_ddl_propagation = off  -- (Citus: the throw-away view stays on this node; without Citus, inert)
AS $fn$
DECLARE
    stripped text;
    view_oid oid;
    tree text;
    def text;
    qualified text;
    suffix text;
    bad text;
    hint text := 'Use a column name or a single expression over the table''s columns with built-in text functions, e.g. '
                 'coalesce(title, '''') || '' '' || body; or add a generated column and embed that.';
BEGIN
    IF text_column IS NULL OR btrim(text_column) = '' THEN
        RAISE EXCEPTION 'text_column is empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name the column to embed, or give an expression such as title || '' '' || body.';
    END IF;
    PERFORM mrl_internal._check_readable(source);
    -- One expression only: no statement separators or comments outside literals and quoted identifiers.
    stripped := regexp_replace(text_column, '''(?:[^'']|'''')*''', ' ', 'g');
    stripped := regexp_replace(stripped, '"(?:[^"]|"")*"', ' ', 'g');
    IF stripped ~ '[;$\\]|--|/\*|''|"' THEN
        RAISE EXCEPTION 'text expression % is not allowed: it contains a statement separator, comment, dollar quote or unbalanced quote', quote_literal(text_column)
            USING ERRCODE = 'invalid_parameter_value', HINT = hint;
    END IF;
    IF stripped ~* '\m(select|insert|update|delete|into|copy|execute|call|do|values|table|lateral|returning|merge)\M' THEN
        RAISE EXCEPTION 'text expression % is not allowed: subqueries and statements are refused', quote_literal(text_column)
            USING ERRCODE = 'invalid_parameter_value', HINT = hint;
    END IF;
    qualified := format('%I.%I', (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = source),
                        (SELECT c.relname FROM pg_class c WHERE c.oid = source));
    DROP VIEW IF EXISTS pg_temp.pgmrl_text_expr_check;
    BEGIN
        EXECUTE format('CREATE TEMP VIEW pgmrl_text_expr_check AS SELECT (%s)::text AS mrl_text FROM %s mrl_src',
                       text_column, qualified);
    EXCEPTION
        WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'cannot check text expression %: %', quote_literal(text_column), SQLERRM
                USING ERRCODE = 'insufficient_privilege', HINT = 'The role creating a set needs the TEMP privilege on the database.';
        WHEN OTHERS THEN
            RAISE EXCEPTION 'text expression % is not valid for table %: %', quote_literal(text_column), source, SQLERRM
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('Columns of %s: %s.', source,
                                    (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
                                       FROM pg_attribute a WHERE a.attrelid = source AND a.attnum > 0 AND NOT a.attisdropped));
    END;
    view_oid := 'pg_temp.pgmrl_text_expr_check'::regclass;
    SELECT r.ev_action::text INTO tree FROM pg_rewrite r WHERE r.ev_class = view_oid;

    -- The shape: one output column over the source alone, no subqueries, aggregates, windows, set-returning functions.
    IF tree !~ ':hasAggs false :hasWindowFuncs false :hasTargetSRFs false :hasSubLinks false'
       OR tree ~ '\{(SUBLINK|AGGREF|WINDOWFUNC|GROUPINGFUNC|NEXTVALUEEXPR|PARAM|XMLEXPR|SQLVALUEFUNCTION|CURRENTOFEXPR|MERGESUPPORTFUNC) '
       OR (SELECT count(*) FROM regexp_matches(tree, '\{TARGETENTRY ', 'g')) <> 1
       OR tree !~ ':quals <>\}'
       OR tree ~ '\{VAR :varno \d+ :varattno 0 '  -- a whole-row reference reads every column, present and future
       OR tree ~ ':(groupClause|havingQual|sortClause|limitCount|limitOffset|distinctClause|windowClause|cteList) [^<]' THEN
        DROP VIEW pg_temp.pgmrl_text_expr_check;
        RAISE EXCEPTION 'text expression % is not allowed: only a single expression over the table''s own columns (no subqueries, aggregates or other tables)', quote_literal(text_column)
            USING ERRCODE = 'invalid_parameter_value', HINT = hint;
    END IF;

    SELECT array_agg(a.attname ORDER BY a.attnum) INTO columns
      FROM pg_attribute a
     WHERE a.attrelid = source AND a.attnum IN (
           SELECT d.refobjsubid FROM pg_depend d JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
            WHERE r.ev_class = view_oid AND d.refclassid = 'pg_class'::regclass AND d.refobjid = source AND d.refobjsubid > 0);
    IF columns IS NOT NULL THEN
        PERFORM mrl_internal._check_columns(source, columns, 'text expression');
    END IF;

    -- Functions: built-in, and on the allow-list or a built-in cast function.
    SELECT string_agg(DISTINCT coalesce(f::regprocedure::text, f::text), ', ') INTO bad
      FROM (SELECT m[1]::oid AS f FROM regexp_matches(tree, ':(?:funcid|aggfnoid|winfnoid|hashfuncid|negfuncid) ([1-9][0-9]*)', 'g') m) x
     WHERE NOT EXISTS (SELECT FROM pg_proc p
                        WHERE p.oid = x.f AND p.oid < mrl_internal._first_normal_oid()
                          AND p.pronamespace = 'pg_catalog'::regnamespace AND p.provolatile <> 'v' AND NOT p.proretset
                          AND (p.proname = ANY (mrl.allowed_text_functions())
                               OR EXISTS (SELECT FROM pg_cast c WHERE c.castfunc = p.oid AND c.oid < mrl_internal._first_normal_oid())));
    IF bad IS NULL THEN
        -- Operators: built in, not volatile.
        SELECT string_agg(DISTINCT coalesce(o::regoperator::text, o::text), ', ') INTO bad
          FROM (SELECT m[1]::oid AS o FROM regexp_matches(tree, ':opno ([1-9][0-9]*)', 'g') m) x
         WHERE NOT EXISTS (SELECT FROM pg_operator op JOIN pg_proc p ON p.oid = op.oprcode
                            WHERE op.oid = x.o AND op.oid < mrl_internal._first_normal_oid() AND p.provolatile <> 'v');
    END IF;
    IF bad IS NULL THEN
        -- Every other object the view depends on: the source's columns, or something built in.
        SELECT string_agg(pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid), ', ') INTO bad
          FROM pg_depend d JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
         WHERE r.ev_class = view_oid AND NOT (d.refclassid = 'pg_class'::regclass AND d.refobjid = view_oid)
           AND NOT (d.refclassid = 'pg_class'::regclass AND d.refobjid = source AND d.refobjsubid > 0)
           AND d.refobjid >= mrl_internal._first_normal_oid();
    END IF;
    IF bad IS NOT NULL THEN
        DROP VIEW pg_temp.pgmrl_text_expr_check;
        RAISE EXCEPTION 'text expression % uses %, which is not an allowed text function, operator, cast or type (built-in ones only)', quote_literal(text_column), bad
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Allowed functions: %s (and built-in operators and casts). Or add a generated column and embed that.',
                                array_to_string(mrl.allowed_text_functions(), ', '));
    END IF;

    IF columns IS NULL THEN
        DROP VIEW pg_temp.pgmrl_text_expr_check;
        RAISE EXCEPTION 'text expression % reads no column of %', quote_literal(text_column), source
            USING ERRCODE = 'invalid_parameter_value', HINT = hint;
    END IF;

    -- The canonical form: PostgreSQL's deparse of what it parsed (built-in names resolve in pg_catalog).
    def := rtrim(btrim(pg_get_viewdef(view_oid), E' \n\t'), ';');
    DROP VIEW pg_temp.pgmrl_text_expr_check;
    suffix := 'mrl_src';
    FOREACH suffix IN ARRAY ARRAY['mrl_src', qualified, 'FROM', 'AS mrl_text'] LOOP
        IF right(def, length(suffix)) <> suffix THEN
            RAISE EXCEPTION 'cannot canonicalise text expression % (deparsed as %)', quote_literal(text_column), def
                USING ERRCODE = 'internal_error';
        END IF;
        def := rtrim(left(def, length(def) - length(suffix)), E' \n\t');
    END LOOP;
    IF def !~ '^SELECT\s' THEN
        RAISE EXCEPTION 'cannot canonicalise text expression % (deparsed as %)', quote_literal(text_column), def
            USING ERRCODE = 'internal_error';
    END IF;
    expr := btrim(substr(def, 7), E' \n\t');
END
$fn$;
