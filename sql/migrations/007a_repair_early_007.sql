-- Run once. 007_security.sql was edited after it landed: databases installed at dfa4366 recorded it without the
-- owner columns and the row-level security of the configs and the queue (added in fe255e2), and those installed at
-- dfa4366 or fe255e2 without the digest index on the queue's keys (added in f1b8e09). This adds what such a
-- database lacks, as today's 007 would have; on any other database it changes nothing.

DO $repair$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_attribute WHERE attrelid = 'mrl.embedding_sets'::regclass
                                                       AND attname = 'owner' AND NOT attisdropped) THEN
        ALTER TABLE mrl.embedding_sets ADD COLUMN owner oid;
        UPDATE mrl.embedding_sets e SET owner = c.relowner FROM pg_catalog.pg_class c WHERE c.oid = e.vectors_table;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_attribute WHERE attrelid = 'mrl.embedding_configs'::regclass
                                                       AND attname = 'owner' AND NOT attisdropped) THEN
        ALTER TABLE mrl.embedding_configs ADD COLUMN owner oid;
        ALTER TABLE mrl.embedding_configs ENABLE ROW LEVEL SECURITY;
        ALTER TABLE mrl.queue ENABLE ROW LEVEL SECURITY;
        ALTER TABLE mrl.queue_intake ENABLE ROW LEVEL SECURITY;
    END IF;
    IF coalesce(pg_catalog.pg_get_indexdef(pg_catalog.to_regclass('mrl.queue_set_id_idx')), '')
       NOT LIKE '%md5(id)%' THEN
        DROP INDEX IF EXISTS mrl.queue_set_id_idx;
        CREATE INDEX queue_set_id_idx ON mrl.queue (set_id, md5(id));
    END IF;
END
$repair$;
