-- Run once. Tables of the mrl schema; functions live in sql/functions (idempotent).
CREATE SCHEMA IF NOT EXISTS mrl_data;
COMMENT ON SCHEMA mrl_data IS 'pgmrl: per-set vector storage tables (one table per embedding set)';

CREATE TABLE mrl.embedding_configs (
    name                 text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    model                text NOT NULL,
    provider             text NOT NULL DEFAULT 'sentence-transformers',
    dims                 int  NOT NULL CHECK (dims BETWEEN 1 AND 16000),
    supports_mrl         bool NOT NULL DEFAULT false,
    matryoshka_dims      int[],
    default_truncate_dim int,
    query_prefix         text NOT NULL DEFAULT '',
    document_prefix      text NOT NULL DEFAULT '',
    max_seq_length       int,
    params_millions      numeric,
    best_for             text,
    aliases              text[] NOT NULL DEFAULT '{}',
    builtin              bool NOT NULL DEFAULT false,
    created_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (NOT supports_mrl OR (matryoshka_dims IS NOT NULL AND default_truncate_dim = ANY (matryoshka_dims)))
);

CREATE TABLE mrl.embedding_sets (
    id                    serial PRIMARY KEY,
    name                  text NOT NULL,
    slug                  text NOT NULL UNIQUE CHECK (slug ~ '^[a-z][a-z0-9_]{0,39}$'),
    source                regclass NOT NULL,
    pk_column             name NOT NULL,
    pk_type               text NOT NULL,
    text_expr             text NOT NULL,
    config                text NOT NULL REFERENCES mrl.embedding_configs (name),
    dims                  int  NOT NULL,
    truncate_dim          int,
    coarse_method         text NOT NULL CHECK (coarse_method IN ('none', 'prefix', 'rotation')),
    on_create             bool NOT NULL DEFAULT true,
    on_update             bool NOT NULL DEFAULT true,
    mode                  text NOT NULL DEFAULT 'async' CHECK (mode IN ('async', 'sync')),
    vectors_table         regclass NOT NULL,
    default_coarse_k      int  NOT NULL DEFAULT 100 CHECK (default_coarse_k > 0),
    rotation_min_rows     int  NOT NULL DEFAULT 1000 CHECK (rotation_min_rows > 0),
    rotation_version      int  NOT NULL DEFAULT 0,
    rotation_rows         bigint,
    rotation_fitted_at    timestamptz,
    rotation_requested_at timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now()
);

-- Principal directions of a set's full vectors (uncentred PCA), strongest first.
CREATE TABLE mrl.rotation_components (
    set_id             int NOT NULL REFERENCES mrl.embedding_sets (id) ON DELETE CASCADE,
    component          int NOT NULL CHECK (component >= 0),
    direction          @vec@.vector NOT NULL,
    explained_variance double precision,
    PRIMARY KEY (set_id, component)
);

-- Work queue. One row per change; the worker de-duplicates keys within a batch.
-- No foreign key on purpose: bulk statements must not pay a per-row check.
CREATE TABLE mrl.queue (
    qid             bigserial PRIMARY KEY,
    set_id          int  NOT NULL,
    id              text NOT NULL,
    queued_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempts        int  NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,  -- NULL: ready now; set by backoff after a failure
    last_error      text,
    dead            bool NOT NULL DEFAULT false
);
CREATE INDEX queue_pending_idx ON mrl.queue (set_id, qid) WHERE NOT dead;
CREATE INDEX queue_set_id_idx ON mrl.queue (set_id, id);

-- Where the database reaches the sidecar (mrl.embed, sync mode). Written by `pgmrl serve` / `pgmrl configure`.
-- Holds the sidecar's token: readable by the owner only.
CREATE TABLE mrl.settings (
    key        text PRIMARY KEY,
    value      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON mrl.settings FROM PUBLIC;
