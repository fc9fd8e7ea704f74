// Publishing end to end (issue 3): photos and videos in through the three upload paths, out
// through the CDN listener by signed URLs, into posts, feeds and away again, against the real
// node (all services in one process), a private PostgreSQL and Redis, and - for the S3
// variant - a real SigV4-checking S3 server (s3rver).  See harness.mjs and media-fixtures.mjs.
//
// The same suite runs twice, on the filesystem backend and on S3.  Every refusal is checked
// twice (short text/plain and problem+json with its code word) and followed by a look at what
// the node left behind: no extra row in media.media / media.variants / post.posts, no extra
// object in storage, no leftover file in the spool folder or the node's TMPDIR.  A third,
// small stack with second-long lifetimes and a one-second video limit checks that long videos
// are refused, that upload URLs and media URLs expire, and that the sweep removes unconfirmed
// uploads.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  PROBLEM, UUID_RE, assertPlainError, assertProblem, assertStatus, assertTimestamp, filesUnder,
  makeTempDir, newAccount, psql, psqlNumber, removeDir, request, sendWithheldBody, startS3, startStack,
} from './harness.mjs';
import { isBlue, isJpeg, isRed, jpegSize, leakedMetadata, makeFixtures, pixelAt, readTags } from './media-fixtures.mjs';

const MAX_UPLOAD_BYTES = 8 * 1024 * 1024;
const MAX_PIXELS = 50000000;
const ORIGINAL_MAX_SIDE = 2048;
const VARIANTS = ['original', 'medium', 'thumbnail'];
const MISSING_UUID = '00000000-0000-4000-8000-000000000000';

let fixtures;
let fixtureDir;

before(async () => {
  fixtureDir = await makeTempDir('gn-fixtures-');
  fixtures = await makeFixtures(fixtureDir);
});

after(async () => {
  if (fixtureDir) await removeDir(fixtureDir);
});

// ---------------------------------------------------------------------------------------------
// A node with its users and the helpers that talk to it

// Starts a stack for `backend` ('fs' or 's3') with the limits the tests rely on (media served on
// the gateway's port), and registers two users.
async function startWorld (backend, extraArgs = []) {
  const world = { backend };
  world.tmpDir = await makeTempDir('gn-node-tmp-');
  if (backend === 's3') world.s3 = await startS3();
  const args = [
    '--set', `media.max_upload_bytes=${MAX_UPLOAD_BYTES}`,
    '--set', `media.max_pixels=${MAX_PIXELS}`,
    '--set', `media.original_max_side=${ORIGINAL_MAX_SIDE}`,
    ...(world.s3 ? world.s3.nodeArgs : []),
    ...extraArgs,
  ];
  try {
    world.stack = await startStack({ args, env: { TMPDIR: world.tmpDir } });
  } catch (err) {
    if (world.s3) await world.s3.stop();
    await removeDir(world.tmpDir);
    throw err;
  }
  world.api = world.stack.api;
  world.alice = await registerUser(world, 'alice');
  world.bob = await registerUser(world, 'bob');
  return world;
}

async function stopWorld (world) {
  if (!world) return;
  try {
    await world.stack.stop();
  } finally {
    if (world.s3) await world.s3.stop();
    await removeDir(world.tmpDir);
  }
}

async function registerUser (world, prefix) {
  const account = newAccount(prefix);
  const res = await world.api.post('/api/v1/auth/register', { json: account });
  assertStatus(res, 201, `register ${account.username}`);
  const body = res.json();
  return { token: body.token, id: body.user.id, username: body.user.username };
}

const bearer = (user, headers = {}) => (user ? { Authorization: `Bearer ${user.token}`, ...headers } : headers);

function multipartBody (fixture, { field = 'file', filename = fixture.name, contentType = fixture.contentType, bytes = fixture.bytes } = {}) {
  const boundary = `----generia${crypto.randomBytes(12).toString('hex')}`;
  const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${field}"; ` +
                           `filename="${filename}"\r\nContent-Type: ${contentType}\r\n\r\n`);
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  return { body: Buffer.concat([head, bytes, tail]), contentType: `multipart/form-data; boundary=${boundary}` };
}

function uploadMultipart (world, user, fixture, options = {}, headers = {}) {
  const { body, contentType } = multipartBody(fixture, options);
  return world.api.post('/api/v1/media/upload', {
    body, headers: bearer(user, { 'Content-Type': contentType, ...headers }),
  });
}

function uploadBase64 (world, user, fixture, { dataUrl = false, contentType = fixture.contentType } = {}, headers = {}) {
  const encoded = fixture.bytes.toString('base64');
  return world.api.post('/api/v1/media', {
    json: {
      media_data: dataUrl ? `data:${contentType};base64,${encoded}` : encoded,
      content_type: contentType,
      filename: fixture.name,
    },
    headers: bearer(user, headers),
  });
}

function askUploadUrl (world, user, { filename, contentType, size }, headers = {}) {
  return world.api.post('/api/v1/media/upload-url', {
    json: { filename, content_type: contentType, size }, headers: bearer(user, headers),
  });
}

async function uploadUrlFor (world, user, fixture, size = fixture.bytes.length) {
  const res = await askUploadUrl(world, user, { filename: fixture.name, contentType: fixture.contentType, size });
  assertStatus(res, 200, `upload-url for ${fixture.name}`);
  return res.json();
}

// The PUT to a presigned URL: a plain HTTP client with no credentials at all.
function putBytes (uploadUrl, bytes, contentType, headers = {}) {
  return request(uploadUrl, 'PUT', uploadUrl, { body: bytes, headers: { 'Content-Type': contentType, ...headers } });
}

function confirm (world, user, mediaId, headers = {}) {
  return world.api.post('/api/v1/media/confirm', { json: { media_id: mediaId }, headers: bearer(user, headers) });
}

async function presignedUpload (world, user, fixture) {
  const slot = await uploadUrlFor(world, user, fixture);
  const put = await putBytes(slot.upload_url, fixture.bytes, fixture.contentType);
  assertStatus(put, 200, `PUT ${fixture.name}`);
  const res = await confirm(world, user, slot.media_id);
  assertStatus(res, 200, `confirm ${fixture.name}`);
  return res.json();
}

async function uploaded (world, user, fixture) {
  const res = await uploadMultipart(world, user, fixture);
  assertStatus(res, 201, `multipart upload of ${fixture.name}`);
  return res.json();
}

// GET (or another method) on an absolute URL, with no credentials.
function fetchUrl (url, { method = 'GET', headers = {} } = {}) {
  return request(url, method, url, { headers });
}

async function download (url, what) {
  const res = await fetchUrl(url);
  assertStatus(res, 200, `${what} ${url}`);
  return res.body;
}

function createPost (world, user, body, headers = {}) {
  return world.api.post('/api/v1/posts', { json: body, headers: bearer(user, headers) });
}

async function createdPost (world, user, body) {
  const res = await createPost(world, user, body);
  assertStatus(res, 201, `create post ${JSON.stringify(body).slice(0, 200)}`);
  const created = res.json();
  assert.match(created.id, UUID_RE, `post id: ${res.text}`);
  assertTimestamp(created.created_at, 'created_at');
  return created;
}

