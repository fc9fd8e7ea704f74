-- Posts, their ordered media, hashtags and mentions (schema "post", owned by the post service).
CREATE SCHEMA IF NOT EXISTS post;

CREATE TABLE post.posts (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- auth.users(id); no foreign key: no service reads or constrains another's schema.
    user_id    uuid NOT NULL,
    caption    text NOT NULL DEFAULT '',
    -- clock_timestamp(), not now(): the time the row is written rather than the time its
    -- transaction began (post.c's top comment says why the feed order needs that).
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT posts_caption_length CHECK (char_length(caption) <= 2200),
    -- The range a page cursor can name (cursor.c).
    CONSTRAINT posts_created_at_range CHECK (created_at >= '1970-01-01 00:00:00+00'
                                             AND created_at < '10000-01-01 00:00:00+00')
);

-- The global feed's keyset order, newest first, and one user's posts in the same order.
CREATE INDEX posts_feed_idx ON post.posts (created_at DESC, id DESC);
CREATE INDEX posts_user_feed_idx ON post.posts (user_id, created_at DESC, id DESC);

-- A post's media in order (position 0 is the cover of a carousel).  A media belongs to at
-- most one post.
CREATE TABLE post.post_media (
    post_id  uuid NOT NULL REFERENCES post.posts (id) ON DELETE CASCADE,
    position smallint NOT NULL,
    -- media.media(id), owned by the media service.
    media_id uuid NOT NULL,
    PRIMARY KEY (post_id, position),
    CONSTRAINT post_media_media_id_key UNIQUE (media_id),
    CONSTRAINT post_media_position_range CHECK (position BETWEEN 0 AND 9)
);

-- Hashtags as parsed from the caption (caption.c): lower-cased, NFC, no '#', never a space.
CREATE TABLE post.hashtags (
    post_id  uuid NOT NULL REFERENCES post.posts (id) ON DELETE CASCADE,
    tag      text NOT NULL,
    -- Order of first appearance in the caption.
    position smallint NOT NULL,
    PRIMARY KEY (post_id, tag),
    CONSTRAINT hashtags_tag_format CHECK (char_length(tag) BETWEEN 1 AND 100
                                          AND tag !~ '[[:space:]#@]')
);

-- Posts with a hashtag (search).
CREATE INDEX hashtags_tag_idx ON post.hashtags (tag, post_id);

-- Usernames mentioned in the caption, lower-cased, without the '@'.
CREATE TABLE post.mentions (
    post_id  uuid NOT NULL REFERENCES post.posts (id) ON DELETE CASCADE,
    username text NOT NULL,
    position smallint NOT NULL,
    PRIMARY KEY (post_id, username),
    CONSTRAINT mentions_username_format CHECK (username ~ '^[a-z0-9_.]{3,30}$')
);

-- Posts mentioning a user (notifications).
CREATE INDEX mentions_username_idx ON post.mentions (username, post_id);
