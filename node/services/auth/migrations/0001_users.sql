-- Accounts and refresh-token families of the auth service (schema "auth").
CREATE SCHEMA IF NOT EXISTS auth;

CREATE TABLE auth.users (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Stored lower-cased: usernames are unique regardless of case.
    username        text NOT NULL,
    email           text NOT NULL,
    -- libsodium crypto_pwhash_str output ($argon2id$v=19$...).
    password_hash   text NOT NULL,
    display_name    text NOT NULL DEFAULT '',
    bio             text NOT NULL DEFAULT '',
    avatar_media_id uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_username_format CHECK (username ~ '^[a-z0-9_.]{3,30}$'),
    CONSTRAINT users_email_length CHECK (char_length(email) BETWEEN 3 AND 254),
    CONSTRAINT users_display_name_length CHECK (char_length(display_name) <= 64),
    CONSTRAINT users_bio_length CHECK (char_length(bio) <= 500)
);

CREATE UNIQUE INDEX users_username_key ON auth.users (username);
CREATE UNIQUE INDEX users_email_key ON auth.users (lower(email));

-- One family per login: every refresh token issued by rotating that login's tokens belongs
-- to it.  Presenting a token that was already rotated revokes the whole family.
CREATE TABLE auth.token_families (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id        uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    client_name    text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz,
    revoked_reason text,
    CONSTRAINT token_families_client_name_length CHECK (char_length(client_name) <= 100)
);

CREATE INDEX token_families_user_id_idx ON auth.token_families (user_id);

CREATE TABLE auth.refresh_tokens (
    -- Hex SHA-256 of the token; the token itself is never stored.
    token_hash text PRIMARY KEY,
    family_id  uuid NOT NULL REFERENCES auth.token_families (id) ON DELETE CASCADE,
    issued_at  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);

CREATE INDEX refresh_tokens_family_id_idx ON auth.refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires_at_idx ON auth.refresh_tokens (expires_at);
