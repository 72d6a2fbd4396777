# The pgmrl sidecar (worker). Build from the repository root:
#   docker build -f docker/sidecar.Dockerfile -t pgmrl-sidecar .
#   docker run --rm -e PGMRL_DSN=postgresql://user@db/app pgmrl-sidecar
# PIP_EXTRA_INDEX_URL may point pip at a CPU-only (or CUDA) torch index.
FROM python:3.11-slim
ARG PIP_EXTRA_INDEX_URL=
WORKDIR /opt/pgmrl
COPY pyproject.toml constraints.txt README.md ./
COPY sql ./sql
COPY pyext ./pyext
RUN pip install --no-cache-dir -c constraints.txt . \
 && useradd --system --no-create-home pgmrl
USER pgmrl
ENV HF_HUB_OFFLINE=1

# Install the schema on start-up (idempotent), then serve.
ENTRYPOINT ["sh", "-c", "pgmrl install && exec pgmrl \"$@\"", "pgmrl"]
CMD ["serve"]
