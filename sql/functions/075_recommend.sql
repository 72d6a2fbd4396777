-- GENERATED from pyext/pgmrl/guide/catalogue.json by `python -m pgmrl.guide.sqlgen`: edit that file, not this.
-- The model selection guide's decision tree (the same rules as `pgmrl recommend`): the first rule
-- whose questions are all answered yes.
CREATE OR REPLACE FUNCTION mrl.recommend_config(
    llm_rerank bool DEFAULT false,
    storage bool DEFAULT false,
    domain bool DEFAULT false,
    multilingual bool DEFAULT false,
    code bool DEFAULT false,
    speed bool DEFAULT false)
RETURNS TABLE (config text, alternative text, truncate_dim int, fine_tune bool, reason text)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT t.config, t.alternative, t.truncate_dim, t.fine_tune, t.reason FROM (VALUES
        (1, coalesce(code, false), 'jina-embeddings-v2-base-code', NULL::text, NULL::int, false,
         'code search: a model trained on code and its documentation matches natural-language queries to code far better than a text model'),
        (2, coalesce(multilingual, false) AND coalesce(speed, false), 'multilingual-e5-small', 'multilingual-e5-large'::text, NULL::int, false,
         'multilingual/CJK text, speed first: the small multilingual E5 (384 dims)'),
        (3, coalesce(multilingual, false), 'multilingual-e5-large', 'multilingual-e5-small'::text, NULL::int, false,
         'multilingual/CJK text: English-only models tokenise other scripts poorly'),
        (4, coalesce(llm_rerank, false), 'all-minilm-l6-v2', NULL::text, NULL::int, false,
         'an LLM re-ranks the candidates, so the first stage only needs fast, cheap recall: all-MiniLM-L6-v2 (384 dims)'),
        (5, coalesce(storage, false), 'nomic-embed-text-v1.5', 'mxbai-embed-large-v1'::text, 128::int, false,
         'storage matters: an MRL model keeps most of its quality truncated; nomic 768 -> 128 dims stores 1/6 of the floats (0.5 GB instead of 3.0 GB per 1M documents)'),
        (6, coalesce(domain, false), 'gte-large-en-v1.5', 'e5-mistral-7b'::text, NULL::int, true,
         'domain-specific vocabulary: fine-tune a base model on your documents when the baseline Recall@10 on your validation pairs is below 60%, or when a fine-tuned model beats the base model with its rotation at your coarse dimension on held-out real queries'),
        (7, true, 'bge-large-en-v1.5', 'e5-mistral-7b'::text, NULL::int, false,
         'general English retrieval without special constraints: a strong general model')
    ) t(rank, applies, config, alternative, truncate_dim, fine_tune, reason)
    WHERE t.applies ORDER BY t.rank LIMIT 1
$fn$;
