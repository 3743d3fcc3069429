-- Followers who asked to be notified of an account's posts (`notify`): the notifications
-- service lists them on every new status, so the list must not scan all followers.
CREATE INDEX follows_notified ON follows (target_account_id, id) WHERE notify;
