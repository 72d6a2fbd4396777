-- The public API, described: `\df+ mrl.*` in psql (and \dn+ for the schemas). Every function of schema mrl has one;
-- a test checks it. Who may call what: README, "Security model".
COMMENT ON SCHEMA mrl IS 'pgmrl: embedding sets kept current by triggers and searched in two stages (public API)';
COMMENT ON FUNCTION mrl.sql_embedding_available() IS
    'Whether SQL can embed text here (plpython3u installed the sidecar client): mrl.embed, text searches, sync mode.';
COMMENT ON FUNCTION mrl.coarse_of(int, @vec@.vector, int) IS
    'The coarse (truncated, normalised) vector of a full vector, exactly as the set stores it (MRL prefix or fitted rotation).';
COMMENT ON FUNCTION mrl.create_embedding_set(text, text, regclass, text, text, int, bool, bool, text, text, jsonb, text, text) IS
    'Creates an embedding set over a table you own: validates the text (column or built-in expression), creates the vectors table, triggers and queues existing rows. chunking: NULL (one vector per row), "tokens", "paragraphs" or "sections" (with size and overlap in tokens); text_search_config: the language of its full-text words; full_type: halfvec (default, 2 bytes a dimension) or vector. Needs pgmrl_admin.';
COMMENT ON FUNCTION mrl.compact_embedding_set(text, text) IS
    'Rewrites a set''s vectors table without dead rows (and converts its full vectors to full_type: halfvec or vector). Owner only.';
COMMENT ON FUNCTION mrl.vectors_table(text) IS 'The vectors table of a set (in schema mrl_data).';
COMMENT ON FUNCTION mrl.words_table(text) IS 'The full-text words table of a set (in schema mrl_words), for hybrid search.';
COMMENT ON FUNCTION mrl.drop_embedding_set(text) IS 'Drops a set: its triggers, queued items and vectors (the source table stays).';
COMMENT ON FUNCTION mrl.refit_rotation(text) IS 'Asks the sidecar to refit a set''s PCA rotation (non-MRL models); `pgmrl refit` does it at once.';
COMMENT ON FUNCTION mrl.alter_embedding_set(text, text, int, text, jsonb, text, text) IS
    'Re-embeds a set with another model, coarse dimension, chunking, text search configuration or full_type in the background; the old vectors serve until the new ones are complete.';
COMMENT ON FUNCTION mrl.switch_embedding_set(text, bool) IS 'Switches a finished re-embedding in, atomically (the sidecar does it by itself).';
COMMENT ON FUNCTION mrl.search(text, @vec@.vector, int, text, int, int, jsonb) IS
    'Searches a set with a query vector: strategy two_stage (default), binary_two_stage, hnsw, coarse or exact; optional JSON equality filter on source columns. Returns ids (as text) and cosine distances.';
COMMENT ON FUNCTION mrl.two_stage_search(text, @vec@.vector, int, text, int, int, jsonb) IS
    'Two-stage search with a query vector: coarse HNSW on the truncated vector (coarse_k candidates), exact re-rank with the full vector.';
COMMENT ON FUNCTION mrl.create_full_index(text, int, int) IS 'Builds the full-dimension HNSW index (strategy hnsw).';
COMMENT ON FUNCTION mrl.add_binary_index(text, int, int) IS 'Builds the binary-quantised HNSW index (strategy binary_two_stage).';
COMMENT ON FUNCTION mrl.add_coarse_index(text, int, int, int) IS 'Builds an HNSW index on a shorter coarse prefix (coarse_dim), or rebuilds the coarse one with other m.';
COMMENT ON FUNCTION mrl.search_indexes(text) IS 'The search indexes of a set, with their parameters and sizes.';
COMMENT ON FUNCTION mrl.configure_search(text, text, int, int, int) IS 'Sets a set''s default strategy, coarse_k, ef_search (1-1000) and binary coarse_k.';
COMMENT ON FUNCTION mrl.measure_recall(text, int, int, text, int, double precision) IS
    'Self-measured agreement of approximate with exact search on noisy stored vectors, with latencies.';
COMMENT ON FUNCTION mrl.tune(text, double precision, int, int, text, double precision) IS
    'Finds and stores the smallest coarse_k (and ef_search) that reaches the target agreement.';
COMMENT ON FUNCTION mrl.set_status(text) IS 'Rows, embedded vectors, queued and failed items of a set.';
COMMENT ON FUNCTION mrl.retry_failed(text) IS 'Puts a set''s dead-lettered items back in the queue.';
COMMENT ON FUNCTION mrl.recommend_config(bool, bool, bool, bool, bool, bool) IS 'The model selection guide: which embedding config to use, and why.';
COMMENT ON FUNCTION mrl.set_documents(text) IS 'The texts a set embeds (id, body), for fine-tuning and inspection; needs SELECT on the source.';
COMMENT ON FUNCTION mrl.set_document_pairs(text, text) IS
    'Real query-document pairs for fine-tuning: each row''s text (body) with a query taken from its own column or expression (checked like a set''s text expression); runs as the caller.';
COMMENT ON FUNCTION mrl.set_embeddings(text, text[]) IS 'The stored full vectors of the given rows of a set (a chunked set: each row''s first chunk; rows of sources the caller may read).';
COMMENT ON FUNCTION mrl.embed(text, text, text) IS
    'Embeds text through the sidecar (plpython3u, or dblink to its PostgreSQL-protocol endpoint), with the config''s query or document prefix. Refuses a vector written as text.';
COMMENT ON FUNCTION mrl.configure_sidecar(text, text, numeric) IS 'Where SQL reaches the sidecar (URL, token, timeout); the schema owner''s.';
COMMENT ON FUNCTION mrl.configure_sidecar_pg(text, int) IS 'Where SQL reaches the sidecar''s PostgreSQL-protocol endpoint (dblink, servers without plpython3u); the schema owner''s.';
COMMENT ON FUNCTION mrl.search_rows(anyelement, text, @vec@.vector, int, text, int, int, jsonb) IS
    'The source rows themselves (typed, in rank order) with their distance: SELECT (r.item).*, r.distance FROM mrl.search_rows(NULL::docs, ''docs'', query) r.';
COMMENT ON FUNCTION mrl.search_chunks(text, @vec@.vector, int, text, int, int, jsonb) IS
    'mrl.search with the best chunk of each row: its number and character offsets [start_char, end_char) in the row''s text.';
COMMENT ON FUNCTION mrl.search_chunks(text, text, int, text, int, int, jsonb) IS
    'mrl.search_chunks for words (embedded by the sidecar with the set''s model).';
COMMENT ON FUNCTION mrl.hybrid_search(text, text, @vec@.vector, int, double precision, double precision, int, int, jsonb, text) IS
    'Full-text words (websearch syntax, the set''s text search configuration) and two-stage dense search fused by reciprocal rank fusion; both ranks and the fused score per row. query_vector NULL: the sidecar embeds query_text.';
COMMENT ON FUNCTION mrl.text_search(text, text, int, jsonb) IS
    'The full-text leg of mrl.hybrid_search alone: rows holding the query''s words, rare words weighing most.';
