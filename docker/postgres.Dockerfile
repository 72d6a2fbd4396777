# PostgreSQL + pgvector + plpython3u: the "full features" server (what scripts/setup-system-postgres.sh builds on
# a Debian host). Build from the repository root:
#   docker build -f docker/postgres.Dockerfile -t pgmrl-postgres .
#   docker run -d -e POSTGRES_PASSWORD=... -p 5432:5432 pgmrl-postgres
# The official image ships the PostgreSQL project's apt repository, which packages pgvector and PL/Python.
FROM postgres:15-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15-pgvector postgresql-plpython3-15 python3-numpy \
 && rm -rf /var/lib/apt/lists/*
# Created in new databases from template1; `pgmrl install` does the rest.
RUN printf 'CREATE EXTENSION IF NOT EXISTS vector;\nCREATE EXTENSION IF NOT EXISTS plpython3u;\n' \
      > /docker-entrypoint-initdb.d/10-pgmrl-extensions.sql
