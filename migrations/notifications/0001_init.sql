-- Schema `notifications`, owned by role rookery_notifications (its search_path), created
-- by the deploy scripts / the migrations Job; this file only creates objects inside it.

-- 64-bit time-ordered ids (milliseconds since the epoch << 16 | 16 bits of a sequence),
-- as in every service: notification ids double as cursors and unread-count scores.
CREATE SEQUENCE id_seq CYCLE MAXVALUE 9223372036854775807;

CREATE FUNCTION next_id() RETURNS bigint LANGUAGE sql VOLATILE AS $$
    SELECT (floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16)
         | (nextval('id_seq') & 65535)
$$;

-- type: the proto enum's numbers (1 mention, 2 status, 3 reblog, 4 follow,
-- 5 follow_request, 6 favourite, 7 update, 8 quote).
CREATE TABLE notifications (
    id              bigint      PRIMARY KEY DEFAULT next_id(),
    account_id      bigint      NOT NULL,
    type            smallint    NOT NULL CHECK (type BETWEEN 1 AND 8),
    from_account_id bigint      NOT NULL,
    status_id       bigint,
    -- What the notification is about, so that undoing it (an unfavourite, an unfollow,
    -- a deleted reblog) removes it: the favourite, follow, request or status id.
    activity_id     bigint      NOT NULL,
    -- Grouped notifications (API v2): `favourite-{status}-{hour bucket}`,
    -- `reblog-{status}-{bucket}`, `follow-{bucket}`, else `ungrouped-{id}`.
    group_key       text        NOT NULL,
    -- The domain event that made it: a redelivered or replayed event finds its
    -- notification already there (exactly once per recipient and event).
    event_id        text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, event_id)
);

-- Pages of one recipient, newest first (also the filtered pages: types are few).
CREATE INDEX notifications_by_account ON notifications (account_id, id DESC);
-- Groups of one recipient (v2 pages, a group's accounts, dismissing a group).
CREATE INDEX notifications_by_group ON notifications (account_id, group_key, id DESC);
-- `account_id` filter and block clean-up.
CREATE INDEX notifications_by_sender ON notifications (account_id, from_account_id, id DESC);
-- Undo and delete clean-up.
CREATE INDEX notifications_by_activity ON notifications (activity_id);
CREATE INDEX notifications_by_status ON notifications (status_id) WHERE status_id IS NOT NULL;

-- Reading positions (`home`, `notifications`).
CREATE TABLE markers (
    account_id   bigint      NOT NULL,
    timeline     text        NOT NULL CHECK (timeline IN ('home', 'notifications')),
    last_read_id bigint      NOT NULL,
    version      bigint      NOT NULL DEFAULT 1,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, timeline)
);
