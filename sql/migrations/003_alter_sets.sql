-- A set being rebuilt with another model or coarse dimension (mrl.alter_embedding_set) is a hidden set that
-- replaces its original once it is fully embedded.
ALTER TABLE mrl.embedding_sets ADD COLUMN replaces int REFERENCES mrl.embedding_sets (id);
