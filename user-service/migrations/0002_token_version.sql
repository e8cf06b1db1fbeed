-- Bumped on every role or password change: tokens carry the version they
-- were signed with (`ver`), and older ones are refused (docs/contracts.md,
-- "Authority").
ALTER TABLE users ADD COLUMN token_version BIGINT NOT NULL DEFAULT 0;
