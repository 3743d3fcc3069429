-- Schema `timeline`, owned by role rookery_timeline (its search_path), created by the
-- deploy scripts / the migrations Job; this file only creates objects inside it.

-- 64-bit time-ordered ids (milliseconds since the epoch << 16 | 16 bits of a sequence),
-- as in every service: status ids double as timeline cursors and feed scores.
CREATE SEQUENCE id_seq CYCLE MAXVALUE 9223372036854775807;

CREATE FUNCTION next_id() RETURNS bigint LANGUAGE sql VOLATILE AS $$
    SELECT (floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16)
         | (nextval('id_seq') & 65535)
$$;

-- Posts, replies, reblogs (rows with reblog_of_id and no text) and quotes.
-- visibility: 1 public, 2 unlisted, 3 private, 4 direct (the proto enum's numbers).
CREATE TABLE statuses (
    id                     bigint      PRIMARY KEY DEFAULT next_id(),
    account_id             bigint      NOT NULL,
    text                   text        NOT NULL DEFAULT '',
    content                text        NOT NULL DEFAULT '',
    spoiler_text           text        NOT NULL DEFAULT '',
    visibility             smallint    NOT NULL CHECK (visibility BETWEEN 1 AND 4),
    sensitive              boolean     NOT NULL DEFAULT false,
    language               text        NOT NULL DEFAULT '',
    -- No foreign key: a reply outlives the status it answered (Mastodon keeps the id).
    in_reply_to_id         bigint,
    in_reply_to_account_id bigint,
    -- A reblog goes with its original.
    reblog_of_id           bigint      REFERENCES statuses (id) ON DELETE CASCADE,
    -- A quote outlives the quoted status (rendered as a deleted quote).
    quote_of_id            bigint,
    media_ids              bigint[]    NOT NULL DEFAULT '{}',
    mention_ids            bigint[]    NOT NULL DEFAULT '{}',
    tags                   text[]      NOT NULL DEFAULT '{}',
    application            text        NOT NULL DEFAULT '',
    replies_count          bigint      NOT NULL DEFAULT 0,
    reblogs_count          bigint      NOT NULL DEFAULT 0,
    favourites_count       bigint      NOT NULL DEFAULT 0,
    created_at             timestamptz NOT NULL DEFAULT now(),
    edited_at              timestamptz,
    -- Full-text search over what the author wrote ('simple': no language guessing).
    search                 tsvector    GENERATED ALWAYS AS
                           (to_tsvector('simple', spoiler_text || ' ' || text)) STORED,
    CHECK (reblog_of_id IS NULL OR text = '')
);

-- Account timelines and home-feed rebuilds: newest statuses of an account.
CREATE INDEX statuses_by_account ON statuses (account_id, id DESC);
-- The public timeline: original public statuses that are not replies to others (as
-- Mastodon's), newest first.
CREATE INDEX statuses_public ON statuses (id DESC)
    WHERE visibility = 1 AND reblog_of_id IS NULL
      AND (in_reply_to_account_id IS NULL OR in_reply_to_account_id = account_id);
-- Conversation descendants.
CREATE INDEX statuses_replies ON statuses (in_reply_to_id, id)
    WHERE in_reply_to_id IS NOT NULL;
-- One reblog per account and original; "reblogged by" lists and the viewer's flag.
CREATE UNIQUE INDEX statuses_reblog_key ON statuses (account_id, reblog_of_id)
    WHERE reblog_of_id IS NOT NULL;
CREATE INDEX statuses_reblogs ON statuses (reblog_of_id, id DESC)
    WHERE reblog_of_id IS NOT NULL;
-- Status search.
CREATE INDEX statuses_search ON statuses USING gin (search)
    WHERE reblog_of_id IS NULL;

CREATE TABLE favourites (
    id         bigint      PRIMARY KEY DEFAULT next_id(),
    account_id bigint      NOT NULL,
    status_id  bigint      NOT NULL REFERENCES statuses (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, status_id)
);
CREATE INDEX favourites_by_status ON favourites (status_id, id DESC) INCLUDE (account_id);
CREATE INDEX favourites_by_account ON favourites (account_id, id DESC) INCLUDE (status_id);

CREATE TABLE bookmarks (
    id         bigint      PRIMARY KEY DEFAULT next_id(),
    account_id bigint      NOT NULL,
    status_id  bigint      NOT NULL REFERENCES statuses (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, status_id)
);
CREATE INDEX bookmarks_by_account ON bookmarks (account_id, id DESC) INCLUDE (status_id);
CREATE INDEX bookmarks_by_status ON bookmarks (status_id);

CREATE TABLE pins (
    id         bigint      PRIMARY KEY DEFAULT next_id(),
    account_id bigint      NOT NULL,
    status_id  bigint      NOT NULL REFERENCES statuses (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, status_id)
);
CREATE INDEX pins_by_account ON pins (account_id, id DESC) INCLUDE (status_id);
CREATE INDEX pins_by_status ON pins (status_id);

-- Earlier versions of edited statuses (the first edit also stores the original).
CREATE TABLE status_edits (
    id           bigint      PRIMARY KEY DEFAULT next_id(),
    status_id    bigint      NOT NULL REFERENCES statuses (id) ON DELETE CASCADE,
    content      text        NOT NULL,
    spoiler_text text        NOT NULL,
    sensitive    boolean     NOT NULL,
    media_ids    bigint[]    NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL
);
CREATE INDEX status_edits_by_status ON status_edits (status_id, id);

CREATE TABLE tags (
    id         bigint      PRIMARY KEY DEFAULT next_id(),
    -- Lowercased; what `#Rust` and `#rust` share.
    name       text        NOT NULL UNIQUE CHECK (name <> '' AND name = lower(name)),
    created_at timestamptz NOT NULL DEFAULT now()
);
-- Hashtag search by prefix.
CREATE INDEX tags_name_prefix ON tags (name text_pattern_ops);

-- Hashtag timelines: statuses of a tag, newest first.
CREATE TABLE status_tags (
    tag_id    bigint NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    status_id bigint NOT NULL REFERENCES statuses (id) ON DELETE CASCADE,
    PRIMARY KEY (tag_id, status_id)
);
CREATE INDEX status_tags_by_status ON status_tags (status_id);

CREATE TABLE tag_follows (
    id         bigint      PRIMARY KEY DEFAULT next_id(),
    account_id bigint      NOT NULL,
    tag_id     bigint      NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, tag_id)
);
CREATE INDEX tag_follows_by_account ON tag_follows (account_id, id DESC) INCLUDE (tag_id);
CREATE INDEX tag_follows_by_tag ON tag_follows (tag_id) INCLUDE (account_id);

-- `Idempotency-Key`s of recent posts (an hour, as Mastodon keeps them).
CREATE TABLE idempotency_keys (
    account_id bigint      NOT NULL,
    key        text        NOT NULL,
    status_id  bigint      NOT NULL REFERENCES statuses (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);

-- Counters move in the statement that changes what they count, so they stay exact under
-- any concurrency (the parent row lock serialises concurrent changes).
CREATE FUNCTION statuses_counters() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    delta bigint := CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END;
    row statuses;
BEGIN
    IF TG_OP = 'INSERT' THEN row := NEW; ELSE row := OLD; END IF;
    IF row.in_reply_to_id IS NOT NULL THEN
        UPDATE statuses SET replies_count = greatest(replies_count + delta, 0)
        WHERE id = row.in_reply_to_id;
    END IF;
    IF row.reblog_of_id IS NOT NULL THEN
        UPDATE statuses SET reblogs_count = greatest(reblogs_count + delta, 0)
        WHERE id = row.reblog_of_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER statuses_counters AFTER INSERT OR DELETE ON statuses
    FOR EACH ROW EXECUTE FUNCTION statuses_counters();

CREATE FUNCTION favourites_counter() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE statuses SET favourites_count = favourites_count + 1 WHERE id = NEW.status_id;
    ELSE
        UPDATE statuses SET favourites_count = greatest(favourites_count - 1, 0)
        WHERE id = OLD.status_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER favourites_counter AFTER INSERT OR DELETE ON favourites
    FOR EACH ROW EXECUTE FUNCTION favourites_counter();
