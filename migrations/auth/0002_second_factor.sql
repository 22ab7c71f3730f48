-- Second factor (TOTP, RFC 6238; issue 17 §1): one enrolment per user, its recovery codes, and the
-- short-lived challenges a password login answers when the user has one.

-- The TOTP secret, encrypted (ChaCha20-Poly1305 with the configured key; nonce || ciphertext),
-- never in clear. An enrolment counts once confirmed with a code; an unconfirmed one is replaced by
-- the next BeginTwoFactorEnrolment. `last_step` is the time step of the last code accepted: a code
-- of that step or an earlier one is refused (no replay within its window).
CREATE TABLE auth.second_factors (
    user_id           uuid        PRIMARY KEY REFERENCES auth.users (id),
    secret_encrypted  bytea       NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    confirmed_at      timestamptz,
    last_step         bigint
);

-- One-time recovery codes; only their SHA-256 is stored (each is 100 random bits).
CREATE TABLE auth.recovery_codes (
    user_id    uuid        NOT NULL REFERENCES auth.users (id),
    code_hash  bytea       NOT NULL,
    used_at    timestamptz,
    PRIMARY KEY (user_id, code_hash)
);

-- A password accepted for a user with a second factor: the login goes on with CompleteLogin
-- (only the token's SHA-256 is stored).
CREATE TABLE auth.login_challenges (
    token_hash  bytea       PRIMARY KEY,
    user_id     uuid        NOT NULL REFERENCES auth.users (id),
    client_ip   text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX login_challenges_expires_at ON auth.login_challenges (expires_at);
