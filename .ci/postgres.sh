# Start a throwaway PostgreSQL cluster owned by the postgres user, listening on 127.0.0.1 only.
# Used by .ci/run and usable by hand: `source .ci/postgres.sh && start_postgres`.
PG_PORT="${PG_PORT:-54329}"
PG_DIR="${PG_DIR:-/tmp/govcon-ci-pg}"

start_postgres() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  if [ -f "$PG_DIR/data/postmaster.pid" ] && runuser -u postgres -- "$bin/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1; then
    :
  else
    rm -rf "$PG_DIR"
    mkdir -p "$PG_DIR"
    chown postgres:postgres "$PG_DIR"
    runuser -u postgres -- "$bin/initdb" -D "$PG_DIR/data" -U postgres --auth=trust >/dev/null
    runuser -u postgres -- "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c fsync=off -c max_connections=200" start >/dev/null
  fi
  runuser -u postgres -- psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qtAc \
    "SELECT 1 FROM pg_roles WHERE rolname='govcon'" | grep -q 1 || \
    runuser -u postgres -- psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc \
      "CREATE ROLE govcon LOGIN PASSWORD 'govcon' SUPERUSER"
  runuser -u postgres -- psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qtAc \
    "SELECT 1 FROM pg_database WHERE datname='govcon_test'" | grep -q 1 || \
    runuser -u postgres -- psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE govcon_test OWNER govcon"
  GOVCON_TEST_POSTGRES_URL="postgresql+psycopg://govcon:govcon@127.0.0.1:$PG_PORT/govcon_test"
  export GOVCON_TEST_POSTGRES_URL
}

stop_postgres() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  runuser -u postgres -- "$bin/pg_ctl" -D "$PG_DIR/data" -m fast stop >/dev/null 2>&1 || true
}
