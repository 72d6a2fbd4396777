-- Change capture: the statement-level triggers of a set and what they check before they queue anything.

-- Functions that turn keys or texts into text pin DateStyle, IntervalStyle, extra_float_digits, TimeZone and
-- bytea_output (SET clauses), so that what a writer's session has set never changes which key is queued or which
-- text is embedded.

-- The rows a statement changed, for a set's triggers: a FROM item c(k, t) over the transition tables with the key
-- (in its own type) and the embedded text of every inserted row, or of every updated row whose text changed.
CREATE OR REPLACE FUNCTION mrl_internal._changed_rows(s mrl.embedding_sets, op text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE WHEN op = 'INSERT'
        THEN format('(SELECT mrl_src.%1$I AS k, (%2$s)::text AS t FROM mrl_new mrl_src) c', s.pk_column, s.text_expr)
        ELSE format('(SELECT n.k, n.t
                        FROM (SELECT mrl_src.%1$I AS k, (%2$s)::text AS t FROM mrl_new mrl_src) n
                   LEFT JOIN (SELECT mrl_src.%1$I AS k, (%2$s)::text AS t FROM mrl_old mrl_src) o ON o.k = n.k
                       WHERE o.k IS NULL OR n.t IS DISTINCT FROM o.t) c', s.pk_column, s.text_expr) END
$fn$;

-- The set a trigger fires for, checked: the trigger must sit on the set's own source (anyone may attach the trigger
-- function to a table they own, but then it queues nothing for another role's set), and the columns it reads must
-- still have built-in types.
CREATE OR REPLACE FUNCTION mrl_internal._trigger_set(set_arg text, relid oid, trigger_name name, level text,
                                                     timing text, op text, fn regproc)
RETURNS mrl.embedding_sets
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets;
    t record;
BEGIN
    IF set_arg IS NULL OR set_arg !~ '^[0-9]{1,9}$' THEN
        RAISE EXCEPTION 'pgmrl trigger with a bad argument %', coalesce(quote_literal(set_arg), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO s FROM mrl.embedding_sets WHERE id = set_arg::int;
    IF NOT FOUND THEN
        RETURN NULL;  -- set dropped in this transaction
    END IF;
    -- Exactly the trigger mrl_internal._create_triggers made: on the set's source, AFTER ... FOR EACH STATEMENT,
    -- INSERT or UPDATE, with the transition tables under the names the function reads (so that no other relation,
    -- e.g. a temporary view named mrl_new, can stand in for them).
    SELECT tg.tgfoid, tg.tgnewtable, tg.tgoldtable INTO t FROM pg_trigger tg WHERE tg.tgrelid = relid AND tg.tgname = trigger_name;
    IF s.source <> relid OR level <> 'STATEMENT' OR timing <> 'AFTER' OR op NOT IN ('INSERT', 'UPDATE')
       OR trigger_name <> 'mrl_' || s.slug || (CASE op WHEN 'INSERT' THEN '_ins' ELSE '_upd' END)
       OR t.tgfoid IS DISTINCT FROM fn OR t.tgnewtable IS DISTINCT FROM 'mrl_new'
       OR (op = 'UPDATE' AND t.tgoldtable IS DISTINCT FROM 'mrl_old') THEN
        RAISE EXCEPTION 'pgmrl trigger % on % does not belong to embedding set "%" (whose source is %)', trigger_name, relid::regclass, s.slug, s.source
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Embedding-set triggers are created by mrl.create_embedding_set(); drop this one.';
    END IF;
    PERFORM mrl_internal._check_columns(s.source, s.text_columns || s.pk_column, format('embedding set "%s"', s.slug));
    RETURN s;
END
$fn$;

-- Statement-level trigger: queues the keys of inserted rows with text, and of updated rows whose embedded text
-- changed (also to empty: the worker then removes the vector), as one array per statement in mrl.queue_intake (the
-- worker expands it into mrl.queue rows: bulk writes stay cheap). TG_ARGV[0] is the set id.
-- SECURITY DEFINER: writers may not touch the queue themselves. What it evaluates as its owner is the set's
-- validated text expression (built-in functions, operators and types only) over the statement's transition tables.
CREATE OR REPLACE FUNCTION mrl_internal._queue_changes()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET extra_float_digits = 1 SET TimeZone = 'UTC' SET bytea_output = 'hex'
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._trigger_set(TG_ARGV[0], TG_RELID, TG_NAME, TG_LEVEL, TG_WHEN, TG_OP,
                                                      'mrl_internal._queue_changes'::regproc);
    n bigint;
BEGIN
    IF s.id IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format(
        'INSERT INTO mrl.queue_intake (set_id, ids)
         SELECT $1, array_agg((c.k)::text) FROM %s WHERE $2 OR coalesce(c.t, '''') <> '''' HAVING count(*) > 0',
        mrl_internal._changed_rows(s, TG_OP)) USING s.id, TG_OP = 'UPDATE';
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM pg_notify('mrl_queue', s.id::text);
    END IF;
    RETURN NULL;
END
$fn$;

-- The change-capture triggers of a set: queueing (async) or embedding in the statement (sync).
CREATE OR REPLACE FUNCTION mrl_internal._create_triggers(s mrl.embedding_sets)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    fn text := CASE WHEN s.mode = 'sync' THEN 'mrl_internal._sync_changes' ELSE 'mrl_internal._queue_changes' END;
    args text := format('%L', s.id);
BEGIN
    IF mrl_internal._is_distributed(s.source) THEN
        -- Citus: the trigger fires on the workers' shards, which queue into their own node (sql/node)
        fn := 'mrl_node._queue_shard_changes';
        args := format('%L, %L, %L', s.id, s.source::text, s.pk_column);
        PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
    END IF;
    IF s.on_create THEN
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %s REFERENCING NEW TABLE AS mrl_new
                        FOR EACH STATEMENT EXECUTE FUNCTION %s(%s)', 'mrl_' || s.slug || '_ins', s.source, fn, args);
    END IF;
    IF s.on_update THEN
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %s REFERENCING OLD TABLE AS mrl_old NEW TABLE AS mrl_new
                        FOR EACH STATEMENT EXECUTE FUNCTION %s(%s)', 'mrl_' || s.slug || '_upd', s.source, fn, args);
    END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION mrl_internal._drop_triggers(s mrl.embedding_sets)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF EXISTS (SELECT FROM pg_class WHERE oid = s.source) THEN
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', 'mrl_' || s.slug || '_ins', s.source);
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', 'mrl_' || s.slug || '_upd', s.source);
    END IF;
END
$fn$;
