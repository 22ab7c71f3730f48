-- auth owns users, their credentials, sessions, service accounts and the lockout counters.

CREATE TABLE auth.users (
    id                    uuid        PRIMARY KEY,
    username              text        NOT NULL CHECK (length(username) BETWEEN 3 AND 50),
    email                 text        NOT NULL DEFAULT '',
    password_hash         text        NOT NULL,
    role                  text        NOT NULL CHECK (role IN ('admin', 'biller', 'dispatcher')),
    dispatch_area         text,
    active                boolean     NOT NULL DEFAULT true,
    must_change_password  boolean     NOT NULL DEFAULT false,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    last_login_at         timestamptz,
    -- A dispatcher belongs to exactly one area; nobody else has one.
    CONSTRAINT users_area_iff_dispatcher CHECK ((role = 'dispatcher') = (dispatch_area IS NOT NULL))
);
-- Usernames and e-mails are unique case-insensitively; the index names are mapped to
-- `username_taken` / `email_taken`.
CREATE UNIQUE INDEX users_username_key ON auth.users (lower(username) text_pattern_ops);
CREATE UNIQUE INDEX users_email_key ON auth.users (lower(email)) WHERE email <> '';

-- Failed logins per account name, known or not (so answers never reveal which names exist).
CREATE TABLE auth.login_failures (
    account          text        PRIMARY KEY,
    failures         integer     NOT NULL CHECK (failures >= 0),
    locked_until     timestamptz,
    last_failure_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_locked ON auth.login_failures (locked_until) WHERE locked_until IS NOT NULL;

-- Opaque session tokens; only their SHA-256 is stored.
CREATE TABLE auth.sessions (
    id            uuid        PRIMARY KEY,
    user_id       uuid        NOT NULL REFERENCES auth.users (id),
    token_hash    bytea       NOT NULL,
    csrf_token    text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    ended_at      timestamptz,
    ended_reason  text,
    client_ip     text
);
CREATE UNIQUE INDEX sessions_token_hash_key ON auth.sessions (token_hash);
CREATE INDEX sessions_user_open ON auth.sessions (user_id) WHERE ended_at IS NULL;
CREATE INDEX sessions_expires_at ON auth.sessions (expires_at);

-- Each service's own identity; tokens are configured secrets, only hashes stored here.
CREATE TABLE auth.service_accounts (
    name        text        PRIMARY KEY,
    token_hash  bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    rotated_at  timestamptz
);
CREATE UNIQUE INDEX service_accounts_token_hash_key ON auth.service_accounts (token_hash);
