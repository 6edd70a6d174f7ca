#!/usr/bin/env bash
# Private PostgreSQL and Redis servers on loopback, for ./scripts/up and the tests.
# Usage:
#   servers.sh pg-start DIR PORT [fast]   initdb if needed, start (fast: fsync off, for tests)
#   servers.sh pg-stop DIR
#   servers.sh pg-createdb PORT NAME      create a database if it does not exist
#   servers.sh redis-start DIR PORT [PASSWORD]   (requirepass; also set on a running one)
#   servers.sh redis-stop DIR
#   servers.sh pg-freeze DIR | pg-thaw DIR   SIGSTOP / SIGCONT the postmaster and every backend
#                                         (a hung server: sockets accept, nothing answers)
# PostgreSQL refuses to run as root: as root it runs as the 'postgres' system user.
set -euo pipefail

PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}

as_pg() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# A directory the postgres user can reach: DIR itself if it can, else a private directory
# under /var/tmp that DIR links to (e.g. a clone under /root, which postgres cannot enter).
pg_reachable_dir() {
  local dir=$1
  mkdir -p "$dir"
  if [[ $(id -u) -ne 0 ]]; then echo "$dir"; return; fi
  if [[ -L $dir ]]; then readlink -f "$dir"; return; fi
  chown postgres: "$dir"
  if runuser -u postgres -- test -w "$dir"; then echo "$dir"; return; fi
  local real
  real=/var/tmp/safeharbor-pg-$(echo -n "$(readlink -f "$dir")" | sha1sum | cut -c1-12)
  mkdir -p "$real" && chown postgres: "$real" && chmod 700 "$real"
  rmdir "$dir" 2>/dev/null || rm -rf "$dir"
  ln -s "$real" "$dir"
  echo "$real"
}

pg_start() {
  local dir port fast
  dir=$(pg_reachable_dir "$1"); port=$2; fast=${3:-}
  if [[ ! -f $dir/PG_VERSION ]]; then
    as_pg "$PG_BIN/initdb" -D "$dir" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >"$dir.initdb.log" 2>&1 \
      || { cat "$dir.initdb.log" >&2; exit 1; }
  fi
  if as_pg "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then return 0; fi
  local opts="-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200"
  [[ $fast == fast ]] && opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  as_pg "$PG_BIN/pg_ctl" -D "$dir" -o "$opts" -l "$dir/server.log" -w -t 60 start >/dev/null \
    || { tail -n 20 "$dir/server.log" >&2; exit 1; }
}

pg_stop() {
  local dir=$1
  [[ -d $dir ]] || return 0
  dir=$(readlink -f "$dir")
  [[ -f $dir/postmaster.pid ]] || return 0
  as_pg "$PG_BIN/pg_ctl" -D "$dir" -m fast -w -t 60 stop >/dev/null 2>&1 || true
}

pg_createdb() {
  local port=$1 name=$2
  if ! psql -h 127.0.0.1 -p "$port" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$name'" | grep -q 1; then
    psql -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE \"$name\"" >/dev/null
  fi
}

redis_start() {
  local dir=$1 port=$2 password=${3:-}
  local cli=(redis-cli -h 127.0.0.1 -p "$port")
  [[ -n $password ]] && cli+=(--no-auth-warning -a "$password")
  mkdir -p "$dir"
  if [[ -f $dir/redis.pid ]] && kill -0 "$(cat "$dir/redis.pid")" 2>/dev/null; then
    # Started before it had a password: give it one (refused if it already has another).
    if [[ -n $password ]] && redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then
      redis-cli -h 127.0.0.1 -p "$port" config set requirepass "$password" >/dev/null
    fi
    return 0
  fi
  local args=(--port "$port" --bind 127.0.0.1 --daemonize yes --pidfile "$dir/redis.pid"
    --dir "$dir" --logfile "$dir/redis.log" --save '' --appendonly no)
  [[ -n $password ]] && args+=(--requirepass "$password")
  redis-server "${args[@]}" >/dev/null
  for _ in $(seq 1 100); do
    "${cli[@]}" ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.05
  done
  echo "redis did not start on port $port" >&2; exit 1
}

redis_stop() {
  local dir=$1 pid
  [[ -f $dir/redis.pid ]] || return 0
  pid=$(cat "$dir/redis.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  rm -f "$dir/redis.pid"
}

pg_signal() {
  local dir=$1 sig=$2 pid
  dir=$(readlink -f "$dir")
  pid=$(head -n 1 "$dir/postmaster.pid")
  # The postmaster first on STOP (it forks no new backend), last on CONT.
  if [[ $sig == STOP ]]; then kill -STOP "$pid"; fi
  pgrep -P "$pid" | xargs -r kill -"$sig"
  if [[ $sig == CONT ]]; then kill -CONT "$pid"; fi
}

cmd=${1:?usage: servers.sh pg-start|pg-stop|pg-createdb|redis-start|redis-stop ...}
shift
case $cmd in
  pg-start) pg_start "$@" ;;
  pg-stop) pg_stop "$@" ;;
  pg-createdb) pg_createdb "$@" ;;
  redis-start) redis_start "$@" ;;
  redis-stop) redis_stop "$@" ;;
  pg-freeze) pg_signal "$1" STOP ;;
  pg-thaw) pg_signal "$1" CONT ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