// ---------------------------------------------------------------------------------------------
// What the node keeps: rows, objects, temporary files

// Storage keys ("media/<id>/<variant>-<sha256>.<ext>") of every object the backend holds.
function storageKeys (world) {
  if (world.s3) return world.s3.objectKeys();
  return filesUnder(path.join(world.stack.dataDir, 'media'));
}

function snapshot (world) {
  const url = world.stack.pg.url;
  return {
    media: new Map(psql(url, 'SELECT id, state FROM media.media').map(([id, state]) => [id, state])),
    variants: psqlNumber(url, 'SELECT count(*) FROM media.variants'),
    posts: psqlNumber(url, 'SELECT count(*) FROM post.posts'),
    objects: storageKeys(world),
    spool: filesUnder(path.join(world.stack.dataDir, 'spool')),
    tmp: filesUnder(world.tmpDir),
  };
}

// After a refusal: no new media row and no row moved on, no extra variant, post, object, and
// no temporary file left.  Temporary files get one second to go (their removal may trail the
// answer by a moment); the periodic sweep is never waited for.
async function assertNothingExtra (world, before, what) {
  let now = snapshot(world);
  for (let i = 0; i < 10 && (now.spool.length > before.spool.length || now.tmp.length > before.tmp.length); i++) {
    await sleep(100);
    now = snapshot(world);
  }
  for (const [id, state] of now.media) {
    assert.ok(before.media.has(id), `${what}: a media row was added (${id}, state ${state})`);
    assert.equal(state, before.media.get(id), `${what}: media row ${id} moved from ${before.media.get(id)} to ${state}`);
  }
  assert.equal(now.variants, before.variants, `${what}: media.variants rows ${before.variants} -> ${now.variants}`);
  assert.equal(now.posts, before.posts, `${what}: post.posts rows ${before.posts} -> ${now.posts}`);
  assert.deepEqual(now.objects, before.objects, `${what}: storage objects changed`);
  assert.deepEqual(now.spool, before.spool, `${what}: files left in the spool folder`);
  assert.deepEqual(now.tmp, before.tmp, `${what}: files left in the node's TMPDIR`);
}

// A refusal, asked twice: once for the plain-text message, once for problem+json with `code`
// (a word or a list of acceptable words; `status` may be a list too).  `prepare()` runs before
// each ask (e.g. to get a fresh upload URL) and its result goes to `send(headers, prepared)`.
// Returns the answers.
async function assertRefused (world, what, send, status, code, { prepare } = {}) {
  const answers = [];
  for (const headers of [{}, { ...PROBLEM }]) {
    const prepared = prepare ? await prepare() : undefined;
    const before = snapshot(world);
    const res = await send(headers, prepared);
    const expected = Array.isArray(status) && status.includes(res.status) ? res.status : [status].flat()[0];
    if (headers.Accept) assertProblem(res, expected, code, `${what} (problem+json)`);
    else assertPlainError(res, expected, `${what} (plain)`);
    await assertNothingExtra(world, before, what);
    answers.push(res);
  }
  return answers;
}

// Peak resident memory of the node so far (kB), from the kernel.
function peakRssKb (pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmHWM:\s+(\d+) kB/m.exec(status);
  assert.ok(match, 'no VmHWM in /proc/<pid>/status');
  return Number(match[1]);
}

// ---------------------------------------------------------------------------------------------
// Checks of media objects and the files behind them

