#!/usr/bin/env bash
# EXPLAIN (ANALYZE, BUFFERS) of the hot queries of bag-registry and scan, on a seeded database,
# printed as Markdown. The SQL is the services' own text (services/bag-registry/src/grpc.rs,
# store.rs; services/scan/src/store.rs), PREPAREd with the parameter types sqlx binds and
# EXECUTEd with real values picked from the data. Each statement is shown with the plan the
# server picks for those values (custom plan); statements written with "$n IS NULL OR …"
# filters are also shown with their generic plan, which a long-lived connection's prepared
# statement may switch to after five executions (plan_cache_mode = auto). Writes run inside
# BEGIN … ROLLBACK and change nothing.
#
#   bash tests/bench/explain-hot-queries.sh [database]   (default tt_bench; uses scripts/stack.sh psql)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DB=${1:-tt_bench}

psql_at() { bash "$ROOT/scripts/stack.sh" psql -d "$DB" -At -P pager=off "$@"; }
one() { psql_at -c "$1" | head -n 1; }

COLS="b.qr, b.kind, b.product_line, b.status, b.child_count, b.capacity, b.parent_weight_kg, b.child_weight_kg, b.area, b.parent_qr, b.bill_id, b.frozen, b.created_at, b.created_by, b.linked_at, b.linked_by"
SCAN_COLS="id, occurred_at, user_id, username, kind, area, parent_qr, child_qr, raw_input, outcome, parent_child_count, parent_capacity, idempotency_key"

# ---------------------------------------------------------------- real values from the data
ADMIN=$(one "SELECT id FROM auth.users WHERE username = 'admin'")
# A seeded mustard parent with room left.
PARENT=$(one "SELECT qr FROM registry.bags WHERE qr >= 'SB01000' AND qr < 'SB9' AND kind = 'parent' AND child_count BETWEEN 5 AND 20 AND NOT frozen ORDER BY qr LIMIT 1")
IFS='|' read -r P_AREA P_LINE P_WEIGHT < <(psql_at -c "SELECT area, product_line, child_weight_kg FROM registry.bags WHERE qr = '$PARENT'")
# A seeded child that is not linked, and a seeded linked child (of another parent).
UNLINKED=$(one "SELECT qr FROM registry.bags WHERE qr >= 'C000500000' AND qr < 'D' AND parent_qr IS NULL ORDER BY qr LIMIT 1")
# A parent with a link made within the last hour, and who made it (undo's selection).
IFS='|' read -r UNDO_PARENT UNDO_USER < <(psql_at -c "SELECT parent_qr, linked_by FROM registry.bags WHERE parent_qr IS NOT NULL AND linked_at > now() - interval '1 hour' ORDER BY linked_at DESC LIMIT 1")
PREFIX=${PARENT:0:5}
SEARCH_AREA=$P_AREA
# The 50th bag of the first newest-first page of that area's parents: the second page's key.
IFS='|' read -r AFTER_AT AFTER_QR < <(psql_at -c "SELECT created_at, qr FROM registry.bags b WHERE kind = 'parent' AND area = '$SEARCH_AREA' ORDER BY created_at DESC, qr DESC OFFSET 49 LIMIT 1")
# Bills: the seed attaches no parent to a bill, so GetBillFigures runs on 20,000 parents put on
# 1,000 bills inside the transaction (ANALYZEd there too) and rolled back.
BILLS="ARRAY['BILL-000017','BILL-000500','BILL-000999']"

cat <<EOF
Values used: admin user \`$ADMIN\`; parent \`$PARENT\` ($P_LINE, $P_AREA); unlinked child
\`$UNLINKED\`; undo on \`$UNDO_PARENT\` by \`$UNDO_USER\`; QR prefix \`$PREFIX\`; newest-first
search on parents of \`$SEARCH_AREA\`, second page after (\`$AFTER_AT\`, \`$AFTER_QR\`).

EOF

# section TITLE SQL-FOR-DISPLAY SCRIPT: prints the title, the statement, and psql's output of
# the script (which holds the EXPLAINs).
section() {
  printf '### %s\n\n```sql\n%s\n```\n\n```\n' "$1" "$2"
  psql_at <<<"$3" 2>&1
  printf '```\n\n'
}

