-- Functions the embedding worker calls. Each works inside the caller's transaction.

-- Dead-lettered items, with their last error.
CREATE OR REPLACE VIEW mrl.failed_items WITH (security_barrier) AS
SELECT e.slug, q.id, q.attempts, q.last_error, q.queued_at, q.failed_at, q.qid
  FROM mrl.queue q JOIN mrl.embedding_sets e ON e.id = q.set_id
 WHERE q.dead AND mrl_internal._may_see(e.source, e.owner);

-- Puts a set's dead-lettered items back in the queue (attempts reset). Returns how many.
CREATE OR REPLACE FUNCTION mrl.retry_failed(set_slug text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
    n bigint;
BEGIN
    UPDATE mrl.queue SET dead = false, attempts = 0, next_attempt_at = NULL, failed_at = NULL
     WHERE set_id = s.id AND dead;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM pg_notify('mrl_queue', s.id::text);
    END IF;
    RETURN n;
END
$fn$;
