-- Run once. What the last install put in place: a digest of the function files it ran (sql/functions, sql/plpython,
-- sql/fallback), written by the install script's last statement, so that a worker can tell a database whose functions
-- are not its own code's (pgmrl.schema.schema_problem) instead of failing on a missing function.
CREATE TABLE mrl.install_record (
    singleton        bool PRIMARY KEY DEFAULT true CHECK (singleton),
    functions_digest text NOT NULL,
    pgmrl_version    text NOT NULL,
    installed_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE mrl.install_record IS
    'pgmrl: the function files the last `pgmrl install` ran (digest) and its version';
