-- Shared databases: internal helpers move to their own schema, the queue is no longer writable by PUBLIC (writers
-- reach it only through the SECURITY DEFINER triggers), the registry shows each role only the sets whose source it
-- may read, and the columns a set's text reads are recorded so that the worker can refuse a changed type.
CREATE SCHEMA IF NOT EXISTS mrl_internal;
COMMENT ON SCHEMA mrl_internal IS 'pgmrl: internal helpers (not an API; EXECUTE granted only where a public function needs it)';

-- Source columns the text expression (and the key) read; the worker checks their types before every batch.
ALTER TABLE mrl.embedding_sets ADD COLUMN text_columns name[];

REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON mrl.queue, mrl.queue_intake FROM PUBLIC;
REVOKE ALL ON SEQUENCE mrl.queue_qid_seq, mrl.queue_intake_bid_seq FROM PUBLIC;

-- Keys are never NULL (they come from a primary key).
DELETE FROM mrl.queue_intake WHERE array_position(ids, NULL) IS NOT NULL;
ALTER TABLE mrl.queue_intake ADD CONSTRAINT queue_intake_ids_check CHECK (array_position(ids, NULL) IS NULL);

ALTER TABLE mrl.embedding_sets ENABLE ROW LEVEL SECURITY;
ALTER TABLE mrl.rotation_components ENABLE ROW LEVEL SECURITY;

-- Who owns a set or a registered config (set by the registry's own trigger, never by the writer): set administrators
-- may change only their own. Existing sets belong to the owner of their vectors table.
ALTER TABLE mrl.embedding_sets ADD COLUMN owner oid;
UPDATE mrl.embedding_sets e SET owner = c.relowner FROM pg_class c WHERE c.oid = e.vectors_table;
ALTER TABLE mrl.embedding_configs ADD COLUMN owner oid;
ALTER TABLE mrl.embedding_configs ENABLE ROW LEVEL SECURITY;
ALTER TABLE mrl.queue ENABLE ROW LEVEL SECURITY;
ALTER TABLE mrl.queue_intake ENABLE ROW LEVEL SECURITY;

-- Keys of any length (a bytea or numeric key is far longer as text than the index row limit allows): the queue's
-- lookup index holds a digest of the key, not the key.
DROP INDEX mrl.queue_set_id_idx;
CREATE INDEX queue_set_id_idx ON mrl.queue (set_id, md5(id));
