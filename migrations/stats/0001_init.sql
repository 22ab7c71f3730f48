-- stats owns read models fed by events. Each applied event id is recorded with its effect
-- (applied_events), so applying twice is impossible; poison events are parked with a reason.

CREATE TABLE stats.applied_events (
    event_id    uuid PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX applied_events_at ON stats.applied_events (applied_at);

CREATE TABLE stats.parked_events (
    event_id    uuid PRIMARY KEY,
    stream      text NOT NULL,
    entry_id    text NOT NULL,
    event_type  text NOT NULL,
    envelope    bytea NOT NULL,
    reason      text NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now()
);

-- Dashboard: per-area bag figures, kept by deltas.
CREATE TABLE stats.area_figures (
    area      text PRIMARY KEY,
    parents   bigint NOT NULL DEFAULT 0,
    children  bigint NOT NULL DEFAULT 0,
    unlinked  bigint NOT NULL DEFAULT 0
);

-- Successful child scans per minute (UTC, kept 2 days) and per local hour (business time zone).
CREATE TABLE stats.scans_by_minute (
    area    text NOT NULL,
    minute  timestamptz NOT NULL,
    scans   integer NOT NULL,
    PRIMARY KEY (minute, area)
);
CREATE TABLE stats.scans_by_hour (
    area        text NOT NULL,
    hour_local  timestamp NOT NULL,
    scans       integer NOT NULL,
    PRIMARY KEY (hour_local, area)
);

-- Bills by status.
CREATE TABLE stats.bills (
    bill_id  text PRIMARY KEY,
    status   text NOT NULL
);
CREATE TABLE stats.bill_status_counts (
    status  text PRIMARY KEY,
    bills   bigint NOT NULL DEFAULT 0
);

-- Per-user activity.
CREATE TABLE stats.user_activity (
    user_id        uuid PRIMARY KEY,
    username       text NOT NULL DEFAULT '',
    total_scans    bigint NOT NULL DEFAULT 0,
    last_scan_at   timestamptz,
    last_login_at  timestamptz
);
CREATE TABLE stats.user_scans_daily (
    user_id  uuid NOT NULL,
    day      date NOT NULL,
    scans    integer NOT NULL,
    PRIMARY KEY (user_id, day)
);

-- The audit trail and event store: every event, with its envelope (read models can be rebuilt
-- from it). Partitioned by month; partitions are created by the service.
CREATE TABLE stats.audit_events (
    occurred_at     timestamptz NOT NULL,
    event_id        uuid NOT NULL,
    event_type      text NOT NULL,
    source          text NOT NULL,
    aggregate_type  text NOT NULL,
    aggregate_id    text NOT NULL,
    actor_user_id   uuid,
    actor_username  text NOT NULL DEFAULT '',
    actor_service   text NOT NULL DEFAULT '',
    ip              text NOT NULL DEFAULT '',
    payload         jsonb NOT NULL,
    envelope        bytea NOT NULL,
    PRIMARY KEY (occurred_at, event_id)
) PARTITION BY RANGE (occurred_at);
CREATE TABLE stats.audit_events_default PARTITION OF stats.audit_events DEFAULT;
CREATE INDEX audit_events_user ON stats.audit_events (actor_user_id, occurred_at DESC, event_id DESC);
CREATE INDEX audit_events_type ON stats.audit_events (event_type, occurred_at DESC, event_id DESC);
CREATE INDEX audit_events_time ON stats.audit_events (occurred_at DESC, event_id DESC);

-- Each bag's history, by QR.
CREATE TABLE stats.bag_history (
    qr           text COLLATE "C" NOT NULL,
    occurred_at  timestamptz NOT NULL,
    event_id     uuid NOT NULL,
    PRIMARY KEY (qr, occurred_at, event_id)
);

-- The freshness of the read models: the newest applied event and when it was applied.
CREATE TABLE stats.consumer_state (
    id                  boolean PRIMARY KEY DEFAULT true CHECK (id),
    last_event_at       timestamptz,
    last_applied_at     timestamptz
);
INSERT INTO stats.consumer_state (id) VALUES (true);
