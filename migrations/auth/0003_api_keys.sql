-- API keys for integrations (issue 17 §2): programs (an ERP pulling exports, a label printer
-- station) act with a role (and a dispatcher key's area) of their own. A key is shown once as
-- `tt_key_<prefix>_<secret>`; only the SHA-256 of the whole token is stored (the secret is 32
-- random bytes, so a fast hash is enough), the prefix is kept in clear to tell keys apart.
CREATE TABLE auth.api_keys (
    id             uuid        PRIMARY KEY,
    name           text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    prefix         text        NOT NULL UNIQUE,
    token_hash     bytea       NOT NULL UNIQUE,
    role           text        NOT NULL CHECK (role IN ('admin', 'biller', 'dispatcher')),
    dispatch_area  text,
    created_by     uuid        NOT NULL REFERENCES auth.users (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz,
    -- Updated at most once a minute per key, not on every request.
    last_used_at   timestamptz,
    revoked_at     timestamptz,
    revoked_by     uuid        REFERENCES auth.users (id),
    CONSTRAINT api_keys_area_iff_dispatcher CHECK ((role = 'dispatcher') = (dispatch_area IS NOT NULL))
);
-- Names are unique among keys not revoked (the audit trail names the key).
CREATE UNIQUE INDEX api_keys_live_name_key ON auth.api_keys (lower(name)) WHERE revoked_at IS NULL;
