// post.test.mjs - the post service over gRPC (generia.post.v1.PostService), against a real node
// with real PostgreSQL, Redis and the media service on the node's unix socket.
//
// Posts with real media go the whole way: an image uploaded through MediaService.Upload, a
// CreatePost that attaches it, DeletePost that removes it.  Paging, edits and batch reads also
// use posts written straight into the post schema with psql (fixtures with chosen timestamps,
// including several posts in one microsecond), so the keyset order is tested where it is hard
// to hit by timing.  Every refusal is checked to leave the tables as they were.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

import {
  UUID_RE, assertStatus, makeTempDir, newAccount, postgresBin, removeDir, request, startNode, startStack,
} from './harness.mjs';

const PROTO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'node', 'proto');
const packageDefinition = protoLoader.loadSync(
  [path.join(PROTO_DIR, 'post.proto'), path.join(PROTO_DIR, 'media.proto')], {
    includeDirs: [PROTO_DIR],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
const generia = grpc.loadPackageDefinition(packageDefinition).generia;

const UNKNOWN_ID = '6f1c2a4e-9d7b-4c3a-8e2f-0a1b2c3d4e5f';

let stack;
let posts;
let media;
let alice;
let bob;

// ---------------------------------------------------------------------------------------------
// helpers

function call (client, method, request, { token, deadlineMs = 15000 } = {}) {
  const metadata = new grpc.Metadata();
  if (token) metadata.set('authorization', `Bearer ${token}`);
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: Date.now() + deadlineMs }, (err, response) => {
      if (err) reject(err);
      else resolve(response);
    });
  });
}

async function assertRpcError (promise, code, reason, what) {
  let err = null;
  try {
    const response = await promise;
    assert.fail(`${what}: expected ${grpc.status[code]}, got ${JSON.stringify(response).slice(0, 300)}`);
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    err = e;
  }
  assert.equal(err.code, code, `${what}: expected ${grpc.status[code]}, got ${grpc.status[err.code]} (${err.details})`);
  assert.ok(err.details.length > 0, `${what}: empty status message`);
  if (reason !== undefined) {
    assert.deepEqual((err.metadata?.get('x-error-code') ?? []).map(String), [reason], `${what}: x-error-code (${err.details})`);
  }
  return err;
}

// psql against the node's database: one statement, unaligned tuples-only output.
function sql (query) {
  const result = spawnSync(postgresBin('psql'), ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1',
    '-d', stack.pg.url, '-c', query], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`psql: ${query}\n${result.stderr}`);
  return result.stdout.trim();
}

function rowCounts () {
  return sql(`SELECT (SELECT count(*) FROM post.posts) || ' ' || (SELECT count(*) FROM post.post_media)
              || ' ' || (SELECT count(*) FROM post.hashtags) || ' ' || (SELECT count(*) FROM post.mentions)`);
}

async function register (prefix) {
  const account = newAccount(prefix);
  const res = await stack.api.post('/api/v1/auth/register', { json: account });
  assertStatus(res, 201, 'register');
  const body = res.json();
  return { ...account, id: body.user.id, token: body.token };
}

// A small real JPEG made by ImageMagick.
function jpeg (width = 64, height = 48) {
  const result = spawnSync('convert', ['-size', `${width}x${height}`, 'gradient:red-blue', 'jpg:-'], { maxBuffer: 1 << 24 });
  if (result.status !== 0) throw new Error(`convert failed: ${result.stderr}`);
  return result.stdout;
}

