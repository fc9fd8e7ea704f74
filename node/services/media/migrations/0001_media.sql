-- Uploaded media and their variants (schema "media", owned by the media service).
CREATE SCHEMA IF NOT EXISTS media;

-- A media row moves through these states:
--   pending     a presigned upload URL was handed out; no bytes yet
--   receiving   an upload is streaming in (claimed, so two PUTs cannot both process)
--   storing     variants are made and their rows written; objects are being put
--   uploaded    a presigned upload finished; waits for ConfirmUpload
--   confirmed   usable in posts
--   deleting    being removed: invisible, its objects are removed before the row
-- Rows that are not confirmed carry expires_at; the sweep removes them (and their objects)
-- once it has passed, so rows and stored files never disagree for long.
CREATE TABLE media.media (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid NOT NULL,
    state         text NOT NULL,
    kind          smallint NOT NULL DEFAULT 0,
    content_type  text NOT NULL DEFAULT '',
    filename      text NOT NULL DEFAULT '',
    declared_size bigint,
    width         integer NOT NULL DEFAULT 0,
    height        integer NOT NULL DEFAULT 0,
    duration_ms   bigint NOT NULL DEFAULT 0,
    blurhash      text NOT NULL DEFAULT '',
    post_id       uuid,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    confirmed_at  timestamptz,
    CONSTRAINT media_state CHECK (state IN ('pending', 'receiving', 'storing', 'uploaded',
                                            'confirmed', 'deleting')),
    CONSTRAINT media_kind CHECK (kind IN (0, 1, 2)),
    CONSTRAINT media_expiry CHECK (state = 'confirmed' OR expires_at IS NOT NULL),
    CONSTRAINT media_filename_length CHECK (char_length(filename) <= 255)
);

CREATE INDEX media_user_id_idx ON media.media (user_id);
CREATE INDEX media_post_id_idx ON media.media (post_id) WHERE post_id IS NOT NULL;
CREATE INDEX media_sweep_idx ON media.media (expires_at) WHERE state <> 'confirmed';

CREATE TABLE media.variants (
    media_id     uuid NOT NULL REFERENCES media.media (id) ON DELETE CASCADE,
    name         text NOT NULL,
    storage_key  text NOT NULL UNIQUE,
    content_type text NOT NULL,
    width        integer NOT NULL,
    height       integer NOT NULL,
    size_bytes   bigint NOT NULL,
    sha256       text NOT NULL,
    PRIMARY KEY (media_id, name),
    CONSTRAINT variants_name CHECK (name IN ('original', 'medium', 'thumbnail'))
);
