-- DEV ONLY. Run once by the postgres image's entrypoint when the data volume is empty
-- (docker-entrypoint-initdb.d), connected to the `postgres` database as the superuser.
-- Mirrors deploy/dev/lib.sh (ensure_database): database `rookery`; per service a LOGIN
-- role rookery_<svc> whose search_path is <svc> and which owns schema <svc>; nobody may
-- create objects anywhere else. The passwords match the dev overlay's secretGenerator.

CREATE ROLE rookery_users         WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD 'dev-only-users';
CREATE ROLE rookery_timeline      WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD 'dev-only-timeline';
CREATE ROLE rookery_notifications WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD 'dev-only-notifications';
CREATE ROLE rookery_media         WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD 'dev-only-media';

ALTER ROLE rookery_users         SET search_path = users;
ALTER ROLE rookery_timeline      SET search_path = timeline;
ALTER ROLE rookery_notifications SET search_path = notifications;
ALTER ROLE rookery_media         SET search_path = media;

CREATE DATABASE rookery;
\connect rookery

-- Already the default since PostgreSQL 15; explicit so a role can only create in its schema.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE CREATE ON DATABASE rookery FROM PUBLIC;

CREATE SCHEMA users         AUTHORIZATION rookery_users;
CREATE SCHEMA timeline      AUTHORIZATION rookery_timeline;
CREATE SCHEMA notifications AUTHORIZATION rookery_notifications;
CREATE SCHEMA media         AUTHORIZATION rookery_media;
