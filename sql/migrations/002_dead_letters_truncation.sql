-- When an item was dead-lettered, and whether a stored vector came from a text cut to the model's maximum length.
ALTER TABLE mrl.queue ADD COLUMN failed_at timestamptz;
DO $m$
DECLARE
    vt regclass;
BEGIN
    FOR vt IN SELECT vectors_table FROM mrl.embedding_sets LOOP
        EXECUTE format('ALTER TABLE %s ADD COLUMN IF NOT EXISTS truncated bool NOT NULL DEFAULT false', vt);
    END LOOP;
END
$m$;