explain_both() { # name -> custom then generic EXPLAIN of "EXECUTE name(args)"
  local exec=$1
  cat <<EOF
SET plan_cache_mode = force_custom_plan;
\\echo '-- custom plan (the values are known when planning):'
EXPLAIN (ANALYZE, BUFFERS) $exec;
SET plan_cache_mode = force_generic_plan;
\\echo '-- generic plan (what a prepared statement may switch to after 5 runs):'
EXPLAIN (ANALYZE, BUFFERS) $exec;
EOF
}

Q_GET="SELECT $COLS FROM registry.bags b WHERE b.qr = \$1"
section "GetBag / store::bag — bag by QR (also run twice per LinkChild and per EnsureParent)" "$Q_GET" "
PREPARE q(text) AS $Q_GET;
$(explain_both "EXECUTE q('$PARENT')")"

Q_LINK="WITH b AS (
  INSERT INTO registry.bags AS x (qr, kind, area, product_line, child_weight_kg, parent_qr, linked_by, linked_at, created_by)
  VALUES (\$1, 'child', \$3, \$5, \$6, \$2, \$4, now(), \$4)
  ON CONFLICT (qr) DO UPDATE SET parent_qr = EXCLUDED.parent_qr, linked_by = EXCLUDED.linked_by,
                                linked_at = EXCLUDED.linked_at, area = EXCLUDED.area,
                                product_line = EXCLUDED.product_line, child_weight_kg = EXCLUDED.child_weight_kg
    WHERE x.kind = 'child' AND x.parent_qr IS NULL
  RETURNING *)
SELECT $COLS FROM b"
AUTO_EXPLAIN="LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_analyze = on;
SET auto_explain.log_buffers = on;
SET auto_explain.log_nested_statements = on;
SET client_min_messages = log;"
# Links made and rolled back first warm the session (plpgsql and foreign-key plans are cached
# per connection, as they are on the services' pooled connections); auto_explain then shows the
# statements the trigger and the foreign keys run (its last block repeats the EXPLAIN itself).
# Both LinkChild sections: the statement prepared, and two links made in an open transaction.
LINK_WARM="PREPARE q(text, text, text, uuid, text, float8) AS $Q_LINK;
BEGIN;
\\o /dev/null
EXECUTE q('BENCHWARM0001', '$PARENT', '$P_AREA', '$ADMIN', '$P_LINE', $P_WEIGHT);
EXECUTE q('BENCHWARM0002', '$PARENT', '$P_AREA', '$ADMIN', '$P_LINE', $P_WEIGHT);"
section "LinkChild — the link statement, a new child (insert path); trigger statements via auto_explain" "$Q_LINK" "
$LINK_WARM
EXECUTE q('BENCHWARM0003', '$PARENT', '$P_AREA', '$ADMIN', '$P_LINE', $P_WEIGHT);
\\o
ROLLBACK;
BEGIN;
$AUTO_EXPLAIN
EXPLAIN (ANALYZE, BUFFERS) EXECUTE q('BENCHNEW0001', '$PARENT', '$P_AREA', '$ADMIN', '$P_LINE', $P_WEIGHT);
ROLLBACK;"
section "LinkChild — the same statement, an existing unlinked child (ON CONFLICT DO UPDATE path)" "(same statement)" "
$LINK_WARM
\\o
ROLLBACK;
BEGIN;
EXPLAIN (ANALYZE, BUFFERS) EXECUTE q('$UNLINKED', '$PARENT', '$P_AREA', '$ADMIN', '$P_LINE', $P_WEIGHT);
ROLLBACK;"

Q_UNDO="WITH c AS (SELECT qr FROM registry.bags
              WHERE parent_qr = \$1 AND linked_by = \$2 AND linked_at > now() - interval '1 hour'
              ORDER BY linked_at DESC, qr DESC LIMIT 1 FOR UPDATE SKIP LOCKED)
