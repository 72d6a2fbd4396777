-- GENERATED from pyext/pgmrl/guide/catalogue.json by `python -m pgmrl.guide.sqlgen`: edit that file, not this.
-- The models of the embedding model selection guide. Re-running the install refreshes these rows;
-- configs that users register (builtin = false) are never touched.
INSERT INTO mrl.embedding_configs AS c
       (name, model, provider, dims, supports_mrl, matryoshka_dims, default_truncate_dim,
        query_prefix, document_prefix, max_seq_length, params_millions, best_for, aliases, builtin)
VALUES
    ('all-minilm-l6-v2', 'sentence-transformers/all-MiniLM-L6-v2', 'sentence-transformers', 384, false, NULL, NULL,
     '', '', 256, 22.7, 'fast general English search; first stage before LLM re-ranking; bundled, works offline', '{all-minilm,minilm,all-minilm-l6}', true),
    ('nomic-embed-text-v1.5', 'nomic-ai/nomic-embed-text-v1.5', 'sentence-transformers', 768, true, '{768,512,256,128,64}', 256,
     'search_query: ', 'search_document: ', 8192, 137, 'storage-optimised search with Matryoshka truncation; long documents', '{nomic-embed-text,nomic}', true),
    ('mxbai-embed-large-v1', 'mixedbread-ai/mxbai-embed-large-v1', 'sentence-transformers', 1024, true, '{1024,512,256,128,64}', 512,
     'Represent this sentence for searching relevant passages: ', '', 512, 335, 'high-quality English search with Matryoshka truncation', '{mxbai-embed-large,mxbai}', true),
    ('bge-large-en-v1.5', 'BAAI/bge-large-en-v1.5', 'sentence-transformers', 1024, false, NULL, NULL,
     'Represent this sentence for searching relevant passages: ', '', 512, 335, 'high-quality general English retrieval', '{bge-large-en,bge-large}', true),
    ('e5-mistral-7b', 'intfloat/e5-mistral-7b-instruct', 'sentence-transformers', 4096, false, NULL, NULL,
     E'Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery: ', '', 4096, 7111, 'best quality when a GPU is available; base for domain fine-tuning', '{e5-mistral,e5-mistral-7b-instruct}', true),
    ('multilingual-e5-large', 'intfloat/multilingual-e5-large', 'sentence-transformers', 1024, false, NULL, NULL,
     'query: ', 'passage: ', 512, 560, 'multilingual and CJK search', '{multilingual-e5}', true),
    ('gte-large-en-v1.5', 'Alibaba-NLP/gte-large-en-v1.5', 'sentence-transformers', 1024, false, NULL, NULL,
     '', '', 8192, 434, 'domain-specific search after fine-tuning; long context', '{gte-large-en,gte-large}', true),
    ('multilingual-e5-small', 'intfloat/multilingual-e5-small', 'sentence-transformers', 384, false, NULL, NULL,
     'query: ', 'passage: ', 512, 118, 'multilingual and CJK search, fast', '{multilingual-e5-small}', true),
    ('jina-embeddings-v2-base-code', 'jinaai/jina-embeddings-v2-base-code', 'sentence-transformers', 768, false, NULL, NULL,
     '', '', 8192, 161, 'code search (natural language to code)', '{jina-code,code}', true)
ON CONFLICT (name) DO UPDATE
   SET model = EXCLUDED.model,
       provider = EXCLUDED.provider,
       dims = EXCLUDED.dims,
       supports_mrl = EXCLUDED.supports_mrl,
       matryoshka_dims = EXCLUDED.matryoshka_dims,
       default_truncate_dim = EXCLUDED.default_truncate_dim,
       query_prefix = EXCLUDED.query_prefix,
       document_prefix = EXCLUDED.document_prefix,
       max_seq_length = EXCLUDED.max_seq_length,
       params_millions = EXCLUDED.params_millions,
       best_for = EXCLUDED.best_for,
       aliases = EXCLUDED.aliases
 WHERE c.builtin;