// A confirmed media item of `user`, uploaded directly through MediaService.Upload.
function upload (user, bytes = jpeg()) {
  return new Promise((resolve, reject) => {
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${user.token}`);
    const stream = media.Upload(metadata, { deadline: Date.now() + 30000 }, (err, response) => {
      if (err) reject(err);
      else resolve(response);
    });
    stream.write({ start: { filename: 'photo.jpg', content_type: 'image/jpeg' } });
    stream.write({ data: bytes });
    stream.end();
  });
}

// Fixture posts straight into the schema: [{user, caption, at (SQL timestamptz), media: n}].
// Returns their ids in the given order.
function insertPosts (rows) {
  const ids = [];
  for (const row of rows) {
    const id = sql(`INSERT INTO post.posts (user_id, caption, created_at, updated_at)
                    VALUES ('${row.user.id}', '${row.caption ?? ''}', ${row.at}, ${row.at}) RETURNING id`);
    const n = row.media ?? 1;
    if (n > 0) {
      sql(`INSERT INTO post.post_media (post_id, position, media_id)
           SELECT '${id}', g, gen_random_uuid() FROM generate_series(0, ${n - 1}) g`);
    }
    ids.push(id);
  }
  return ids;
}

function feedOrder (where = 'true') {
  return sql(`SELECT id FROM post.posts WHERE ${where} ORDER BY created_at DESC, id DESC`).split('\n').filter(Boolean);
}

// Pages a list to its end; `request(page)` makes one call.  Returns the ids in order and the
// pages seen.
async function pageAll (request, limit) {
  const ids = [];
  let cursor = '';
  for (let pages = 1; ; pages++) {
    const page = await request({ limit, cursor });
    assert.ok(page.posts.length <= limit, `page of ${page.posts.length} > limit ${limit}`);
    ids.push(...page.posts.map((p) => p.id));
    if (!page.has_more) {
      assert.equal(page.next_cursor, '', 'last page has no next_cursor');
      return { ids, pages };
    }
    assert.equal(page.posts.length, limit, 'only the last page is short');
    assert.ok(page.next_cursor.length > 0, 'has_more without next_cursor');
    cursor = page.next_cursor;
  }
}

// ---------------------------------------------------------------------------------------------

before(async () => {
  stack = await startStack();
  const target = `unix:${path.join(stack.dataDir, 'run', 'node.sock')}`;
  posts = new generia.post.v1.PostService(target, grpc.credentials.createInsecure());
  media = new generia.media.v1.MediaService(target, grpc.credentials.createInsecure());
  alice = await register('alice');
  bob = await register('bob');
});

after(async () => {
  posts?.close();
  media?.close();
  if (stack) await stack.stop();
});

describe('an empty database', () => {
  test('HealthCheck is SERVING', async () => {
    const health = await call(posts, 'HealthCheck', {});
    assert.equal(health.status, 'SERVING', JSON.stringify(health));
    assert.equal(health.service, 'post');
  });

  test('GetGlobalFeed and GetUserPosts answer empty pages', async () => {
    const feed = await call(posts, 'GetGlobalFeed', { page: { limit: 10 } });
    assert.deepEqual(feed.posts, []);
    assert.equal(feed.has_more, false);
    assert.equal(feed.next_cursor, '');
    const none = await call(posts, 'GetGlobalFeed', {});
    assert.deepEqual(none.posts, []);
    const mine = await call(posts, 'GetUserPosts', { user_id: alice.id, page: { offset: 0 } });
    assert.deepEqual(mine.posts, []);
    assert.equal(mine.has_more, false);
    assert.equal(mine.total, '0');
  });

  test('GetPost of an unknown or malformed id is NOT_FOUND', async () => {
    await assertRpcError(call(posts, 'GetPost', { post_id: UNKNOWN_ID }), grpc.status.NOT_FOUND, 'post_not_found', 'unknown id');
    await assertRpcError(call(posts, 'GetPost', { post_id: 'nope' }), grpc.status.NOT_FOUND, 'post_not_found', 'malformed id');
    await assertRpcError(call(posts, 'GetPost', {}), grpc.status.NOT_FOUND, 'post_not_found', 'no id');
  });
});

describe('CreatePost refusals touch nothing', () => {
  const id = () => crypto.randomUUID();

  test('without a bearer token: UNAUTHENTICATED', async () => {
    await assertRpcError(call(posts, 'CreatePost', { caption: 'x', media_ids: [id()] }),
      grpc.status.UNAUTHENTICATED, 'unauthenticated', 'anonymous');
  });

  test('bad input: INVALID_ARGUMENT with a reason', async () => {
    const before = rowCounts();
    const token = alice.token;
    const cases = [
      [{ caption: 'no media', media_ids: [] }, 'media_required'],
      [{ caption: 'eleven', media_ids: Array.from({ length: 11 }, id) }, 'too_many_media'],
      [{ caption: 'x'.repeat(2201), media_ids: [id()] }, 'caption_too_long'],
      [{ caption: '😀'.repeat(2201), media_ids: [id()] }, 'caption_too_long'],
      [{ caption: 'bad id', media_ids: ['not-a-uuid'] }, 'invalid_media_id'],
      [{ caption: 'bad id', media_ids: [id(), `${id()}x`] }, 'invalid_media_id'],
      [{ caption: 'bad id', media_ids: [''] }, 'invalid_media_id'],
      [{ caption: 'twice', media_ids: [UNKNOWN_ID, UNKNOWN_ID.toUpperCase()] }, 'duplicate_media'],
    ];
    for (const [request, reason] of cases) {
      await assertRpcError(call(posts, 'CreatePost', request, { token }), grpc.status.INVALID_ARGUMENT, reason,
        `${reason} (${request.caption.slice(0, 10)})`);
    }
    assert.equal(rowCounts(), before, 'rows after refused CreatePost calls');
  });

  test('well-formed ids of media that do not exist: refused by the media service (API v1: 400)', async () => {
    const before = rowCounts();
    await assertRpcError(call(posts, 'CreatePost', { caption: 'ghost #media', media_ids: [id(), id()] }, { token: alice.token }),
      grpc.status.INVALID_ARGUMENT, 'media_not_yours', 'unknown media');
    const res = await stack.api.post('/api/v1/posts', { json: { caption: 'ghost', media_id: id() }, headers: { Authorization: `Bearer ${alice.token}` } });
    assertStatus(res, 400, 'POST /api/v1/posts with unknown media');
    assert.equal(rowCounts(), before, 'rows after a refused attach');
  });

  test('a caption of exactly 2,200 characters is accepted as far as the media check', async () => {
    const before = rowCounts();
    const err = await assertRpcError(call(posts, 'CreatePost', { caption: 'ж'.repeat(2200), media_ids: [id()] }, { token: alice.token }),
      grpc.status.INVALID_ARGUMENT, 'media_not_yours', '2,200 characters');
    assert.ok(!/caption/.test(err.details), err.details);
    assert.equal(rowCounts(), before);
  });
});

describe('posts with real media', () => {
  let post;
  let uploads;

  test('CreatePost attaches the author\'s uploads in order; GetPost returns everything', async () => {
    uploads = [await upload(alice), await upload(alice), await upload(alice)];
    for (const m of uploads) assert.match(m.id, UUID_RE);
    const caption = 'Morning at the #Beach with @Bob_B and @carol. #beach #Sunrise email@example.com a#b';
    const order = [uploads[1].id, uploads[0].id];
    const created = await call(posts, 'CreatePost', { caption, media_ids: order.map((m) => m.toUpperCase()) }, { token: alice.token });
    assert.match(created.post_id, UUID_RE);
    const nowUs = Date.now() * 1000;
    assert.ok(Math.abs(Number(created.created_at_us) - nowUs) < 60e6, `created_at_us ${created.created_at_us}`);

    post = await call(posts, 'GetPost', { post_id: created.post_id });
    assert.equal(post.id, created.post_id);
    assert.equal(post.user_id, alice.id);
    assert.equal(post.caption, caption);
    assert.deepEqual(post.media_ids, order);
    assert.deepEqual(post.hashtags, ['beach', 'sunrise']);
    assert.deepEqual(post.mentions, ['bob_b', 'carol']);
    assert.equal(post.created_at_us, created.created_at_us);
    assert.equal(post.updated_at_us, created.created_at_us);

    const attached = await call(media, 'GetMedia', { media_id: order[0] }, { token: alice.token });
    assert.equal(attached.post_id, post.id, 'the media service knows the post');
  });

  test('media already in a post, someone else\'s media, unconfirmed uploads: refused, nothing stored', async () => {
    const before = rowCounts();
    await assertRpcError(call(posts, 'CreatePost', { caption: 'again', media_ids: [post.media_ids[0]] }, { token: alice.token }),
      grpc.status.INVALID_ARGUMENT, 'invalid_media', 'media of another post');
    await assertRpcError(call(posts, 'CreatePost', { caption: 'stolen', media_ids: [uploads[2].id] }, { token: bob.token }),
      grpc.status.INVALID_ARGUMENT, 'media_not_yours', 'someone else\'s media');
    const pending = await call(media, 'CreateUploadURL', { filename: 'later.jpg', content_type: 'image/jpeg', size: 1000 }, { token: alice.token });
    await assertRpcError(call(posts, 'CreatePost', { caption: 'too soon', media_ids: [uploads[2].id, pending.media_id] }, { token: alice.token }),
      grpc.status.INVALID_ARGUMENT, 'invalid_media', 'unconfirmed upload');
    assert.equal(rowCounts(), before);
    const free = await call(media, 'GetMedia', { media_id: uploads[2].id }, { token: alice.token });
    assert.equal(free.post_id, '', 'a refused post attached nothing');
  });

  test('DeletePost: others get PERMISSION_DENIED; the author deletes the post and its media', async () => {
    await assertRpcError(call(posts, 'DeletePost', { post_id: post.id }, { token: bob.token }),
      grpc.status.PERMISSION_DENIED, 'not_your_post', 'someone else\'s post');
    await assertRpcError(call(posts, 'DeletePost', { post_id: post.id }),
      grpc.status.UNAUTHENTICATED, undefined, 'anonymous');
    assert.equal((await call(posts, 'GetPost', { post_id: post.id })).id, post.id, 'still there');

    const done = await call(posts, 'DeletePost', { post_id: post.id }, { token: alice.token });
    assert.equal(done.deleted, true);
    await assertRpcError(call(posts, 'GetPost', { post_id: post.id }), grpc.status.NOT_FOUND, 'post_not_found', 'deleted post');
    assert.equal(sql(`SELECT count(*) FROM post.post_media WHERE post_id = '${post.id}'`), '0');
    assert.equal(sql(`SELECT count(*) FROM post.hashtags WHERE post_id = '${post.id}'`), '0');
    for (const m of post.media_ids) {
      await assertRpcError(call(media, 'GetMedia', { media_id: m }, { token: alice.token }),
        grpc.status.NOT_FOUND, undefined, `media ${m} of the deleted post`);
    }
    await assertRpcError(call(posts, 'DeletePost', { post_id: post.id }, { token: alice.token }),
      grpc.status.NOT_FOUND, 'post_not_found', 'deleting twice');
  });
});

describe('many posts at once', () => {
  // Each CreatePost holds an rpc worker while it waits for AttachMedia, which needs a worker
  // of the same pool when media runs in the same process.  Twice rpc.workers (8) of them at
  // once must all succeed, not wait for each other until their deadlines pass.
  test('16 concurrent CreatePost calls all succeed', async () => {
    const ids = [];
    for (let i = 0; i < 16; i++) ids.push((await upload(alice, jpeg(16, 16))).id);
    const started = Date.now();
    const results = await Promise.allSettled(ids.map((id, i) =>
      call(posts, 'CreatePost', { caption: `burst ${i} #burst`, media_ids: [id] }, { token: alice.token })));
    const failures = results.filter((r) => r.status === 'rejected').map((r) => `${grpc.status[r.reason.code]} ${r.reason.details}`);
    assert.deepEqual(failures, [], `failed after ${Date.now() - started} ms`);
    const created = results.map((r) => r.value.post_id);
    const { posts: found } = await call(posts, 'GetPostsByIds', { post_ids: created });
    assert.deepEqual(found.map((p) => p.media_ids[0]), ids);
    sql(`DELETE FROM post.posts WHERE caption LIKE 'burst %'`);
  });
});

