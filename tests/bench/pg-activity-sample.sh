#!/usr/bin/env bash
# A sampling profile of PostgreSQL while a benchmark runs: every 20 ms, what each busy backend is
# doing (running on CPU, or waiting: on a lock, on WAL flush, for its client), grouped by
# statement. Needs no extension and no restart.
#
#   bash tests/bench/pg-activity-sample.sh [seconds (30)] [database filter (all)]
#
# Prints the share of samples per (wait, statement), most first. "CPU" means active with no wait
# event; "ClientRead" inside a transaction means the service is working between statements.
set -euo pipefail
SECONDS_TO_SAMPLE=${1:-30}
DB_FILTER=${2:-}
PG_PORT=${TT_PG_PORT:-55432}
ITER=$((SECONDS_TO_SAMPLE * 50))
psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -q <<SQL
CREATE TEMP TABLE samples (at timestamptz, backend text, state text, wait text, query text);
DO \$\$
BEGIN
  FOR i IN 1..$ITER LOOP
    PERFORM pg_stat_clear_snapshot();
    INSERT INTO samples
      SELECT clock_timestamp(), backend_type, state,
             coalesce(wait_event_type || ':' || wait_event, 'CPU'),
             regexp_replace(left(query, 110), '\s+', ' ', 'g')
      FROM pg_stat_activity
      WHERE pid <> pg_backend_pid()
        AND ('$DB_FILTER' = '' OR datname = '$DB_FILTER' OR datname IS NULL)
        AND (state IN ('active', 'idle in transaction') OR backend_type NOT IN ('client backend'))
        AND coalesce(wait_event, '') NOT IN ('WalWriterMain', 'CheckpointerMain', 'BgWriterHibernate',
            'BgWriterMain', 'AutoVacuumMain', 'LogicalLauncherMain', 'ArchiverMain');
    PERFORM pg_sleep(0.02);
  END LOOP;
END
\$\$;
\echo samples taken: $ITER (every 20 ms); busy backend-samples per wait and statement
SELECT count(*) AS n, round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS pct, state, wait, query
FROM samples GROUP BY state, wait, query ORDER BY n DESC LIMIT 40;
\echo by wait only
SELECT count(*) AS n, round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS pct, wait
FROM samples GROUP BY wait ORDER BY n DESC LIMIT 15;
SQL
