-- Tokens ended early by POST /logout, by their id (`jti`): refused until
-- they would have expired anyway, then pruned.
CREATE TABLE revoked_tokens (
    jti         UUID PRIMARY KEY,
    user_id     BIGINT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);

CREATE INDEX revoked_tokens_expiry_idx ON revoked_tokens (expires_at);
