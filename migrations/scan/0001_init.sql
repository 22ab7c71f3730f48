-- scan owns the scan event log: every scan attempt, successful or not, with its outcome.
-- Append-only: nothing ever updates or deletes a row (SPEC §1, invariant 6).
--
-- Partitioned by month on occurred_at. The monthly partitions (scan.scan_events_YYYY_MM, UTC
-- months) are created by the service itself, at start-up, by the `migrate` subcommand and
-- periodically afterwards, for the previous, current and next two months
-- (`tracetrack_scan::store::ensure_partitions`). The DEFAULT partition catches anything outside
-- them, so an insert never fails for want of a partition.

CREATE TABLE scan.scan_events (
    id                  uuid        NOT NULL,
    occurred_at         timestamptz NOT NULL,
    user_id             uuid        NOT NULL,
    username            text        NOT NULL,
    kind                text        NOT NULL CHECK (kind IN ('parent', 'child', 'undo')),
    -- The parent's area when known, else the user's dispatch area, else ''.
    area                text        NOT NULL DEFAULT '',
    -- Normalised by the registry on success; trimmed and upper-cased input on failure.
    parent_qr           text        NOT NULL DEFAULT '',
    child_qr            text,
    -- What the scanner sent, as received (capped by the service).
    raw_input           text        NOT NULL DEFAULT '',
    -- 'created', 'ok', 'already_linked', or the stable error code.
    outcome             text        NOT NULL,
    -- The parent's figures after the scan, when known.
    parent_child_count  integer,
    parent_capacity     integer,
    -- The idempotency key the client sent, if any.
    idempotency_key     text,
    PRIMARY KEY (occurred_at, id)
) PARTITION BY RANGE (occurred_at);

-- The primary key (occurred_at, id) also serves "newest first" over every row (a backward scan
-- gives ORDER BY occurred_at DESC, id DESC), so no separate (occurred_at DESC) index is kept.
-- The others end in id so that keyset pages are read straight from the index.
CREATE INDEX scan_events_user_time ON scan.scan_events (user_id, occurred_at DESC, id DESC);
CREATE INDEX scan_events_parent_time ON scan.scan_events (parent_qr, occurred_at DESC, id DESC);
CREATE INDEX scan_events_child_time ON scan.scan_events (child_qr, occurred_at DESC, id DESC)
    WHERE child_qr IS NOT NULL;
CREATE INDEX scan_events_area_time ON scan.scan_events (area, occurred_at DESC, id DESC);

CREATE TABLE scan.scan_events_default PARTITION OF scan.scan_events DEFAULT;
