-- Posts are written in two steps around MediaService.AttachMedia (post.c: Creating a post):
-- first as 'pending', committed before the media call, then 'published' in a second short
-- transaction once the media are attached.  A post whose creation is being undone is
-- 'abandoned' (claimed, so nothing publishes it while its media are released) until it is
-- deleted.  Only published posts are ever read; the post service's healing job publishes or
-- removes the pending and abandoned posts that a failure left behind.
-- Rows written before this migration, and rows written by hand, are published.
ALTER TABLE post.posts
    ADD COLUMN state text NOT NULL DEFAULT 'published',
    ADD CONSTRAINT posts_state CHECK (state IN ('pending', 'published', 'abandoned'));

-- Every read filters on state = 'published': the feed indexes cover exactly those rows.
DROP INDEX post.posts_feed_idx;
DROP INDEX post.posts_user_feed_idx;
CREATE INDEX posts_feed_idx ON post.posts (created_at DESC, id DESC) WHERE state = 'published';
CREATE INDEX posts_user_feed_idx ON post.posts (user_id, created_at DESC, id DESC)
    WHERE state = 'published';

-- The healing job's scan: unpublished posts, oldest first.
CREATE INDEX posts_unpublished_idx ON post.posts (created_at) WHERE state <> 'published';
