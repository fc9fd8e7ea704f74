-- Media of deleted posts that the media service has yet to delete: a transactional outbox.
-- A row is written in the transaction that deletes its post and removed once
-- MediaService.DeleteMedia has succeeded; the retry loop of the post service works through
-- whatever is left (the media service was down, the call timed out), with growing pauses.
CREATE TABLE post.media_deletions (
    post_id         uuid PRIMARY KEY,
    user_id         uuid NOT NULL,
    -- The post's media ids, separated by single spaces.
    media_ids       text NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX media_deletions_due_idx ON post.media_deletions (next_attempt_at);
