CREATE TABLE users (
    id             BIGSERIAL PRIMARY KEY,
    name           TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    -- Stored normalised (trimmed, lower case): the unique constraint makes
    -- emails case-insensitive and settles racing registrations.
    email          TEXT NOT NULL UNIQUE CHECK (email = lower(btrim(email))),
    -- argon2id PHC string.
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL DEFAULT 'customer' CHECK (role IN ('customer', 'admin')),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
