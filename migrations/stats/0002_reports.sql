-- The end-of-day report: one row per business day, claimed by the first replica to insert it
-- (INSERT … ON CONFLICT DO NOTHING), then sent under a lease by whichever replica holds it. The
-- row records the delivery result; a failed send is retried after `next_attempt_at`.
CREATE TABLE stats.daily_reports (
    day              date PRIMARY KEY,
    -- The window it covers: [previous cut-off, this cut-off).
    window_from      timestamptz NOT NULL,
    window_to        timestamptz NOT NULL,
    -- pending → sent | skipped (no activity) | failed (retried until sent; `attempts` counts).
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sent', 'skipped', 'failed')),
    -- Deterministic per day, so a re-send after a crash carries the same id.
    message_id       text NOT NULL,
    recipients       text NOT NULL DEFAULT '',
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    -- The replica sending it now, until `lease_until` (a crashed sender's lease runs out).
    leased_by        text,
    lease_until      timestamptz,
    last_error       text NOT NULL DEFAULT '',
    sent_at          timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX daily_reports_due ON stats.daily_reports (next_attempt_at)
    WHERE status IN ('pending', 'failed');
