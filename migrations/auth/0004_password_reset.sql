-- Password reset by e-mail (issue 17 §3): one-time links (only the token's SHA-256 is kept; an hour,
-- single use) and the mails that carry them, sent from this table by auth's sender so that asking
-- takes the same time whether or not a mail goes out. A mail row holds its link only until it is
-- sent (or given up); then `link` is cleared.

CREATE TABLE auth.password_resets (
    token_hash  bytea       PRIMARY KEY,
    user_id     uuid        NOT NULL REFERENCES auth.users (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX password_resets_user ON auth.password_resets (user_id);
CREATE INDEX password_resets_expires_at ON auth.password_resets (expires_at);

CREATE TABLE auth.reset_mails (
    id          uuid        PRIMARY KEY,
    user_id     uuid        NOT NULL REFERENCES auth.users (id),
    mail_to     text        NOT NULL,
    username    text        NOT NULL,
    link        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    attempts    integer     NOT NULL DEFAULT 0,
    next_at     timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    failed_at   timestamptz
);
CREATE INDEX reset_mails_due ON auth.reset_mails (next_at) WHERE sent_at IS NULL AND failed_at IS NULL;