UPDATE registry.bags b SET parent_qr = NULL, linked_by = NULL, linked_at = NULL
FROM c WHERE b.qr = c.qr RETURNING b.qr"
section "UndoLastLink — select the caller's newest link on the parent and unlink it" "$Q_UNDO" "
PREPARE q(text, uuid) AS $Q_UNDO;
BEGIN;
EXPLAIN (ANALYZE, BUFFERS) EXECUTE q('$UNDO_PARENT', '$UNDO_USER');
ROLLBACK;"

Q_CHILDREN="SELECT $COLS FROM registry.bags b
WHERE b.parent_qr = \$1 AND (\$2::text IS NULL OR b.qr > \$2) ORDER BY b.qr LIMIT \$3"
section "ListChildren — children of a parent, first page" "$Q_CHILDREN" "
PREPARE q(text, text, int8) AS $Q_CHILDREN;
$(explain_both "EXECUTE q('$PARENT', NULL, 51)")"

Q_PREFIX="SELECT $COLS FROM registry.bags b
WHERE b.qr >= \$1 AND b.qr < \$2 AND (\$3::text IS NULL OR b.qr > \$3)
  AND (\$4::text IS NULL OR b.kind = \$4) AND (\$5::text IS NULL OR b.area = \$5)
  AND (\$6::bool IS NULL OR (CASE WHEN b.kind = 'child' THEN b.parent_qr IS NOT NULL ELSE b.child_count > 0 END) = \$6)
  AND (\$7::bool IS NULL OR (b.bill_id IS NOT NULL) = \$7)
  AND (\$8::timestamptz IS NULL OR b.created_at >= \$8) AND (\$9::timestamptz IS NULL OR b.created_at < \$9)
ORDER BY b.qr LIMIT \$10"
section "SearchBags by QR prefix ('$PREFIX', no other filter, first page)" "$Q_PREFIX" "
PREPARE q(text, text, text, text, text, bool, bool, timestamptz, timestamptz, int8) AS $Q_PREFIX;
$(explain_both "EXECUTE q('$PREFIX', E'$PREFIX\\U0010FFFF', NULL, NULL, NULL, NULL, NULL, NULL, NULL, 51)")"

Q_NEWEST="SELECT $COLS FROM registry.bags b
WHERE (\$1::timestamptz IS NULL OR (b.created_at, b.qr) < (\$1, \$2))
  AND (\$3::text IS NULL OR b.kind = \$3) AND (\$4::text IS NULL OR b.area = \$4)
  AND (\$5::bool IS NULL OR (CASE WHEN b.kind = 'child' THEN b.parent_qr IS NOT NULL ELSE b.child_count > 0 END) = \$5)
  AND (\$6::bool IS NULL OR (b.bill_id IS NOT NULL) = \$6)
  AND (\$7::timestamptz IS NULL OR b.created_at >= \$7) AND (\$8::timestamptz IS NULL OR b.created_at < \$8)
ORDER BY b.created_at DESC, b.qr DESC LIMIT \$9"
section "SearchBags newest first, type = parent, area = $SEARCH_AREA — first page" "$Q_NEWEST" "
PREPARE q(timestamptz, text, text, text, bool, bool, timestamptz, timestamptz, int8) AS $Q_NEWEST;
$(explain_both "EXECUTE q(NULL, NULL, 'parent', '$SEARCH_AREA', NULL, NULL, NULL, NULL, 51)")"
section "SearchBags newest first, type = parent, area = $SEARCH_AREA — second page (keyset)" "(same statement)" "
PREPARE q(timestamptz, text, text, text, bool, bool, timestamptz, timestamptz, int8) AS $Q_NEWEST;
$(explain_both "EXECUTE q('$AFTER_AT', '$AFTER_QR', 'parent', '$SEARCH_AREA', NULL, NULL, NULL, NULL, 51)")"
section "SearchBags newest first, no filter at all — first page" "(same statement)" "
PREPARE q(timestamptz, text, text, text, bool, bool, timestamptz, timestamptz, int8) AS $Q_NEWEST;
$(explain_both "EXECUTE q(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 51)")"