describe('reading, editing and deleting fixture posts', () => {
  test('GetPostsByIds answers in the order asked, leaving unknown ids out, at most 100 ids', async () => {
    const ids = insertPosts([
      { user: alice, caption: 'one', at: "now() - interval '3 days'" },
      { user: bob, caption: 'two', at: "now() - interval '2 days'", media: 3 },
      { user: alice, caption: 'three', at: "now() - interval '1 day'" },
    ]);
    const asked = [ids[2], UNKNOWN_ID, ids[0], 'garbage', ids[1], ids[2]];
    const { posts: found } = await call(posts, 'GetPostsByIds', { post_ids: asked });
    assert.deepEqual(found.map((p) => p.id), [ids[2], ids[0], ids[1], ids[2]]);
    assert.deepEqual(found.map((p) => p.caption), ['three', 'one', 'two', 'three']);
    assert.equal(found[2].media_ids.length, 3);

    const empty = await call(posts, 'GetPostsByIds', { post_ids: [] });
    assert.deepEqual(empty.posts, []);
    await call(posts, 'GetPostsByIds', { post_ids: Array(100).fill(ids[0]) });
    await assertRpcError(call(posts, 'GetPostsByIds', { post_ids: Array(101).fill(ids[0]) }),
      grpc.status.INVALID_ARGUMENT, 'too_many_ids', '101 ids');
    sql(`DELETE FROM post.posts WHERE id IN ('${ids.join("','")}')`);
  });

  test('EditCaption: author only, same limits, hashtags and mentions re-derived', async () => {
    const [id] = insertPosts([{ user: alice, caption: 'old #one @someone', at: "now() - interval '1 hour'" }]);
    // The fixture has no hashtag rows yet: an edit to the same caption derives them.
    await call(posts, 'EditCaption', { post_id: id, caption: 'old #one @someone' }, { token: alice.token });
    const before = await call(posts, 'GetPost', { post_id: id });
    assert.deepEqual(before.hashtags, ['one']);

    await assertRpcError(call(posts, 'EditCaption', { post_id: id, caption: 'mine now' }, { token: bob.token }),
      grpc.status.PERMISSION_DENIED, 'not_your_post', 'someone else\'s post');
    await assertRpcError(call(posts, 'EditCaption', { post_id: id, caption: 'x' }),
      grpc.status.UNAUTHENTICATED, undefined, 'anonymous');
    await assertRpcError(call(posts, 'EditCaption', { post_id: UNKNOWN_ID, caption: 'x' }, { token: alice.token }),
      grpc.status.NOT_FOUND, 'post_not_found', 'unknown post');
    await assertRpcError(call(posts, 'EditCaption', { post_id: id, caption: 'y'.repeat(2201) }, { token: alice.token }),
      grpc.status.INVALID_ARGUMENT, 'caption_too_long', 'too long');
    assert.deepEqual(await call(posts, 'GetPost', { post_id: id }), before, 'refusals changed the post');

    const edited = await call(posts, 'EditCaption', { post_id: id, caption: '#Two #two #three with @Dave and @erin.' }, { token: alice.token });
    assert.equal(edited.caption, '#Two #two #three with @Dave and @erin.');
    assert.deepEqual(edited.hashtags, ['two', 'three']);
    assert.deepEqual(edited.mentions, ['dave', 'erin']);
    assert.deepEqual(edited.media_ids, before.media_ids);
    assert.equal(edited.created_at_us, before.created_at_us);
    assert.ok(BigInt(edited.updated_at_us) > BigInt(before.updated_at_us), 'updated_at moves');
    assert.deepEqual(await call(posts, 'GetPost', { post_id: id }), edited);
    assert.equal(sql(`SELECT string_agg(tag, ' ' ORDER BY position) FROM post.hashtags WHERE post_id = '${id}'`), 'two three');

    const cleared = await call(posts, 'EditCaption', { post_id: id, caption: '' }, { token: alice.token });
    assert.deepEqual([cleared.caption, cleared.hashtags, cleared.mentions], ['', [], []]);
    sql(`DELETE FROM post.posts WHERE id = '${id}'`);
  });

  test('DeletePost of a post whose media the media service does not know still deletes the post', async () => {
    const [id] = insertPosts([{ user: bob, caption: 'orphan #x', at: 'now()', media: 2 }]);
    await assertRpcError(call(posts, 'DeletePost', { post_id: id }, { token: alice.token }),
      grpc.status.PERMISSION_DENIED, 'not_your_post', 'not the author');
    const done = await call(posts, 'DeletePost', { post_id: id }, { token: bob.token });
    assert.equal(done.deleted, true);
    assert.equal(sql(`SELECT count(*) FROM post.posts WHERE id = '${id}'`), '0');
    assert.equal(sql(`SELECT count(*) FROM post.post_media WHERE post_id = '${id}'`), '0');
    await assertRpcError(call(posts, 'DeletePost', { post_id: 'garbage' }, { token: bob.token }),
      grpc.status.NOT_FOUND, 'post_not_found', 'malformed id');
  });
});

