-- Schema `users`, owned by role rookery_users (its search_path), created by the deploy
-- scripts / the migrations Job; this file only creates objects inside it.

-- 64-bit time-ordered ids: milliseconds since the epoch << 16 | 16 bits of a sequence.
-- Every replica draws from the same sequence, so ids never collide; they sort by time.
CREATE SEQUENCE id_seq CYCLE MAXVALUE 9223372036854775807;

CREATE FUNCTION next_id() RETURNS bigint LANGUAGE sql VOLATILE AS $$
    SELECT (floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16)
         | (nextval('id_seq') & 65535)
$$;

CREATE TABLE accounts (
    id                bigint      PRIMARY KEY DEFAULT next_id(),
    username          text        NOT NULL CHECK (username ~ '^[A-Za-z0-9_]{1,30}$'),
    display_name      text        NOT NULL DEFAULT '',
    note              text        NOT NULL DEFAULT '',
    locked            boolean     NOT NULL DEFAULT false,
    bot               boolean     NOT NULL DEFAULT false,
    discoverable      boolean     NOT NULL DEFAULT true,
    indexable         boolean     NOT NULL DEFAULT true,
    hide_collections  boolean     NOT NULL DEFAULT false,
    default_privacy   text        NOT NULL DEFAULT 'public'
                      CHECK (default_privacy IN ('public', 'unlisted', 'private', 'direct')),
    default_sensitive boolean     NOT NULL DEFAULT false,
    default_language  text        NOT NULL DEFAULT '',
    followers_count   bigint      NOT NULL DEFAULT 0,
    following_count   bigint      NOT NULL DEFAULT 0,
    statuses_count    bigint      NOT NULL DEFAULT 0,
    last_status_at    timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
-- Usernames are unique regardless of case (Mastodon semantics); lookups use lower().
CREATE UNIQUE INDEX accounts_username_key ON accounts (lower(username));

-- Sign-in data, apart from the public profile.
CREATE TABLE credentials (
    account_id     bigint      PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    email          text        NOT NULL,
    password_hash  text        NOT NULL,
    locale         text        NOT NULL DEFAULT 'en',
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_active_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX credentials_email_key ON credentials (lower(email));
CREATE INDEX credentials_last_active ON credentials (last_active_at);

CREATE TABLE apps (
    id                 bigint      PRIMARY KEY DEFAULT next_id(),
    name               text        NOT NULL,
    website            text        NOT NULL DEFAULT '',
    redirect_uris      text[]      NOT NULL,
    scopes             text        NOT NULL,
    client_id          text        NOT NULL UNIQUE,
    -- SHA-256 of the secret: shown once at creation, never stored in clear.
    client_secret_hash bytea       NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);

-- Access tokens are stored only as SHA-256 hashes (they are 256-bit random values, so a
-- fast hash is enough: there is nothing to brute-force).
CREATE TABLE access_tokens (
    id           bigint      PRIMARY KEY DEFAULT next_id(),
    app_id       bigint      NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    account_id   bigint      REFERENCES accounts (id) ON DELETE CASCADE,
    token_hash   bytea       NOT NULL UNIQUE,
    refresh_hash bytea       UNIQUE,
    scopes       text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
CREATE INDEX access_tokens_account ON access_tokens (account_id) WHERE revoked_at IS NULL;

-- One-time authorization codes (authorization_code grant, optionally with PKCE).
CREATE TABLE authorization_codes (
    code_hash      bytea       PRIMARY KEY,
    app_id         bigint      NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    account_id     bigint      NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    redirect_uri   text        NOT NULL,
    scopes         text        NOT NULL,
    code_challenge text,
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz
);