function assertMediaObject (media, { user, type, contentType, width, height }, what) {
  assert.match(media.media_id, UUID_RE, `${what}: media_id ${JSON.stringify(media)}`);
  assert.equal(media.user_id, user.id, `${what}: user_id`);
  assert.equal(media.type, type, `${what}: type`);
  if (contentType) assert.equal(media.content_type, contentType, `${what}: content_type`);
  assert.equal(media.width, width, `${what}: width`);
  assert.equal(media.height, height, `${what}: height`);
  assert.equal(typeof media.blurhash, 'string', `${what}: blurhash`);
  assert.ok(media.blurhash.length >= 6, `${what}: blurhash too short: ${JSON.stringify(media.blurhash)}`);
  assert.equal(media.status, 'confirmed', `${what}: status`);
  assert.equal(typeof media.variants, 'object', `${what}: variants`);
  for (const name of VARIANTS) {
    const url = media.variants[name];
    assert.equal(typeof url, 'string', `${what}: variant ${name} missing: ${JSON.stringify(media.variants)}`);
    assert.match(url, /^https?:\/\//, `${what}: variant ${name} is not an absolute URL: ${url}`);
    assert.ok(url.includes(`media/${media.media_id}/`), `${what}: variant ${name} URL does not name its media: ${url}`);
  }
}

// A downloaded image variant: a JPEG of the given size with no metadata left.
// Returns the path of a copy in the fixture folder for further looks (the caller removes it).
function assertCleanJpeg (bytes, { width, height }, what) {
  assert.ok(isJpeg(bytes), `${what} is not a JPEG (starts ${bytes.subarray(0, 8).toString('hex')})`);
  assert.deepEqual(jpegSize(bytes), { width, height }, `${what}: dimensions`);
  const file = path.join(fixtureDir, `check-${crypto.randomBytes(6).toString('hex')}.jpg`);
  fs.writeFileSync(file, bytes);
  try {
    const tags = readTags(file);
    assert.deepEqual(leakedMetadata(tags), [], `${what} still carries metadata: ${JSON.stringify(tags)}`);
    return file;
  } catch (err) {
    fs.rmSync(file, { force: true });
    throw err;
  }
}

// The objects of one media item, from the storage backend, checked for content-addressed
// names: "media/<id>/<variant>-<sha256 of the bytes>.<ext>".
function objectsOf (world, mediaId) {
  return storageKeys(world).filter((key) => key.startsWith(`media/${mediaId}/`));
}

function assertStoredVariant (world, mediaId, name, bytes) {
  const sha = crypto.createHash('sha256').update(bytes).digest('hex');
  const keys = objectsOf(world, mediaId);
  const match = keys.filter((key) => new RegExp(`^media/${mediaId}/${name}-${sha}\\.[a-z0-9]+$`).test(key));
  assert.equal(match.length, 1, `variant ${name} of ${mediaId} is not stored as ${name}-<sha256>: ${keys.join(', ')}`);
  const file = world.s3 ? world.s3.objectPath(match[0]) : path.join(world.stack.dataDir, 'media', match[0]);
  assert.ok(fs.readFileSync(file).equals(bytes), `the stored object ${match[0]} differs from what the CDN served`);
}

// Files in the CDN's local cache (copies of remote objects, named after their storage keys)
// that belong to one media item.
function cachedCopies (world, mediaId) {
  return filesUnder(path.join(world.stack.dataDir, 'cdn-cache')).filter((file) => file.includes(mediaId));
}

// A media URL with one query parameter replaced.
function withParam (url, name, value) {
  const u = new URL(url);
  u.searchParams.set(name, value);
  return u.toString();
}

function flipChar (text, index = Math.floor(text.length / 2)) {
  const c = text[index];
  return text.slice(0, index) + (c === 'A' ? 'B' : 'A') + text.slice(index + 1);
}

const withoutQuery = (url) => url.split('?')[0];

// ---------------------------------------------------------------------------------------------
// The suite, once per storage backend

function publishingSuite (backend) {
  describe(backend, () => {
    let world;

    before(async () => {
      world = await startWorld(backend);
    });

    after(async () => {
      await stopWorld(world);
    });

    test('an empty node has an empty feed: posts is [], not null', async () => {
      const res = await world.api.get('/api/v1/feed?limit=10');
      assertStatus(res, 200);
      const body = res.json();
      assert.deepEqual(body.posts, []);
      assert.equal(body.next_cursor, null);
      assert.equal(body.has_more, false);
      const offset = await world.api.get('/api/v1/feed?limit=10&offset=0');
      assertStatus(offset, 200);
      assert.deepEqual(offset.json().posts, []);
      const mine = await world.api.get(`/api/v1/users/${world.alice.id}/posts`);
      assertStatus(mine, 200);
      assert.deepEqual(mine.json().posts, []);
      assert.equal(mine.json().total, 0);
    });

    test('presigned flow: upload-url, PUT with no credentials, confirm; EXIF orientation applied, GPS gone', async () => {
      const fixture = fixtures.exif;
      const res = await askUploadUrl(world, world.alice,
                                     { filename: 'holiday.jpg', contentType: 'image/jpeg', size: fixture.bytes.length });
      assertStatus(res, 200, 'upload-url');
      const slot = res.json();
      assert.match(slot.media_id, UUID_RE);
      assert.equal(slot.upload_method, 'PUT');
      const uploadUrl = new URL(slot.upload_url);
      assert.equal(uploadUrl.pathname, `/api/v1/media/${slot.media_id}/content`);
      assert.equal(uploadUrl.port, String(world.stack.node.port), `upload_url is not on the gateway: ${slot.upload_url}`);
      assert.ok(uploadUrl.searchParams.get('expires'), `upload_url has no expires: ${slot.upload_url}`);
      assert.ok(uploadUrl.searchParams.get('signature'), `upload_url has no signature: ${slot.upload_url}`);
      const expires = assertTimestamp(slot.expires_at, 'expires_at');
      assert.ok(expires > Date.now(), `expires_at ${slot.expires_at} is not in the future`);
      assert.deepEqual(psql(world.stack.pg.url, `SELECT state FROM media.media WHERE id = '${slot.media_id}'`), [['pending']]);

      // Nothing to confirm yet, and nothing to see.
      await assertRefused(world, 'confirm before the PUT', (h) => confirm(world, world.alice, slot.media_id, h),
                          400, 'upload_incomplete');
      assertStatus(await world.api.get(`/api/v1/media/${slot.media_id}`), 404, 'GET of a pending media');

      const put = await putBytes(slot.upload_url, fixture.bytes, 'image/jpeg');
      assertStatus(put, 200, 'PUT');
      const putBody = put.json();
      assert.equal(putBody.media_id, slot.media_id);
      assert.equal(putBody.status, 'uploaded');

      await assertRefused(world, 'a second PUT on the used URL',
                          (h) => putBytes(slot.upload_url, fixture.bytes, 'image/jpeg', h), 400, 'upload_not_pending');
      await assertRefused(world, 'confirming someone else\'s upload',
                          (h) => confirm(world, world.bob, slot.media_id, h), 404, undefined);
      assertStatus(await world.api.get(`/api/v1/media/${slot.media_id}`), 404, 'GET of an unconfirmed media');

      const confirmed = await confirm(world, world.alice, slot.media_id);
      assertStatus(confirmed, 200, 'confirm');
      const media = confirmed.json();
      assertMediaObject(media, { user: world.alice, type: 'image', contentType: 'image/jpeg', width: 300, height: 400 }, 'confirmed');

      // Anyone reads it, with no credentials.
      const got = await world.api.get(`/api/v1/media/${slot.media_id}`);
      assertStatus(got, 200, 'GET media');
      assertMediaObject(got.json(), { user: world.alice, type: 'image', width: 300, height: 400 }, 'GET media');

      // The variants: upright (300x400, red on top), thumbnail square, no metadata.
      const expected = { original: [300, 400], medium: [300, 400], thumbnail: [320, 320] };
      for (const name of VARIANTS) {
        const bytes = await download(media.variants[name], name);
        const [width, height] = expected[name];
        const file = assertCleanJpeg(bytes, { width, height }, `variant ${name}`);
        try {
          if (name !== 'thumbnail') {
            assert.ok(isRed(pixelAt(file, 150, 40)), `${name}: the top should be red (orientation 6 applied): ${pixelAt(file, 150, 40)}`);
            assert.ok(isBlue(pixelAt(file, 150, 360)), `${name}: the bottom should be blue: ${pixelAt(file, 150, 360)}`);
          } else {
            assert.ok(isRed(pixelAt(file, 160, 5)), `thumbnail: the top should be red: ${pixelAt(file, 160, 5)}`);
            assert.ok(isBlue(pixelAt(file, 160, 314)), `thumbnail: the bottom should be blue: ${pixelAt(file, 160, 314)}`);
          }
        } finally {
          fs.rmSync(file, { force: true });
        }
        assertStoredVariant(world, media.media_id, name, bytes);
      }
      assert.equal(objectsOf(world, media.media_id).length, 3, 'three stored objects');
      assert.equal(psqlNumber(world.stack.pg.url, `SELECT count(*) FROM media.variants WHERE media_id = '${media.media_id}'`), 3);
      assert.deepEqual(psql(world.stack.pg.url, `SELECT state FROM media.media WHERE id = '${media.media_id}'`), [['confirmed']]);
    });

    test('multipart upload of a 12-megapixel JPEG: medium 1080 px, original capped, thumbnail 320', async () => {
      const res = await uploadMultipart(world, world.alice, fixtures.large);
      assertStatus(res, 201, 'multipart upload');
      const media = res.json();
      assertMediaObject(media, { user: world.alice, type: 'image', contentType: 'image/jpeg', width: 4000, height: 3000 }, 'large');
      const expected = { original: [ORIGINAL_MAX_SIDE, ORIGINAL_MAX_SIDE * 3 / 4], medium: [1080, 810], thumbnail: [320, 320] };
      for (const name of VARIANTS) {
        const bytes = await download(media.variants[name], name);
        const [width, height] = expected[name];
        fs.rmSync(assertCleanJpeg(bytes, { width, height }, `large ${name}`));
        assertStoredVariant(world, media.media_id, name, bytes);
      }
    });

    test('base64 JSON upload of a PNG with alpha (data: URL prefix): JPEG variants, never enlarged', async () => {
      const res = await uploadBase64(world, world.alice, fixtures.alpha, { dataUrl: true });
      assertStatus(res, 201, 'base64 upload');
      const media = res.json();
      assertMediaObject(media, { user: world.alice, type: 'image', width: 200, height: 100 }, 'png');
      const expected = { original: [200, 100], medium: [200, 100], thumbnail: [320, 320] };
      for (const name of VARIANTS) {
        const bytes = await download(media.variants[name], name);
        const [width, height] = expected[name];
        fs.rmSync(assertCleanJpeg(bytes, { width, height }, `png ${name}`));
      }
      const plain = await uploadBase64(world, world.bob, fixtures.tiny);
      assertStatus(plain, 201, 'base64 upload without a data: prefix');
      assertMediaObject(plain.json(), { user: world.bob, type: 'image', width: 16, height: 16 }, 'tiny');
    });

    test('WebP, GIF and HEIC are taken, type decided from the bytes; variants are JPEG', async () => {
      for (const kind of ['webp', 'gif', 'heic']) {
        const fixture = fixtures[kind];
        // Named and declared as something else: the bytes decide.
        const res = await uploadMultipart(world, world.alice, fixture, { filename: `photo-${kind}.bin`, contentType: 'application/octet-stream' });
        assertStatus(res, 201, `multipart ${kind}`);
        const media = res.json();
        assertMediaObject(media, { user: world.alice, type: 'image', width: 240, height: 160 }, kind);
        if (kind === 'heic') assert.match(media.content_type, /^image\/hei[cf]$/, 'content_type of a HEIC');
        else assert.equal(media.content_type, fixture.contentType, `content_type of a ${kind}`);
        const expected = { original: [240, 160], medium: [240, 160], thumbnail: [320, 320] };
        for (const name of VARIANTS) {
          const bytes = await download(media.variants[name], `${kind} ${name}`);
          const [width, height] = expected[name];
          fs.rmSync(assertCleanJpeg(bytes, { width, height }, `${kind} ${name}`));
        }
      }
    });

    for (const [kind, way] of [['mp4', 'presigned'], ['webm', 'multipart']]) {
      test(`${kind} video through the ${way} upload: duration, size, the video as original, JPEG posters`, async () => {
        const fixture = fixtures[kind];
        const media = way === 'presigned' ? await presignedUpload(world, world.alice, fixture) : await uploaded(world, world.alice, fixture);
        assertMediaObject(media, { user: world.alice, type: 'video', contentType: fixture.contentType, width: 320, height: 240 }, kind);
        assert.ok(Math.abs(media.duration_ms - fixture.durationMs) <= 150, `duration_ms ${media.duration_ms}, expected about 2000`);

        const original = await fetchUrl(media.variants.original);
        assertStatus(original, 200, 'video original');
        assert.equal(original.headers['content-type'], fixture.contentType, 'video original content type');
        if (kind === 'mp4') assert.equal(original.body.subarray(4, 8).toString('latin1'), 'ftyp', 'not an MP4');
        else assert.equal(original.body.subarray(0, 4).toString('hex'), '1a45dfa3', 'not a WebM (EBML)');
        assertStoredVariant(world, media.media_id, 'original', original.body);

        // Seeking: a range in the middle of the video.
        const total = original.body.length;
        const range = await fetchUrl(media.variants.original, { headers: { Range: `bytes=1000-4999` } });
        assertStatus(range, 206, 'video range');
        assert.ok(range.body.equals(original.body.subarray(1000, 5000)), 'video range bytes');
        assert.equal(range.headers['content-range'], `bytes 1000-4999/${total}`);

        const expected = { medium: [320, 240], thumbnail: [320, 320] };
        for (const name of ['medium', 'thumbnail']) {
          const bytes = await download(media.variants[name], `${kind} ${name}`);
          const [width, height] = expected[name];
          fs.rmSync(assertCleanJpeg(bytes, { width, height }, `${kind} poster ${name}`));
          assertStoredVariant(world, media.media_id, name, bytes);
        }
      });
    }

    test('CDN: caching headers, HEAD, 304, ranges, 416, and 403 for any tampering', async () => {
      const media = await uploaded(world, world.alice, fixtures.large);
      const url = media.variants.medium;
      const full = await fetchUrl(url);
      assertStatus(full, 200, 'GET variant');
      const total = full.body.length;
      assert.ok(total > 300, `variant too small to test ranges: ${total}`);
      assert.equal(full.headers['content-type'], 'image/jpeg');
      assert.equal(full.headers['content-length'], String(total));
      const etag = full.headers.etag;
      assert.ok(etag && /^(W\/)?"[^"]+"$/.test(etag), `ETag missing or malformed: ${etag}`);
      assert.ok(!Number.isNaN(Date.parse(full.headers['last-modified'] ?? '')), `Last-Modified: ${full.headers['last-modified']}`);
      assert.match(full.headers['cache-control'] ?? '', /\bimmutable\b/, 'Cache-Control');
      assert.equal(full.headers['accept-ranges'], 'bytes');

      const head = await fetchUrl(url, { method: 'HEAD' });
      assertStatus(head, 200, 'HEAD');
      assert.equal(head.body.length, 0, 'HEAD has a body');
      assert.equal(head.headers['content-length'], String(total));
      assert.equal(head.headers.etag, etag);

      const notModified = await fetchUrl(url, { headers: { 'If-None-Match': etag } });
      assertStatus(notModified, 304, 'If-None-Match');
      assert.equal(notModified.body.length, 0, '304 has a body');
      assert.equal(notModified.headers.etag, etag);
      const otherTag = await fetchUrl(url, { headers: { 'If-None-Match': '"something-else"' } });
      assertStatus(otherTag, 200, 'If-None-Match with another tag');

      const first = await fetchUrl(url, { headers: { Range: 'bytes=0-99' } });
      assertStatus(first, 206, 'Range bytes=0-99');
      assert.equal(first.body.length, 100);
      assert.ok(first.body.equals(full.body.subarray(0, 100)), 'first 100 bytes');
      assert.equal(first.headers['content-range'], `bytes 0-99/${total}`);
      assert.equal(first.headers['content-length'], '100');

      const last = await fetchUrl(url, { headers: { Range: 'bytes=-100' } });
      assertStatus(last, 206, 'Range bytes=-100');
      assert.ok(last.body.equals(full.body.subarray(total - 100)), 'last 100 bytes');
      assert.equal(last.headers['content-range'], `bytes ${total - 100}-${total - 1}/${total}`);

      const open = await fetchUrl(url, { headers: { Range: `bytes=${total - 10}-` } });
      assertStatus(open, 206, 'Range bytes=N-');
      assert.ok(open.body.equals(full.body.subarray(total - 10)), 'open-ended range');

      const beyond = await fetchUrl(url, { headers: { Range: `bytes=${total}-${total + 100}` } });
      assertStatus(beyond, 416, 'unsatisfiable range');
      assert.equal(beyond.headers['content-range'], `bytes */${total}`);

      // Tampering: the signature, the expiry, the path (another real object of the same media,
      // so only the signature can refuse it), no signature at all.
      const signature = new URL(url).searchParams.get('signature');
      const expires = new URL(url).searchParams.get('expires');
      assert.ok(signature && expires, `media URL without signature/expires: ${url}`);
      const otherObject = withoutQuery(media.variants.thumbnail).split('/').pop();
      const tampered = {
        signature: withParam(url, 'signature', flipChar(signature)),
        'signature (last character)': withParam(url, 'signature', flipChar(signature, signature.length - 1)),
        expiry: withParam(url, 'expires', String(Number(expires) + 3600)),
        path: url.replace(/\/[^/?]+\?/, `/${otherObject}?`),
        'no signature': withoutQuery(url) + `?expires=${expires}`,
        'another media': media.variants.medium.replace(media.media_id, MISSING_UUID),
      };
      assert.notEqual(tampered.path, url);
      for (const [what, bad] of Object.entries(tampered)) {
        const res = await fetchUrl(bad);
        assertStatus(res, 403, `tampered ${what}: ${bad}`);
        assert.ok(!res.body.includes(full.body.subarray(0, 64)), `tampered ${what} leaked the image`);
      }
    });

    test('refused uploads: text named .jpg 415, unsupported type 415, too large 413; nothing left behind', async () => {
      const text = fixtures.text;
      await assertRefused(world, 'multipart text.jpg', (h) => uploadMultipart(world, world.alice, text, {}, h),
                          415, 'unsupported_media_type');
      await assertRefused(world, 'base64 text.jpg', (h) => uploadBase64(world, world.alice, text, {}, h),
                          415, 'unsupported_media_type');
      await assertRefused(world, 'PUT of text.jpg to a presigned URL',
                          (h, slot) => putBytes(slot.upload_url, text.bytes, 'image/jpeg', h),
                          415, 'unsupported_media_type', { prepare: () => uploadUrlFor(world, world.alice, text) });
      await assertRefused(world, 'upload-url for application/pdf',
                          (h) => askUploadUrl(world, world.alice, { filename: 'a.pdf', contentType: 'application/pdf', size: 1000 }, h),
                          415, 'unsupported_media_type');
      await assertRefused(world, 'upload-url over media.max_upload_bytes',
                          (h) => askUploadUrl(world, world.alice, { filename: 'big.jpg', contentType: 'image/jpeg', size: MAX_UPLOAD_BYTES + 1 }, h),
                          413, 'file_too_large');

      const oversized = { ...fixtures.large, bytes: Buffer.concat([fixtures.large.bytes, crypto.randomBytes(MAX_UPLOAD_BYTES + 4096 - fixtures.large.bytes.length)]) };
      await assertRefused(world, 'multipart over media.max_upload_bytes',
                          (h) => uploadMultipart(world, world.alice, oversized, {}, h),
                          413, ['payload_too_large', 'file_too_large']);
      await assertRefused(world, 'PUT of more bytes than declared',
                          (h, slot) => putBytes(slot.upload_url, fixtures.exif.bytes, 'image/jpeg', h),
                          413, 'payload_too_large',
                          { prepare: () => uploadUrlFor(world, world.alice, fixtures.exif, 1000) });
      // No length announced: refused as the bytes pass the signed size.
      await assertRefused(world, 'chunked PUT of more bytes than declared',
                          (h, slot) => request(slot.upload_url, 'PUT', slot.upload_url, {
                            body: fixtures.exif.bytes, chunked: true, headers: { 'Content-Type': 'image/jpeg', ...h },
                          }),
                          413, 'payload_too_large',
                          { prepare: () => uploadUrlFor(world, world.alice, fixtures.exif, 1000) });
    });

    test('a PUT of fewer bytes than declared is taken: the bytes decide what was uploaded', async () => {
      const slot = await uploadUrlFor(world, world.alice, fixtures.exif, fixtures.exif.bytes.length + 5000);
      assertStatus(await putBytes(slot.upload_url, fixtures.exif.bytes, 'image/jpeg'), 200, 'PUT');
      const confirmed = await confirm(world, world.alice, slot.media_id);
      assertStatus(confirmed, 200, 'confirm');
      assertMediaObject(confirmed.json(), { user: world.alice, type: 'image', width: 300, height: 400 }, 'confirmed');
    });

    test('refused uploads: a truncated JPEG is 400 invalid_media; nothing left behind', async () => {
      await assertRefused(world, 'multipart truncated.jpg',
                          (h) => uploadMultipart(world, world.alice, fixtures.truncated, {}, h), 400, 'invalid_media');
      await assertRefused(world, 'base64 truncated.jpg',
                          (h) => uploadBase64(world, world.alice, fixtures.truncated, {}, h), 400, 'invalid_media');
    });

    test('a decompression bomb (20000x20000 PNG) is 400 media_too_large, fast, in bounded memory', async () => {
      const peakBefore = peakRssKb(world.stack.node.pid);
      const started = Date.now();
      const answers = await assertRefused(world, 'bomb.png',
                                          (h) => uploadMultipart(world, world.alice, fixtures.bomb, {}, h),
                                          400, 'media_too_large');
      const elapsed = Date.now() - started;
      assert.equal(answers.length, 2);
      assert.ok(elapsed < 4000, `refusing the bomb twice took ${elapsed} ms`);
      const grown = peakRssKb(world.stack.node.pid) - peakBefore;
      // Decoding it would need 400 MB (8-bit grey) or more.
      assert.ok(grown < 64 * 1024, `the node's peak memory grew by ${grown} kB on the bomb`);
      await assertRefused(world, 'bomb.png via presigned PUT',
                          (h, slot) => putBytes(slot.upload_url, fixtures.bomb.bytes, 'image/png', h),
                          400, 'media_too_large', { prepare: () => uploadUrlFor(world, world.alice, fixtures.bomb) });
    });

    test('tampered and foreign upload URLs are 403 invalid_signature and leave the upload usable', async () => {
      const slot = await uploadUrlFor(world, world.alice, fixtures.exif);
      const url = new URL(slot.upload_url);
      const signature = url.searchParams.get('signature');
      const other = await uploadUrlFor(world, world.bob, fixtures.exif);
      const forged = {
        signature: withParam(slot.upload_url, 'signature', flipChar(signature)),
        expiry: withParam(slot.upload_url, 'expires', String(Number(url.searchParams.get('expires')) + 3600)),
        // Bob's valid signature on Alice's media id.
        'another upload\'s signature': withParam(slot.upload_url, 'signature', new URL(other.upload_url).searchParams.get('signature')),
        'no signature': `${url.origin}${url.pathname}?expires=${url.searchParams.get('expires')}`,
        // The URL is signed over its size: a larger one is a forgery.
        size: withParam(slot.upload_url, 'size', String(Number(url.searchParams.get('size')) * 2)),
        'no size': withParam(slot.upload_url, 'size', ''),
      };
      for (const [what, bad] of Object.entries(forged)) {
        await assertRefused(world, `PUT with a tampered ${what}`,
                            (h) => putBytes(bad, fixtures.exif.bytes, 'image/jpeg', h), 403, 'invalid_signature');
      }
      const put = await putBytes(slot.upload_url, fixtures.exif.bytes, 'image/jpeg');
      assertStatus(put, 200, 'the genuine PUT after the forgeries');
      assertStatus(await confirm(world, world.alice, slot.media_id), 200, 'confirm after the forgeries');
    });

    test('a PUT to a forged upload URL is refused before its body is read: 403 at once, nothing spooled', async () => {
      const slot = await uploadUrlFor(world, world.alice, fixtures.exif);
      const genuine = new URL(slot.upload_url);
      const forged = new URL(withParam(slot.upload_url, 'signature', flipChar(genuine.searchParams.get('signature'))));
      const target = forged.pathname + forged.search;
      // Under the route's limit, so only the URL's check can refuse it.
      const declared = MAX_UPLOAD_BYTES - 4096;
      const headers = { 'Content-Type': 'image/jpeg' };
      const before = snapshot(world);

      // A client that waits for "100 Continue" gets the answer instead and sends nothing.
      const waiting = await sendWithheldBody(forged.origin, 'PUT', target, { declared, send: declared, expectContinue: true, headers });
      assert.equal(waiting.status, 403, `Expect: 100-continue: ${waiting.status} ${waiting.text}`);
      assert.equal(waiting.continued, false, 'the server asked for the body of a forged upload');
      assert.equal(waiting.bodyBytesSent, 0);
      assert.match(waiting.text, /signature/);
      // A client that just sends: the answer comes after 64 KiB, the rest is never needed.
      const eager = await sendWithheldBody(forged.origin, 'PUT', target, { declared, send: 65536, headers });
      assert.equal(eager.status, 403, `64 KiB of ${declared}: ${eager.status} ${eager.text}`);
      // Chunked, no length announced.
      const chunked = await sendWithheldBody(forged.origin, 'PUT', target, { chunked: true, send: 65536, headers });
      assert.equal(chunked.status, 403, `chunked: ${chunked.status} ${chunked.text}`);
      await assertNothingExtra(world, before, 'forged PUTs');

      // The genuine URL still works; once used, it is refused before the body as well.
      assertStatus(await putBytes(slot.upload_url, fixtures.exif.bytes, 'image/jpeg'), 200, 'the genuine PUT');
      const reused = await sendWithheldBody(genuine.origin, 'PUT', genuine.pathname + genuine.search,
                                            { declared, send: 65536, headers });
      assert.equal(reused.status, 400, `a used URL: ${reused.status} ${reused.text}`);
      assert.match(reused.text, /already used/);
    });

    test('URLs follow the address the client used: a LAN Host gets URLs on that host', async () => {
      const port = world.stack.node.port;
      const lan = { Host: `192.168.1.20:${port}` };
      const lanBase = `http://192.168.1.20:${port}`;
      const res = await askUploadUrl(world, world.alice, { filename: 'lan.jpg', contentType: 'image/jpeg', size: fixtures.exif.bytes.length }, lan);
      assertStatus(res, 200, 'upload-url with a LAN Host');
      const slot = res.json();
      assert.ok(slot.upload_url.startsWith(`${lanBase}/api/v1/media/${slot.media_id}/content?`), `upload_url: ${slot.upload_url}`);
      // The phone PUTs to that URL (here: the same node, reached by its loopback address).
      const put = new URL(slot.upload_url);
      const uploaded = await request(world.stack.baseUrl, 'PUT', put.pathname + put.search, {
        body: fixtures.exif.bytes, headers: { ...lan, 'Content-Type': 'image/jpeg' },
      });
      assertStatus(uploaded, 200, 'PUT with a LAN Host');
      const confirmed = await confirm(world, world.alice, slot.media_id, lan);
      assertStatus(confirmed, 200, 'confirm');
      for (const name of VARIANTS) {
        const url = confirmed.json().variants[name];
        assert.ok(url.startsWith(`${lanBase}/media/${slot.media_id}/`), `variant ${name}: ${url}`);
        const media = new URL(url);
        assertStatus(await request(world.stack.baseUrl, 'GET', media.pathname + media.search, { headers: lan }), 200,
                     `variant ${name} through the gateway's port`);
      }
      // A Host that is not a host name never ends up in a URL: the address the node was reached on does.
      const odd = await world.api.get(`/api/v1/media/${slot.media_id}`, { headers: { Host: 'photos.test/"><script>' } });
      assertStatus(odd, 200);
      assert.ok(odd.json().variants.medium.startsWith(`http://127.0.0.1:${port}/media/`), odd.json().variants.medium);
    });

    test('posts: create, read, carousel order, hashtags and mentions, edit, feeds; media URLs load', async () => {
      const photo = await uploaded(world, world.alice, fixtures.exif);
      const caption = `Sunset at the #Eiffel tower with @${world.bob.username} #paris #eiffel`;
      const created = await createdPost(world, world.alice, { caption, media_id: photo.media_id });

      const res = await world.api.get(`/api/v1/posts/${created.id}`);
      assertStatus(res, 200, 'GET post');
      const post = res.json();
      assert.equal(post.id, created.id);
      assert.equal(post.user_id, world.alice.id);
      assert.equal(post.username, world.alice.username);
      assert.equal(post.caption, caption);
      assert.equal(post.created_at, created.created_at);
      assertTimestamp(post.updated_at, 'updated_at');
      assert.equal(post.likes_count, 0);
      assert.equal(post.comments_count, 0);
      assert.equal(post.user_liked, false);
      assert.deepEqual(post.hashtags, ['eiffel', 'paris']);
      assert.deepEqual(post.mentions, [world.bob.username]);
      assert.equal(post.media.length, 1);
      assert.equal(post.media[0].media_id, photo.media_id);
      assert.equal(withoutQuery(post.media_url), withoutQuery(photo.variants.medium), 'media_url is the medium variant');
      const cover = await download(post.media_url, 'media_url');
      assert.deepEqual(jpegSize(cover), { width: 300, height: 400 });

      // A carousel keeps its order, mixing photos and a video.
      const items = [await uploaded(world, world.alice, fixtures.tiny), await uploaded(world, world.alice, fixtures.webm),
                     await uploaded(world, world.alice, fixtures.alpha)];
      const carousel = await createdPost(world, world.alice, { caption: '', media_ids: items.map((m) => m.media_id) });
      const carouselPost = (await world.api.get(`/api/v1/posts/${carousel.id}`)).json();
      assert.deepEqual(carouselPost.media.map((m) => m.media_id), items.map((m) => m.media_id));
      assert.deepEqual(carouselPost.media.map((m) => m.type), ['image', 'video', 'image']);
      assert.equal(withoutQuery(carouselPost.media_url), withoutQuery(items[0].variants.medium));
      for (const m of carouselPost.media) await download(m.variants.thumbnail, 'carousel thumbnail');

      // Edit: the author only; hashtags follow the caption.
      const edited = await world.api.request('PATCH', `/api/v1/posts/${created.id}`,
                                             { json: { caption: 'Now #Lyon' }, headers: bearer(world.alice) });
      assertStatus(edited, 200, 'PATCH caption');
      const editedPost = edited.json();
      assert.equal(editedPost.caption, 'Now #Lyon');
      assert.deepEqual(editedPost.hashtags, ['lyon']);
      assert.deepEqual(editedPost.mentions, []);
      assert.ok(Date.parse(editedPost.updated_at) >= Date.parse(editedPost.created_at));
      await assertRefused(world, 'PATCH of someone else\'s post',
                          (h) => world.api.request('PATCH', `/api/v1/posts/${created.id}`,
                                                   { json: { caption: 'mine now' }, headers: bearer(world.bob, h) }),
                          403, 'not_your_post');
      assert.equal((await world.api.get(`/api/v1/posts/${created.id}`)).json().caption, 'Now #Lyon');

      // Feeds, newest first.
      const feed = await world.api.get('/api/v1/feed?limit=2');
      assertStatus(feed, 200, 'feed');
      const page = feed.json();
      assert.deepEqual(page.posts.map((p) => p.id), [carousel.id, created.id]);
      assert.equal(typeof page.has_more, 'boolean');
      for (const p of page.posts) await download(p.media_url, 'feed media_url');
      const byOffset = await world.api.get('/api/v1/feed?limit=1&offset=1');
      assertStatus(byOffset, 200);
      assert.deepEqual(byOffset.json().posts.map((p) => p.id), [created.id]);

      const mine = await world.api.get(`/api/v1/users/${world.alice.id}/posts?limit=10`);
      assertStatus(mine, 200, 'user posts');
      const minePage = mine.json();
      assert.deepEqual(minePage.posts.map((p) => p.id), [carousel.id, created.id]);
      assert.equal(minePage.total, 2);
      assert.equal(minePage.next_cursor, null);
      assert.equal(minePage.has_more, false);
      const bobs = (await world.api.get(`/api/v1/users/${world.bob.id}/posts`)).json();
      assert.deepEqual(bobs.posts, []);
      assert.equal(bobs.total, 0);
      assertStatus(await world.api.get(`/api/v1/posts/${MISSING_UUID}`), 404, 'unknown post');
      assertStatus(await world.api.get('/api/v1/posts/not-a-uuid'), 404, 'malformed post id');
    });

    test('refused posts: missing, foreign, unconfirmed or reused media, too long a caption; nothing written', async () => {
      const bobs = await uploaded(world, world.bob, fixtures.tiny);
      const mine = await uploaded(world, world.alice, fixtures.tiny);
      const unconfirmed = await uploadUrlFor(world, world.alice, fixtures.tiny);
      assertStatus(await putBytes(unconfirmed.upload_url, fixtures.tiny.bytes, 'image/jpeg'), 200, 'PUT');
      const pending = await uploadUrlFor(world, world.alice, fixtures.tiny);
      const post = (body) => (h) => createPost(world, world.alice, body, h);

      await assertRefused(world, 'post without media', post({ caption: 'nothing' }), 400, undefined);
      // An id that names no media is, to the caller, not one of theirs: 400, or the same answer
      // as someone else's media (which does not tell whether the id exists).
      const [unknown] = await assertRefused(world, 'post with an unknown media', post({ caption: 'x', media_id: MISSING_UUID }),
                                            [400, 403], undefined);
      if (unknown.status === 403) {
        assertProblem(await createPost(world, world.alice, { caption: 'x', media_id: MISSING_UUID }, PROBLEM), 403,
                      'media_not_yours', 'an unknown media answered 403');
      }
      await assertRefused(world, 'post with a malformed media id', post({ caption: 'x', media_id: 'nope' }), 400, undefined);
      await assertRefused(world, 'post with someone else\'s media', post({ caption: 'x', media_id: bobs.media_id }),
                          [403, 400], ['media_not_yours', 'invalid_media']);
      await assertRefused(world, 'post with someone else\'s media in a carousel',
                          post({ caption: 'x', media_ids: [mine.media_id, bobs.media_id] }),
                          [403, 400], ['media_not_yours', 'invalid_media']);
      await assertRefused(world, 'post with an uploaded but unconfirmed media',
                          post({ caption: 'x', media_id: unconfirmed.media_id }), 400, undefined);
      await assertRefused(world, 'post with a pending media', post({ caption: 'x', media_id: pending.media_id }), 400, undefined);
      await assertRefused(world, 'post with a 2201-character caption',
                          post({ caption: 'a'.repeat(2201), media_id: mine.media_id }), 400, undefined);
      await assertRefused(world, 'post with 11 media', post({ caption: 'x', media_ids: Array(11).fill(mine.media_id) }), 400, undefined);
      await assertRefused(world, 'post with the same media twice',
                          post({ caption: 'x', media_ids: [mine.media_id, mine.media_id] }), 400, undefined);
      await assertRefused(world, 'post without a token',
                          (h) => createPost(world, null, { caption: 'x', media_id: mine.media_id }, h), 401, undefined);

      // Ten media is the most a carousel takes.
      const ten = [];
      for (let i = 0; i < 10; i++) ten.push((await uploaded(world, world.alice, fixtures.tiny)).media_id);
      const full = await createdPost(world, world.alice, { caption: 'ten', media_ids: ten });
      assert.deepEqual((await world.api.get(`/api/v1/posts/${full.id}`)).json().media.map((m) => m.media_id), ten);

      // 2200 characters (not bytes) is fine; the media then belongs to that post.
      const longest = 'é'.repeat(2200);
      const ok = await createdPost(world, world.alice, { caption: longest, media_id: mine.media_id });
      assert.equal((await world.api.get(`/api/v1/posts/${ok.id}`)).json().caption, longest);
      await assertRefused(world, 'post with media already in another post', post({ caption: 'again', media_id: mine.media_id }),
                          [400, 409], undefined);
    });

    test('delete: author only; then the post, its media rows, objects and URLs are gone', async () => {
      const items = [await uploaded(world, world.alice, fixtures.exif), await uploaded(world, world.alice, fixtures.mp4)];
      const created = await createdPost(world, world.alice, { caption: 'short-lived #gone', media_ids: items.map((m) => m.media_id) });
      const urls = items.flatMap((m) => VARIANTS.map((name) => m.variants[name]));
      for (const url of urls) await download(url, 'before delete');
      if (world.s3) {
        for (const m of items) {
          assert.equal(cachedCopies(world, m.media_id).length, 3,
                       `the CDN should hold local copies of the S3 objects it served: ${cachedCopies(world, m.media_id)}`);
        }
      }
      for (const m of items) assert.equal(objectsOf(world, m.media_id).length, 3);

      await assertRefused(world, 'DELETE of someone else\'s post',
                          (h) => world.api.delete(`/api/v1/posts/${created.id}`, { headers: bearer(world.bob, h) }),
                          403, 'not_your_post');
      await assertRefused(world, 'DELETE without a token',
                          (h) => world.api.delete(`/api/v1/posts/${created.id}`, { headers: h }), 401, undefined);

      const removed = await world.api.delete(`/api/v1/posts/${created.id}`, { headers: bearer(world.alice) });
      assertStatus(removed, 200, 'DELETE');
      assert.deepEqual(removed.json(), { success: true });

      assertStatus(await world.api.get(`/api/v1/posts/${created.id}`), 404, 'GET after delete');
      assertStatus(await world.api.delete(`/api/v1/posts/${created.id}`, { headers: bearer(world.alice) }), 404, 'second DELETE');
      const ids = items.map((m) => `'${m.media_id}'`).join(',');
      assert.equal(psqlNumber(world.stack.pg.url, `SELECT count(*) FROM media.media WHERE id IN (${ids})`), 0, 'media rows left');
      assert.equal(psqlNumber(world.stack.pg.url, `SELECT count(*) FROM media.variants WHERE media_id IN (${ids})`), 0, 'variant rows left');
      assert.equal(psqlNumber(world.stack.pg.url, `SELECT count(*) FROM post.post_media WHERE post_id = '${created.id}'`), 0);
      assert.equal(psqlNumber(world.stack.pg.url, `SELECT count(*) FROM post.hashtags WHERE post_id = '${created.id}'`), 0);
      for (const m of items) {
        assert.deepEqual(objectsOf(world, m.media_id), [], `objects of ${m.media_id} left in storage`);
        assertStatus(await world.api.get(`/api/v1/media/${m.media_id}`), 404, 'GET media after delete');
      }
      // Cached copies go too (the S3 backend's CDN keeps local copies); a moment is allowed.
      const cachedLeft = () => items.flatMap((m) => cachedCopies(world, m.media_id));
      for (let i = 0; i < 10 && cachedLeft().length > 0; i++) await sleep(100);
      assert.deepEqual(cachedLeft(), [], 'copies of the deleted media remain in the CDN cache');
      for (const url of urls) {
        const res = await fetchUrl(url);
        assert.ok([403, 404].includes(res.status), `${url} still answers ${res.status} after the delete`);
      }
      const feedIds = (await world.api.get('/api/v1/feed?limit=100')).json().posts.map((p) => p.id);
      assert.ok(!feedIds.includes(created.id), 'the deleted post is still in the feed');
    });

    if (backend === 's3') {
      test('every request to S3 was SigV4-signed with the configured key and the body\'s hash, and S3 accepted them', async () => {
        const requests = world.s3.requests;
        assert.ok(requests.some((r) => r.method === 'PUT'), 'the node never PUT an object to S3');
        assert.ok(requests.some((r) => r.method === 'DELETE'), 'the node never DELETEd an object in S3');
        for (const r of requests) {
          assert.match(r.authorization ?? '', /^AWS4-HMAC-SHA256 Credential=S3RVER\/\d{8}\/[a-z0-9-]+\/s3\/aws4_request, *SignedHeaders=[^,]+, *Signature=[0-9a-f]{64}$/,
                       `${r.method} ${r.url} is not SigV4-signed: ${r.authorization}`);
          assert.ok(r.contentSha256, `${r.method} ${r.url} has no x-amz-content-sha256`);
          assert.notEqual(r.status, 403, `s3rver refused ${r.method} ${r.url} (bad signature)`);
          assert.notEqual(r.status, 400, `S3 refused ${r.method} ${r.url} (x-amz-content-sha256 is not the body's hash?)`);
        }
        assert.deepEqual(filesUnder(path.join(world.stack.dataDir, 'media')), [], 'the s3 backend wrote media to the local disk');
      });
    }
  });
}

publishingSuite('fs');
publishingSuite('s3');

// ---------------------------------------------------------------------------------------------
// Limits and lifetimes: a node whose URLs live two seconds, whose sweep runs every second and
// which takes videos of at most one second

describe('limits and expiry', () => {
  let world;

  before(async () => {
    world = await startWorld('fs', ['--set', 'cdn.url_ttl=2', '--set', 'media.upload_url_ttl=2',
                                    '--set', 'media.sweep_interval=1', '--set', 'media.max_video_seconds=1']);
  });

  after(async () => {
    await stopWorld(world);
  });

  test('a video longer than media.max_video_seconds is 400 media_too_large; nothing left behind', async () => {
    await assertRefused(world, '2 s WebM with a 1 s limit', (h) => uploadMultipart(world, world.alice, fixtures.webm, {}, h),
                        400, 'media_too_large');
    await assertRefused(world, '2 s MP4 with a 1 s limit', (h) => uploadBase64(world, world.alice, fixtures.mp4, {}, h),
                        400, 'media_too_large');
  });

  test('expired upload URLs are 403 upload_url_expired, expired media URLs 403; the sweep removes unconfirmed uploads', async () => {
    const media = await uploaded(world, world.alice, fixtures.tiny);
    const mediaUrl = media.variants.medium;
    assertStatus(await fetchUrl(mediaUrl), 200, 'a fresh media URL');
    const slots = [await uploadUrlFor(world, world.alice, fixtures.tiny), await uploadUrlFor(world, world.alice, fixtures.tiny)];
    // Uploaded but never confirmed: the sweep takes it, objects first.
    const unconfirmed = await uploadUrlFor(world, world.alice, fixtures.exif);
    assertStatus(await putBytes(unconfirmed.upload_url, fixtures.exif.bytes, 'image/jpeg'), 200, 'PUT');
    assert.equal(objectsOf(world, unconfirmed.media_id).length, 3);

    const latest = Math.max(Number(new URL(mediaUrl).searchParams.get('expires')),
                            ...slots.map((s) => Date.parse(s.expires_at) / 1000));
    await sleep(Math.max(0, latest * 1000 - Date.now()) + 1500);

    const expired = await fetchUrl(mediaUrl);
    assertStatus(expired, 403, 'an expired media URL');
    assertPlainError(await putBytes(slots[0].upload_url, fixtures.tiny.bytes, 'image/jpeg'), 403, 'expired upload URL');
    assertProblem(await putBytes(slots[1].upload_url, fixtures.tiny.bytes, 'image/jpeg', PROBLEM), 403,
                  'upload_url_expired', 'expired upload URL');

    // The sweep (every second here) removes the expired pending rows and the unconfirmed upload.
    const ids = [...slots.map((s) => s.media_id), unconfirmed.media_id].map((id) => `'${id}'`).join(',');
    const deadline = Date.now() + 15000;
    let left;
    for (;;) {
      left = psqlNumber(world.stack.pg.url, `SELECT count(*) FROM media.media WHERE id IN (${ids})`);
      if (left === 0 && objectsOf(world, unconfirmed.media_id).length === 0) break;
      if (Date.now() > deadline) break;
      await sleep(250);
    }
    assert.equal(left, 0, 'expired unconfirmed uploads still in media.media after 15 s: ' + JSON.stringify(
      psql(world.stack.pg.url, `SELECT id, state, expires_at, now() FROM media.media WHERE id IN (${ids})`)));
    assert.deepEqual(objectsOf(world, unconfirmed.media_id), [], 'objects of the swept upload remain');
    // The confirmed media stays, with fresh URLs on request.
    const again = await world.api.get(`/api/v1/media/${media.media_id}`);
    assertStatus(again, 200, 'confirmed media after the sweep');
    assertStatus(await fetchUrl(again.json().variants.medium), 200, 'a freshly signed URL');
  });
});