describe('paging', () => {
  let all;

  before(() => {
    sql('DELETE FROM post.posts');
    // 45 posts: alice's every third, three groups of five sharing one microsecond.
    const rows = [];
    for (let i = 0; i < 45; i++) {
      const at = i >= 10 && i < 25
        ? `timestamptz '2026-01-01 12:00:00.000001+00' + ${Math.floor(i / 5)} * interval '1 microsecond'`
        : `timestamptz '2026-01-01 12:00:00+00' - ${i} * interval '1 second'`;
      rows.push({ user: i % 3 === 0 ? alice : bob, caption: `p${i}`, at });
    }
    insertPosts(rows);
    all = feedOrder();
    assert.equal(all.length, 45);
  });

  test('GetGlobalFeed by cursor: every post once, newest first, ties broken by id', async () => {
    for (const limit of [1, 4, 7, 20, 45, 100]) {
      const { ids, pages } = await pageAll((page) => call(posts, 'GetGlobalFeed', { page }), limit);
      assert.deepEqual(ids, all, `limit ${limit}`);
      // has_more comes from reading limit + 1 rows: a last page that is exactly full says so.
      assert.equal(pages, Math.ceil(45 / limit), `pages at limit ${limit}`);
    }
  });

  test('GetGlobalFeed by offset, as API v1\'s web client pages; each page also offers a cursor', async () => {
    const seen = [];
    for (let offset = 0; ; offset += 10) {
      const page = await call(posts, 'GetGlobalFeed', { page: { limit: 10, offset } });
      seen.push(...page.posts.map((p) => p.id));
      if (!page.has_more) break;
      const next = await call(posts, 'GetGlobalFeed', { page: { limit: 10, cursor: page.next_cursor } });
      assert.deepEqual(next.posts.map((p) => p.id), all.slice(offset + 10, offset + 20), 'cursor continues where offset stopped');
    }
    assert.deepEqual(seen, all);
    const beyond = await call(posts, 'GetGlobalFeed', { page: { limit: 10, offset: 1000 } });
    assert.deepEqual(beyond.posts, []);
    assert.equal(beyond.has_more, false);
  });

  test('limit defaults to 20 and is capped at 100', async () => {
    const first = await call(posts, 'GetGlobalFeed', {});
    assert.equal(first.posts.length, 20);
    assert.equal(first.has_more, true);
    const big = await call(posts, 'GetGlobalFeed', { page: { limit: 100000 } });
    assert.equal(big.posts.length, 45);
    assert.equal(big.has_more, false);
  });

  test('GetUserPosts: only that user\'s posts, total, offset and cursor', async () => {
    const mine = feedOrder(`user_id = '${alice.id}'`);
    assert.equal(mine.length, 15);
    const { ids } = await pageAll((page) => call(posts, 'GetUserPosts', { user_id: alice.id, page }), 4);
    assert.deepEqual(ids, mine);
    const page = await call(posts, 'GetUserPosts', { user_id: alice.id, page: { limit: 5, offset: 5 } });
    assert.deepEqual(page.posts.map((p) => p.id), mine.slice(5, 10));
    assert.equal(page.total, '15');
    assert.ok(page.posts.every((p) => p.user_id === alice.id));
    const nobody = await call(posts, 'GetUserPosts', { user_id: UNKNOWN_ID });
    assert.deepEqual([nobody.posts, nobody.total, nobody.has_more], [[], '0', false]);
    await assertRpcError(call(posts, 'GetUserPosts', { user_id: 'garbage' }), grpc.status.INVALID_ARGUMENT, 'invalid_user_id', 'bad user id');
  });

  test('bad cursors and pages are INVALID_ARGUMENT', async () => {
    const good = (await call(posts, 'GetGlobalFeed', { page: { limit: 3 } })).next_cursor;
    const tampered = [
      'garbage', `${good}=`, `${good}A`, good.slice(0, -1), good.replace(/^./, (c) => (c === 'M' ? 'N' : 'M')),
      Buffer.from('1:1:not-a-uuid').toString('base64url'), Buffer.from(`2${Buffer.from(good, 'base64url').toString().slice(1)}`).toString('base64url'),
      'A'.repeat(5000),
    ];
    for (const cursor of tampered) {
      await assertRpcError(call(posts, 'GetGlobalFeed', { page: { limit: 3, cursor } }), grpc.status.INVALID_ARGUMENT, 'invalid_cursor', `cursor ${cursor.slice(0, 20)}`);
      await assertRpcError(call(posts, 'GetUserPosts', { user_id: alice.id, page: { cursor } }), grpc.status.INVALID_ARGUMENT, 'invalid_cursor', `user cursor ${cursor.slice(0, 20)}`);
    }
    await assertRpcError(call(posts, 'GetGlobalFeed', { page: { cursor: good, offset: 3 } }), grpc.status.INVALID_ARGUMENT, 'invalid_page', 'cursor and offset');
    await assertRpcError(call(posts, 'GetGlobalFeed', { page: { limit: -1 } }), grpc.status.INVALID_ARGUMENT, 'invalid_page', 'negative limit');
    await assertRpcError(call(posts, 'GetGlobalFeed', { page: { offset: -5 } }), grpc.status.INVALID_ARGUMENT, 'invalid_page', 'negative offset');
    // Past the deepest offset paged by counting rows: an empty last page, as API v1 expects.
    for (const offset of [100001, 2147483647]) {
      const deep = await call(posts, 'GetGlobalFeed', { page: { offset } });
      assert.deepEqual([deep.posts, deep.has_more, deep.next_cursor], [[], false, ''], `offset ${offset}`);
      const user = await call(posts, 'GetUserPosts', { user_id: alice.id, page: { offset } });
      assert.deepEqual([user.posts, user.has_more], [[], false], `user offset ${offset}`);
      assert.ok(Number(user.total) > 0, 'the total still counts the user\'s posts');
    }
    const res = await stack.api.get('/api/v1/feed?offset=100001');
    assertStatus(res, 200, 'GET /api/v1/feed?offset=100001');
    assert.deepEqual(res.json().posts, []);
  });

  test('paging while 250 posts are inserted concurrently: no duplicates, nothing that existed is missed', async () => {
    const existing = new Set(feedOrder());
    // Five writers, 50 single-row transactions each, stamped by the column default as
    // CreatePost's rows are.
    const statements = Array.from({ length: 50 }, () =>
      `INSERT INTO post.posts (user_id, caption) VALUES ('${bob.id}', 'concurrent');`).join('\n');
    const writers = Array.from({ length: 5 }, () => new Promise((resolve, reject) => {
      const child = spawn(postgresBin('psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', stack.pg.url], { stdio: ['pipe', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (c) => { stderr += c; });
      child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`psql writer: ${stderr}`))));
      child.stdin.end(statements);
    }));
    const { ids } = await pageAll((page) => call(posts, 'GetGlobalFeed', { page }), 3);
    await Promise.all(writers);

    assert.equal(new Set(ids).size, ids.length, 'a post was returned twice');
    for (const id of existing) assert.ok(ids.includes(id), `post ${id} existed when paging began but was not returned`);
    assert.equal(sql("SELECT count(*) FROM post.posts WHERE caption = 'concurrent'"), '250');
    const { ids: after } = await pageAll((page) => call(posts, 'GetGlobalFeed', { page }), 50);
    assert.deepEqual(after, feedOrder(), 'a quiet paging sees exactly the table');
  });
});

