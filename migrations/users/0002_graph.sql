-- The social graph: follows, follow requests, blocks and mutes. Every edge has a
-- time-ordered id (next_id) that is its pagination cursor in account lists.
--
-- Index plan (EXPLAINed by crates/users/tests/plans.rs, reproduced in docs/SOCIAL-GRAPH.md):
--   *_pair   (account_id, target_account_id) UNIQUE: "does A → B exist" for one or many B
--            (relationships, filters, idempotent writes) and, with account_id = ANY,
--            "do these accounts → me" (followed_by, blocked_by, requested_by).
--   *_by_account (account_id, id): the owner's lists (following, blocks, mutes) by cursor.
--   *_by_target  (target_account_id, id): followers and follow requests by cursor, fan-out;
--            also what ON DELETE CASCADE needs on the second foreign key.
-- INCLUDE columns make the list and fan-out scans index-only.

-- Functions resolve names through the search_path of the session that calls them; pin
-- it to this schema so that a session with another search_path (an operator's psql, a
-- bulk loader) gets the same tables. FROM CURRENT: the schema these migrations run in.
ALTER FUNCTION next_id() SET search_path FROM CURRENT;

-- Pending follow requests, for the locked account's CredentialAccount.
ALTER TABLE accounts ADD COLUMN follow_requests_count bigint NOT NULL DEFAULT 0;

CREATE TABLE follows (
    id                bigint      PRIMARY KEY DEFAULT next_id(),
    account_id        bigint      NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    target_account_id bigint      NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    show_reblogs      boolean     NOT NULL DEFAULT true,
    notify            boolean     NOT NULL DEFAULT false,
    -- ISO 639-1 codes the follower wants; NULL for all.
    languages         text[],
    created_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (account_id <> target_account_id)
);
CREATE UNIQUE INDEX follows_pair ON follows (account_id, target_account_id);
CREATE INDEX follows_by_account ON follows (account_id, id) INCLUDE (target_account_id);
CREATE INDEX follows_by_target ON follows (target_account_id, id) INCLUDE (account_id);

CREATE TABLE follow_requests (
    id                bigint      PRIMARY KEY DEFAULT next_id(),
    account_id        bigint      NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    target_account_id bigint      NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    show_reblogs      boolean     NOT NULL DEFAULT true,
    notify            boolean     NOT NULL DEFAULT false,
    languages         text[],
    created_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (account_id <> target_account_id)
);
CREATE UNIQUE INDEX follow_requests_pair ON follow_requests (account_id, target_account_id);
CREATE INDEX follow_requests_by_target ON follow_requests (target_account_id, id) INCLUDE (account_id);

CREATE TABLE blocks (
    id                bigint      PRIMARY KEY DEFAULT next_id(),
    account_id        bigint      NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    target_account_id bigint      NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (account_id <> target_account_id)
);
CREATE UNIQUE INDEX blocks_pair ON blocks (account_id, target_account_id);
CREATE INDEX blocks_by_account ON blocks (account_id, id) INCLUDE (target_account_id);
-- Both columns: a probe for one pair is an equality on both whichever index serves it.
CREATE INDEX blocks_by_target ON blocks (target_account_id, account_id);

CREATE TABLE mutes (
    id                 bigint      PRIMARY KEY DEFAULT next_id(),
    account_id         bigint      NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    target_account_id  bigint      NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    hide_notifications boolean     NOT NULL DEFAULT true,
    -- NULL: until unmuted. An expired row is no mute; it is replaced on the next mute.
    expires_at         timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (account_id <> target_account_id)
);
CREATE UNIQUE INDEX mutes_pair ON mutes (account_id, target_account_id);
CREATE INDEX mutes_by_account ON mutes (account_id, id) INCLUDE (target_account_id, expires_at);
CREATE INDEX mutes_by_target ON mutes (target_account_id, account_id);
-- The sweeper deletes mutes that ran out (and announces it), oldest expiry first.
CREATE INDEX mutes_expiry ON mutes (expires_at) WHERE expires_at IS NOT NULL;

-- Counters kept exact by the database itself: whatever inserts or deletes an edge
-- (including ON DELETE CASCADE) moves the counts in the same transaction. Writers lock
-- both account rows in id order first (Store::lock_pair), so these updates never deadlock.
CREATE FUNCTION follows_count() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE accounts SET following_count = following_count + 1 WHERE id = NEW.account_id;
        UPDATE accounts SET followers_count = followers_count + 1 WHERE id = NEW.target_account_id;
    ELSE
        UPDATE accounts SET following_count = following_count - 1 WHERE id = OLD.account_id;
        UPDATE accounts SET followers_count = followers_count - 1 WHERE id = OLD.target_account_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER follows_count AFTER INSERT OR DELETE ON follows
    FOR EACH ROW EXECUTE FUNCTION follows_count();

CREATE FUNCTION follow_requests_count() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE accounts SET follow_requests_count = follow_requests_count + 1
        WHERE id = NEW.target_account_id;
    ELSE
        UPDATE accounts SET follow_requests_count = follow_requests_count - 1
        WHERE id = OLD.target_account_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER follow_requests_count AFTER INSERT OR DELETE ON follow_requests
    FOR EACH ROW EXECUTE FUNCTION follow_requests_count();

-- Account search: username prefixes (btree, LIKE 'abc%') and display-name word prefixes
-- (GIN over a 'simple' tsvector, to_tsquery('abc:*')).
CREATE INDEX accounts_username_prefix ON accounts (lower(username) text_pattern_ops);
CREATE INDEX accounts_display_name_words ON accounts USING gin (to_tsvector('simple', display_name));
