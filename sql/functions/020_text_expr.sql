-- Validation of the text a set embeds: a column name or an expression over the source's columns.
-- The Python client checks expressions with a real SQL parser first; this is the server-side guard for
-- callers that go straight to SQL. It refuses anything that could run a second statement or a subquery,
-- allows only a list of plain text functions, and lets PostgreSQL itself check that the columns exist.

CREATE OR REPLACE FUNCTION mrl.allowed_text_functions()
RETURNS text[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT ARRAY['coalesce', 'concat', 'concat_ws', 'lower', 'upper', 'initcap', 'trim', 'btrim', 'ltrim',
                 'rtrim', 'substr', 'substring', 'left', 'right', 'replace', 'nullif', 'regexp_replace',
                 'translate', 'array_to_string', 'to_char', 'format', 'length', 'repeat', 'split_part',
                 'greatest', 'least', 'jsonb_extract_path_text', 'json_extract_path_text']
$fn$;

-- Returns the SQL expression to embed (a quoted identifier when text_column names a column).
CREATE OR REPLACE FUNCTION mrl._text_expr(source regclass, text_column text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    stripped text;
    fn text;
    expr text;
BEGIN
    IF text_column IS NULL OR btrim(text_column) = '' THEN
        RAISE EXCEPTION 'text_column is empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name the column to embed, or give an expression such as title || '' '' || body.';
    END IF;
    -- A plain column name (exact spelling, any case).
    IF EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = source AND a.attname = text_column
                                            AND a.attnum > 0 AND NOT a.attisdropped) THEN
        expr := format('%I', text_column);
    ELSE
        -- Remove string literals and quoted identifiers, then look at what is left.
        stripped := regexp_replace(text_column, '''(?:[^'']|'''')*''', ' ', 'g');
        stripped := regexp_replace(stripped, '"(?:[^"]|"")*"', ' ', 'g');
        IF stripped ~ '[;$\\]|--|/\*|''|"' THEN
            RAISE EXCEPTION 'text expression % is not allowed: it contains a statement separator, comment, dollar quote or unbalanced quote', quote_literal(text_column)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use a single expression over the table''s columns, e.g. title || '' '' || body.';
        END IF;
        IF stripped ~* '\m(select|insert|update|delete|with|from|into|copy|execute|call|do|values|table|lateral|returning|merge)\M' THEN
            RAISE EXCEPTION 'text expression % is not allowed: subqueries and statements are refused', quote_literal(text_column)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use a single expression over the table''s columns, e.g. coalesce(title, '''') || '' '' || body.';
        END IF;
        FOR fn IN SELECT lower(m[1]) FROM regexp_matches(stripped, '([A-Za-z_][A-Za-z0-9_.]*)\s*\(', 'g') AS m LOOP
            IF NOT fn = ANY (mrl.allowed_text_functions()) AND fn NOT IN ('and', 'or', 'not', 'in', 'is', 'when', 'then', 'else', 'case', 'cast', 'as', 'like', 'ilike') THEN
                RAISE EXCEPTION 'text expression % calls %(), which is not an allowed text function', quote_literal(text_column), fn
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = format('Allowed functions: %s. Or add a generated column and embed that.',
                                        array_to_string(mrl.allowed_text_functions(), ', '));
            END IF;
        END LOOP;
        expr := text_column;
    END IF;
    -- Let PostgreSQL check names and types without reading a row.
    BEGIN
        EXECUTE format('SELECT (%s)::text FROM %s LIMIT 0', expr, source);
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION 'text expression % is not valid for table %: %', quote_literal(text_column), source, SQLERRM
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Columns of %s: %s.', source,
                                (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
                                   FROM pg_attribute a WHERE a.attrelid = source AND a.attnum > 0 AND NOT a.attisdropped));
    END;
    RETURN expr;
END
$fn$;
