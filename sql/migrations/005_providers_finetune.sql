-- Remote providers (Ollama, OpenAI-compatible) and fine-tuning datasets.
ALTER TABLE mrl.embedding_configs ADD COLUMN endpoint text;  -- provider base URL; NULL: the sidecar's default
ALTER TABLE mrl.embedding_configs ADD CONSTRAINT embedding_configs_provider_check
    CHECK (provider IN ('sentence-transformers', 'ollama', 'openai'));

-- Query-document pairs for fine-tuning, generated from an embedding set's documents (split by document).
CREATE TABLE mrl.finetune_datasets (
    name       text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    source     jsonb NOT NULL,  -- {"type": "embedding_set", "slug": ...}
    config     jsonb NOT NULL,  -- {"queries_per_doc": 4, "method": ..., "validation_share": ...}
    stats      jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE mrl.finetune_pairs (
    dataset text NOT NULL REFERENCES mrl.finetune_datasets (name) ON DELETE CASCADE,
    n       int  NOT NULL,
    doc_id  text NOT NULL,
    query   text NOT NULL,
    split   text NOT NULL CHECK (split IN ('train', 'validation')),
    method  text NOT NULL,
    PRIMARY KEY (dataset, n)
);
CREATE INDEX finetune_pairs_split_idx ON mrl.finetune_pairs (dataset, split);
