#!/usr/bin/env bash
# The local stack: PostgreSQL and Redis under .local/ (git-ignored) on loopback ports.
# Installs them with apt when missing; idempotent; works as root (Postgres then runs as the
# 'postgres' system user) or as a normal user; stopped by pid.
#
#   scripts/stack.sh up      start what is not running (prints STARTED=pg,redis for callers)
#   scripts/stack.sh down    stop both
#   scripts/stack.sh status
#   scripts/stack.sh env     print the connection settings
#   scripts/stack.sh install install what is missing, start nothing; print PGBIN= and PG_USER=
#                            (for scripts that run private instances, such as scripts/chaos.sh)
#   scripts/stack.sh tls-up DIR PG_PORT REDIS_PORT
#                            a second, private Postgres (ssl=on, TLS connections only) and a
#                            TLS-only Redis on loopback, serving DIR/server.crt and DIR/server.key
#                            (for localhost, from a throw-away CA the caller made: DIR/ca.crt),
#                            their state under DIR; prints TLS_PG_URL= and TLS_REDIS_URL=
#                            (verify-full). The shared stack is not touched. tests/tests/tls.rs.
#   scripts/stack.sh tls-down DIR   stop them
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOCAL="$ROOT/.local"
PG_PORT=${TT_PG_PORT:-55432}
REDIS_PORT=${TT_REDIS_PORT:-56379}
REDIS_DIR="$LOCAL/redis"
mkdir -p "$LOCAL"

log() { echo "[stack] $*" >&2; }

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@";
  elif command -v sudo >/dev/null; then sudo "$@";
  else log "need root to run: $*"; return 1; fi
}

APT_UPDATED=""
apt_install() {
  if ! command -v apt-get >/dev/null; then
    log "apt-get not found: install $* yourself"; return 1
  fi
  if [[ -z $APT_UPDATED ]]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    APT_UPDATED=1
  fi
  # policy-rc.d keeps the packages' own services from starting; we run our own instances.
  as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
  as_root rm -f /usr/sbin/policy-rc.d
}

pg_bindir() {
  local d
  if command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/initdb" ]]; then
    pg_config --bindir; return
  fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [[ -x $d/initdb && -x $d/pg_ctl ]] && { echo "$d"; return; }
  done
  return 1
}

ensure_pg_installed() {
  if ! pg_bindir >/dev/null; then
    log "installing PostgreSQL"
    apt_install postgresql postgresql-contrib
  fi
  PGBIN=$(pg_bindir)
}

# The TLS tests (tests/tests/tls.rs) make their throw-away CA with the openssl CLI.
ensure_openssl_installed() {
  command -v openssl >/dev/null || { log "installing openssl"; apt_install openssl; }
  # tests/tests/api_keys.rs reads an export with curl, as an integration's script would.
  command -v curl >/dev/null || { log "installing curl"; apt_install curl; }
}

ensure_redis_installed() {
  if ! command -v redis-server >/dev/null; then
    log "installing Redis"
    apt_install redis-server
  fi
}

# Postgres refuses to run as root: use the postgres system user then.
pg_user() {
  if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    echo postgres
  else
    id -un
  fi
}

as_pg() {
  local u; u=$(pg_user)
  if [[ $u == "$(id -un)" ]]; then "$@"; else runuser -u "$u" -- "$@"; fi
}

# As root, Postgres runs as 'postgres', which must be able to reach its data directory; when the
# checkout is not reachable by it (a private home, say), the cluster lives under /var/tmp instead.
if [[ $(id -u) -eq 0 ]]; then
  pg_user >/dev/null
  if runuser -u postgres -- test -x "$LOCAL" 2>/dev/null; then
    PG_DIR="$LOCAL/pg"
  else
    PG_DIR="/var/tmp/tracetrack-pg-$(printf %s "$ROOT" | sha1sum | cut -c1-12)"
  fi
else
  PG_DIR="$LOCAL/pg"
fi

pg_running() {
  [[ -f $PG_DIR/data/postmaster.pid ]] && as_pg "$PGBIN/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1
}

