-- Bulk writes queue their keys as one array per statement; the worker expands them into mrl.queue rows.
-- (One queue row per written row cost bulk INSERTs 3.6x their time; one array per statement about 1.3x.)
CREATE TABLE mrl.queue_intake (
    bid       bigserial PRIMARY KEY,
    set_id    int    NOT NULL,
    ids       text[] NOT NULL,
    queued_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