// Last, because it replaces the stack's node: the same data folder and databases, but only
// auth, post and the gateway, with the media service's address pointing at nothing.
describe('the media service unreachable', () => {
  let nowhere;

  before(async () => {
    await stack.node.stop();
    nowhere = await makeTempDir('gn-nowhere-');
    stack.node = await startNode({
      dataDir: stack.dataDir,
      databaseUrl: stack.pg.url,
      redisUrl: stack.redis.url,
      args: ['--services', 'auth,post,gateway'],
      env: { GENERIA_RPC_MEDIA_ADDRESS: `unix:${path.join(nowhere, 'media.sock')}` },
      isReady: async (baseUrl) => (await request(baseUrl, 'GET', '/health')).status === 200,
    });
    posts.close();
    posts = new generia.post.v1.PostService(`unix:${path.join(stack.dataDir, 'run', 'node.sock')}`,
      grpc.credentials.createInsecure());
  });

  after(() => removeDir(nowhere));

  // Whether the media were attached cannot be known while media is down: the post stays
  // pending, never shown, until healing can ask (the next test).
  test('CreatePost is UNAVAILABLE and publishes nothing', async () => {
    const published = sql("SELECT count(*) FROM post.posts WHERE state = 'published'");
    await assertRpcError(call(posts, 'CreatePost', { caption: 'later', media_ids: [crypto.randomUUID()] }, { token: alice.token }),
      grpc.status.UNAVAILABLE, 'media_unavailable', 'media down');
    assert.equal(sql("SELECT count(*) FROM post.posts WHERE state = 'published'"), published);
    assert.equal(sql("SELECT count(*) FROM post.posts WHERE state = 'pending' AND caption = 'later'"), '1');
    const feed = await call(posts, 'GetGlobalFeed', { page: { limit: 100 } });
    assert.ok(!feed.posts.some((p) => p.caption === 'later'), 'a pending post in the feed');
  });

  test('DeletePost still deletes the post and logs the media it could not delete', async () => {
    const [id] = insertPosts([{ user: alice, caption: 'going', at: 'now()', media: 2 }]);
    const mediaIds = sql(`SELECT string_agg(media_id::text, ' ' ORDER BY position) FROM post.post_media WHERE post_id = '${id}'`);
    const done = await call(posts, 'DeletePost', { post_id: id }, { token: alice.token });
    assert.equal(done.deleted, true);
    assert.equal(sql(`SELECT count(*) FROM post.posts WHERE id = '${id}'`), '0');
    // The node's output arrives through a pipe: give the warning a moment to be read.
    const findWarning = () => stack.node.output().split('\n').find((line) => line.includes(id) && line.includes('DeleteMedia'));
    for (let waited = 0; !findWarning() && waited < 5000; waited += 50) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const warning = findWarning();
    assert.ok(warning, `no warning about post ${id}'s media in the node's log`);
    assert.match(warning, /level=warn/);
    assert.ok(warning.includes(mediaIds), `the warning names the media ${mediaIds}: ${warning}`);
    // The outbox keeps the media to delete until the media service has done it.
    assert.equal(sql(`SELECT media_ids FROM post.media_deletions WHERE post_id = '${id}'`), mediaIds);
  });

  test('when the media service is back, the outbox retry deletes the media of deleted posts', async () => {
    const pending = sql('SELECT count(*) FROM post.media_deletions');
    assert.notEqual(pending, '0', 'the previous test left an outbox row');
    await stack.node.stop();
    stack.node = await startNode({
      dataDir: stack.dataDir,
      databaseUrl: stack.pg.url,
      redisUrl: stack.redis.url,
      args: ['--set', 'media.sweep_interval=1', '--set', 'post.pending_grace=2'],
    });
    const deadline = Date.now() + 20000;
    // The pending post of the failed CreatePost: nothing was attached, so healing removes it.
    while (sql("SELECT count(*) FROM post.posts WHERE state <> 'published'") !== '0') {
      assert.ok(Date.now() < deadline, `the pending post was not settled:\n${stack.node.output().slice(-2000)}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    while (sql('SELECT count(*) FROM post.media_deletions') !== '0') {
      assert.ok(Date.now() < deadline, `the outbox was not emptied:\n${stack.node.output().slice(-2000)}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    // The retry logs once its round is done, just after it cleared the row.
    while (!/deleted the media of \d+ deleted posts on retry/.test(stack.node.output())) {
      assert.ok(Date.now() < deadline, `the retry did not report:\n${stack.node.output().slice(-2000)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  });
});
