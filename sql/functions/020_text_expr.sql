-- Validation of the text a set embeds: a column name or an expression over the source's columns.
--
-- What is checked is what PostgreSQL will execute, not the text: the expression is parsed by PostgreSQL into a
-- temporary view over the source, and the view's parse tree and dependencies are inspected. Every function must be
-- a built-in pg_catalog function on the allow-list below (or a built-in cast function), every operator and type
-- built in, every column of the source of a built-in type; no subqueries, aggregates or other relations. The set
-- then stores PostgreSQL's own deparse of the expression (a canonical form), never the caller's string.
--
-- Why: the triggers (SECURITY DEFINER) and the worker evaluate the expression; anything a table owner or another
-- role defined (a function, an operator, a cast, a type) would run with their privileges.

CREATE OR REPLACE FUNCTION mrl.allowed_text_functions()
RETURNS text[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT ARRAY['coalesce', 'concat', 'concat_ws', 'lower', 'upper', 'initcap', 'trim', 'btrim', 'ltrim',
                 'rtrim', 'substr', 'substring', 'left', 'right', 'replace', 'nullif', 'regexp_replace',
                 'translate', 'array_to_string', 'to_char', 'format', 'length', 'split_part', 'textcat',
                 'greatest', 'least', 'jsonb_extract_path_text', 'json_extract_path_text', 'normalize']
$fn$;

COMMENT ON FUNCTION mrl.allowed_text_functions() IS
    'The built-in functions a set''s text expression may call (besides built-in operators and casts).';