# Settings for this load (issue 18, docs/operations.md § Postgres settings), rewritten on every
# `up` so an existing cluster gets them too (shared_buffers at its next start, the rest at once).
# Durability is left as it is: fsync, synchronous_commit and full_page_writes keep their defaults.
pg_tuning() {
  local conf="$PG_DIR/data/postgresql.conf"
  # A quarter of the machine's memory, between 256 MB and 4 GB (PostgreSQL's own guidance): at
  # 4,000,000 bags the database is ~4 GB, and with 256 MB every audit row and idempotency probe
  # read index pages back from the kernel's cache and wrote evicted pages itself.
  local mem_mb; mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo 2>/dev/null || echo 1024)
  local buffers_mb=$(( mem_mb / 4 )); (( buffers_mb > 4096 )) && buffers_mb=4096; (( buffers_mb < 256 )) && buffers_mb=256
  grep -q "^include_if_exists 'tracetrack-tuning.conf'" "$conf" \
    || echo "include_if_exists 'tracetrack-tuning.conf'" >> "$conf"
  cat > "$PG_DIR/data/tracetrack-tuning.conf" <<CONF
# Written by scripts/stack.sh on every 'up'; edit there.
# Checkpoints every 15 min or 4 GB of WAL instead of 5 min / 1 GB: fewer checkpoints, and fewer
# full-page images after them, while seeding millions of bags and under sustained scanning.
max_wal_size = 4GB
checkpoint_timeout = 15min
shared_buffers = ${buffers_mb}MB
CONF
  if [[ $(id -u) -eq 0 ]]; then chown "$(pg_user)" "$PG_DIR/data/tracetrack-tuning.conf"; fi
}

pg_up() {
  ensure_pg_installed
  mkdir -p "$PG_DIR/run"
  if [[ $(id -u) -eq 0 ]]; then chown -R "$(pg_user)" "$PG_DIR"; fi
  if [[ ! -f $PG_DIR/data/PG_VERSION ]]; then
    log "initialising a cluster in $PG_DIR/data"
    as_pg "$PGBIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null \
      || as_pg "$PGBIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust --encoding=UTF8 --no-locale >/dev/null
    cat >> "$PG_DIR/data/postgresql.conf" <<CONF
# TraceTrack local cluster
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DIR/run'
max_connections = 600
shared_buffers = 256MB
timezone = 'UTC'
log_min_messages = warning
CONF
  fi
  pg_tuning
  if pg_running; then
    as_pg "$PGBIN/pg_ctl" -D "$PG_DIR/data" reload >/dev/null 2>&1 || true
    return 1
  fi
  log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
  as_pg "$PGBIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 60 start >/dev/null
  return 0
}

redis_running() {
  [[ -f $REDIS_DIR/redis.pid ]] && kill -0 "$(cat "$REDIS_DIR/redis.pid")" 2>/dev/null
}

redis_up() {
  ensure_redis_installed
  ensure_openssl_installed
  mkdir -p "$REDIS_DIR"
  if redis_running; then return 1; fi
  log "starting Redis on 127.0.0.1:$REDIS_PORT"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes \
    --pidfile "$REDIS_DIR/redis.pid" --dir "$REDIS_DIR" --logfile "$REDIS_DIR/redis.log" \
    --save "" --appendonly no --maxclients 2000 >/dev/null
  for _ in $(seq 1 100); do
    redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.1
  done
  log "Redis did not answer"; exit 1
}

