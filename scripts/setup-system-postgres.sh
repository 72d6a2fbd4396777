#!/usr/bin/env bash
# The "full features" server: Debian's PostgreSQL 15 with PL/Python (plpython3u) and pgvector.
# pgvector is not packaged for Debian 12, so it is built from Debian's own source package of the next release.
# Idempotent; run as root. Prints the DSN (also kept in /etc/pgmrl/system-dsn, readable by root only).
set -euo pipefail

PGV=${PGMRL_PG_VERSION:-15}
PG_CONFIG=/usr/lib/postgresql/$PGV/bin/pg_config
DSN_FILE=/etc/pgmrl/system-dsn
log() { echo "setup-system-postgres: $*" >&2; }

[ "$(id -u)" = 0 ] || { log "run me as root"; exit 1; }
export DEBIAN_FRONTEND=noninteractive

need=()
for p in postgresql-$PGV postgresql-server-dev-$PGV postgresql-plpython3-$PGV python3-numpy dpkg-dev make gcc; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -f "$($PG_CONFIG --sharedir)/extension/vector.control" ]; then
  # deb-src for the next Debian release, on the same mirror this machine already uses.
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list)
  src=/etc/apt/sources.list.d/pgmrl-trixie-src.list
  [ -f "$src" ] || echo "deb-src $mirror trixie main" > "$src"
  apt-get update -qq
  build=$(mktemp -d)
  log "building pgvector from Debian's source package in $build"
  (cd "$build" && apt-get source -qq pgvector >/dev/null 2>&1 && cd pgvector-*/ \
     && make -s PG_CONFIG="$PG_CONFIG" >/dev/null && make -s install PG_CONFIG="$PG_CONFIG" >/dev/null)
  rm -rf "$build"
fi

if ! pg_lsclusters -h | awk -v v="$PGV" '$1 == v && $2 == "main"' | grep -q .; then
  pg_createcluster "$PGV" main >/dev/null
fi
pg_lsclusters -h | awk -v v="$PGV" '$1 == v && $2 == "main" {print $4}' | grep -q online || pg_ctlcluster "$PGV" main start
port=$(pg_lsclusters -h | awk -v v="$PGV" '$1 == v && $2 == "main" {print $3}')

mkdir -p /etc/pgmrl && chmod 700 /etc/pgmrl
if [ ! -s "$DSN_FILE" ]; then
  pw=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
  echo "postgresql://pgmrl:$pw@127.0.0.1:$port/postgres" > "$DSN_FILE"
  chmod 600 "$DSN_FILE"
fi
pw=$(sed -E 's|.*://pgmrl:([^@]*)@.*|\1|' "$DSN_FILE")
# A superuser for the tests and for `pgmrl install` (creating plpython3u needs one).
su postgres -c "psql -q -p $port -v ON_ERROR_STOP=1 -v pw='$pw'" <<'SQL'
SELECT format('CREATE ROLE pgmrl LOGIN SUPERUSER PASSWORD %L', :'pw') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgmrl') \gexec
ALTER ROLE pgmrl PASSWORD :'pw';
SQL
log "PostgreSQL $PGV with plpython3u and pgvector $(awk -F"'" '/default_version/ {print $2}' "$($PG_CONFIG --sharedir)/extension/vector.control") is ready"
cat "$DSN_FILE"