Q_BILL="SELECT bill_id, count(*), coalesce(sum(child_count), 0)::bigint,
       coalesce(sum(child_count * child_weight_kg), 0)::float8, coalesce(sum(parent_weight_kg), 0)::float8
FROM registry.bags WHERE bill_id = ANY(\$1) GROUP BY bill_id"
section "GetBillFigures — three bills (20,000 parents on 1,000 bills, set up in the transaction and rolled back)" "$Q_BILL" "
PREPARE q(text[]) AS $Q_BILL;
BEGIN;
UPDATE registry.bags SET bill_id = 'BILL-' || lpad((n % 1000)::text, 6, '0')
  FROM (SELECT qr, row_number() OVER (ORDER BY qr) AS n FROM registry.bags
        WHERE qr >= 'SB00000' AND qr < 'SB9' AND kind = 'parent' ORDER BY qr LIMIT 20000) p
 WHERE registry.bags.qr = p.qr;
ANALYZE registry.bags;
$(explain_both "EXECUTE q($BILLS)")
ROLLBACK;"

Q_SCANS="SELECT $SCAN_COLS FROM scan.scan_events WHERE true AND user_id = \$1 ORDER BY occurred_at DESC, id DESC LIMIT \$2"
section "scan ListScans — newest first for one user (admin), first page" "$Q_SCANS" "
PREPARE q(uuid, int8) AS $Q_SCANS;
$(explain_both "EXECUTE q('$ADMIN', 51)")"
IFS='|' read -r S_AT S_ID < <(psql_at -c "SELECT occurred_at, id FROM scan.scan_events WHERE user_id = '$ADMIN' ORDER BY occurred_at DESC, id DESC OFFSET 49 LIMIT 1")
Q_SCANS2="SELECT $SCAN_COLS FROM scan.scan_events WHERE true AND user_id = \$1 AND (occurred_at, id) < (\$2, \$3) ORDER BY occurred_at DESC, id DESC LIMIT \$4"
section "scan ListScans — newest first for one user, second page (keyset)" "$Q_SCANS2" "
PREPARE q(uuid, timestamptz, uuid, int8) AS $Q_SCANS2;
$(explain_both "EXECUTE q('$ADMIN', '$S_AT', '$S_ID', 51)")"

# The benchmark's scan log has one user only (admin), so the planner rightly walks the primary
# key for "that user". With many users it must use scan_events_user_time: 300,000 events of 60
# other users are added inside the transaction (ANALYZEd there) and rolled back.
SYNTH_USER=00000000-0000-4000-8000-000000000007
ADMIN_EVENTS=$(one "SELECT count(*) FROM scan.scan_events WHERE user_id = '$ADMIN'")
section "scan ListScans — newest first for one user among 61 (300,000 synthetic events of 60 users added in the transaction and rolled back)" "$Q_SCANS" "
PREPARE q(uuid, int8) AS $Q_SCANS;
BEGIN;
INSERT INTO scan.scan_events (id, occurred_at, user_id, username, kind, area, parent_qr, child_qr, raw_input, outcome)
SELECT gen_random_uuid(), now() - g * interval '10 ms',
       ('00000000-0000-4000-8000-' || lpad((g % 60)::text, 12, '0'))::uuid,
       'synthetic', 'child', 'hisar', 'SB00001', 'X' || g, 'X' || g, 'ok'
  FROM generate_series(1, 300000) g;
ANALYZE scan.scan_events;
\\echo '-- one of the 60 synthetic users ($SYNTH_USER):'
$(explain_both "EXECUTE q('$SYNTH_USER', 51)")
\\echo '-- admin ($ADMIN_EVENTS events, besides the 300,000 synthetic ones):'
$(explain_both "EXECUTE q('$ADMIN', 51)")
ROLLBACK;"