case ${1:-up} in
  up)
    started=()
    if pg_up; then started+=(pg); fi
    if redis_up; then started+=(redis); fi
    as_pg "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" || { log "PostgreSQL not ready"; exit 1; }
    echo "STARTED=$(IFS=,; echo "${started[*]:-}")"
    ;;
  down)
    PGBIN=$(pg_bindir || true)
    if [[ -n ${PGBIN:-} ]] && pg_running; then
      log "stopping PostgreSQL"; as_pg "$PGBIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null
    fi
    if redis_running; then
      log "stopping Redis"; kill "$(cat "$REDIS_DIR/redis.pid")"
      for _ in $(seq 1 50); do redis_running || break; sleep 0.1; done
    fi
    ;;
  down-redis)
    if redis_running; then kill "$(cat "$REDIS_DIR/redis.pid")"; fi
    ;;
  down-pg)
    PGBIN=$(pg_bindir); pg_running && as_pg "$PGBIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null || true
    ;;
  status)
    PGBIN=$(pg_bindir || true)
    if [[ -n ${PGBIN:-} ]] && pg_running; then echo "postgres: running on $PG_PORT"; else echo "postgres: stopped"; fi
    if redis_running; then echo "redis: running on $REDIS_PORT"; else echo "redis: stopped"; fi
    ;;
  psql)
    # scripts/stack.sh psql [args…]: psql as the superuser on the local cluster.
    shift; PGBIN=$(pg_bindir)
    exec "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"
    ;;
  install)
    ensure_pg_installed
    ensure_redis_installed
    ensure_openssl_installed
    echo "PGBIN=$PGBIN"
    echo "PG_USER=$(pg_user)"
    ;;
  tls-up)
    dir=$(cd "${2:?usage: $0 tls-up DIR PG_PORT REDIS_PORT}" && pwd)
    tpg=${3:?PG_PORT}; tredis=${4:?REDIS_PORT}
    for f in ca.crt server.crt server.key; do
      [[ -f $dir/$f ]] || { log "$dir/$f is missing"; exit 1; }
    done
    ensure_pg_installed
    ensure_redis_installed
    mkdir -p "$dir/pg"
    # Postgres wants its key readable by itself only.
    install -m 600 "$dir/server.key" "$dir/pg/server.key"
    install -m 644 "$dir/server.crt" "$dir/pg/server.crt"
    if [[ $(id -u) -eq 0 ]]; then chmod 755 "$dir"; chown -R "$(pg_user)" "$dir/pg"; fi
    as_pg "$PGBIN/initdb" -D "$dir/pg/data" -U postgres --auth=trust --encoding=UTF8 --no-locale >/dev/null
    cat >> "$dir/pg/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $tpg
unix_socket_directories = '$dir/pg'
ssl = on
ssl_cert_file = '$dir/pg/server.crt'
ssl_key_file = '$dir/pg/server.key'
max_connections = 100
fsync = off
timezone = 'UTC'
log_min_messages = warning
CONF
    # TLS or nothing: a client that does not ask for it is refused.
    cat > "$dir/pg/data/pg_hba.conf" <<HBA
local     all all              trust
hostssl   all all 127.0.0.1/32 trust
hostnossl all all 127.0.0.1/32 reject
HBA
    log "starting PostgreSQL with TLS on 127.0.0.1:$tpg"
    as_pg "$PGBIN/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/postgres.log" -w -t 60 start >/dev/null
    log "starting Redis with TLS only on 127.0.0.1:$tredis"
    redis-server --port 0 --tls-port "$tredis" --bind 127.0.0.1 --daemonize yes \
      --tls-cert-file "$dir/server.crt" --tls-key-file "$dir/server.key" \
      --tls-ca-cert-file "$dir/ca.crt" --tls-auth-clients no \
      --pidfile "$dir/redis.pid" --dir "$dir" --logfile "$dir/redis.log" \
      --save "" --appendonly no >/dev/null
    for _ in $(seq 1 100); do
      redis-cli --tls --cacert "$dir/ca.crt" -h localhost -p "$tredis" ping 2>/dev/null | grep -q PONG && break
      sleep 0.1
    done
    as_pg "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$tpg" || { log "PostgreSQL with TLS not ready"; exit 1; }
    echo "TLS_PG_URL=postgres://postgres@localhost:$tpg/postgres?sslmode=verify-full&sslrootcert=$dir/ca.crt"
    echo "TLS_REDIS_URL=rediss://localhost:$tredis"
    ;;
  tls-down)
    dir=$(cd "${2:?usage: $0 tls-down DIR}" && pwd)
    PGBIN=$(pg_bindir || true)
    if [[ -n ${PGBIN:-} && -f $dir/pg/data/postmaster.pid ]]; then
      as_pg "$PGBIN/pg_ctl" -D "$dir/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if [[ -f $dir/redis.pid ]] && kill -0 "$(cat "$dir/redis.pid")" 2>/dev/null; then
      kill "$(cat "$dir/redis.pid")"
    fi
    ;;
  env)
    echo "TRACETRACK_TEST_PG=postgres://postgres@127.0.0.1:$PG_PORT/postgres"
    echo "TRACETRACK_TEST_REDIS=redis://127.0.0.1:$REDIS_PORT"
    ;;
  *) echo "usage: $0 up|down|status|env|psql|install|tls-up|tls-down" >&2; exit 2 ;;
esac
