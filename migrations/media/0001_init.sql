-- Schema `media`, owned by role rookery_media (its search_path), created by the deploy
-- scripts / the migrations Job; this file only creates objects inside it.

-- 64-bit time-ordered ids, as in every service (attachment ids appear in status JSON).
CREATE SEQUENCE id_seq CYCLE MAXVALUE 9223372036854775807;

CREATE FUNCTION next_id() RETURNS bigint LANGUAGE sql VOLATILE AS $$
    SELECT (floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16)
         | (nextval('id_seq') & 65535)
$$;

-- One row per upload. The row is also the processing job: `state = 'processing'` rows
-- are claimed by workers with a lease (`locked_until`), so a worker that dies leaves
-- its job to be taken over once the lease lapses; `attempts` bounds retries.
CREATE TABLE attachments (
    id             bigint      PRIMARY KEY DEFAULT next_id(),
    account_id     bigint      NOT NULL,
    -- image, gifv, video; NULL until known (a video is only known after probing).
    kind           text        CHECK (kind IN ('image', 'gifv', 'video')),
    -- The container sniffed from the upload's magic bytes (jpeg, png, gif, webp, mp4,
    -- mov, webm): what the worker needs to process it.
    container      text        NOT NULL,
    state          text        NOT NULL DEFAULT 'processing'
                               CHECK (state IN ('processing', 'ready', 'failed')),
    -- The upload as received, until processed (never served: it carries the metadata).
    incoming_key   text,
    -- Custom preview as received (optional), until processed.
    thumbnail_key  text,
    -- The random, unguessable prefix of the stored variants.
    file_prefix    text        NOT NULL,
    original_key   text,
    small_key      text,
    -- Keys of the WebP renditions served to clients that accept WebP.
    original_webp_key text,
    small_webp_key text,
    original_width  integer,
    original_height integer,
    small_width    integer,
    small_height   integer,
    blurhash       text,
    duration       double precision,
    frame_rate     text,
    bitrate        bigint,
    description    text        NOT NULL DEFAULT '' CHECK (char_length(description) <= 1500),
    focus_x        double precision CHECK (focus_x BETWEEN -1 AND 1),
    focus_y        double precision CHECK (focus_y BETWEEN -1 AND 1),
    status_id      bigint,
    failure        text,
    attempts       integer     NOT NULL DEFAULT 0,
    run_at         timestamptz NOT NULL DEFAULT now(),
    locked_until   timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    processed_at   timestamptz,
    -- When it last became free of any status (its upload, or the status's deletion or
    -- edit): unattached uploads are deleted a while after this.
    unattached_since timestamptz NOT NULL DEFAULT now()
);

-- The job queue: pending rows by due time.
CREATE INDEX attachments_pending ON attachments (run_at) WHERE state = 'processing';
-- Clean-up of uploads never attached to a status.
CREATE INDEX attachments_unattached ON attachments (unattached_since) WHERE status_id IS NULL;
-- Detaching the media of a deleted or edited status.
CREATE INDEX attachments_status ON attachments (status_id) WHERE status_id IS NOT NULL;

-- Objects to delete from the store. Deleting a row and its files cannot be one
-- transaction, so the keys are queued in the same transaction as the row's deletion and
-- removed from the store afterwards (retried until the store confirms).
CREATE TABLE doomed_objects (
    key        text        PRIMARY KEY,
    queued_at  timestamptz NOT NULL DEFAULT now()
);
