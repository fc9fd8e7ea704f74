// Paging the global feed while it grows (issue 3): the cursor must be stable under concurrent
// inserts.  60 posts exist; a reader pages the global feed from the top, 7 at a time, by
// cursor, while three users create 250 more posts in parallel, and the reader waits for new
// posts to land between its pages so inserts really happen mid-paging.  Every post that
// existed when paging began must be seen exactly once, none twice, in newest-first order.
// Offset paging (the original web client's "Load More") is checked on the settled feed: it
// covers every post once and answers [] past the end.
//
// Real node, PostgreSQL and Redis (harness.mjs); each post's media goes through the whole
// upload pipeline (a 16x16 JPEG, base64 JSON), since a media item belongs to one post.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { assertStatus, makeTempDir, newAccount, removeDir, startStack } from './harness.mjs';
import { makeTinyJpeg } from './media-fixtures.mjs';

const INITIAL_POSTS = 60;
const CONCURRENT_POSTS = 250;
const CREATORS = 3;
const PAGE = 7;
// Posts that must land between two pages of the reader.
const INSERTS_BETWEEN_PAGES = 15;
const UPLOAD_PARALLELISM = 4;

let stack;
let api;
let tiny;
let fixtureDir;

before(async () => {
  fixtureDir = await makeTempDir('gn-fixtures-');
  tiny = makeTinyJpeg(fixtureDir);
  stack = await startStack();
  api = stack.api;
});

after(async () => {
  try {
    if (stack) await stack.stop();
  } finally {
    if (fixtureDir) await removeDir(fixtureDir);
  }
});

const bearer = (user) => ({ Authorization: `Bearer ${user.token}` });

async function registerUser (prefix) {
  const account = newAccount(prefix);
  const res = await api.post('/api/v1/auth/register', { json: account });
  assertStatus(res, 201, `register ${account.username}`);
  const body = res.json();
  return { token: body.token, id: body.user.id };
}

async function uploadTiny (user) {
  const res = await api.post('/api/v1/media', {
    json: { media_data: tiny.bytes.toString('base64'), content_type: 'image/jpeg', filename: 'tiny.jpg' },
    headers: bearer(user),
  });
  assertStatus(res, 201, 'base64 upload');
  return res.json().media_id;
}

// n media ids for user, UPLOAD_PARALLELISM uploads at a time.
async function uploadMany (user, n) {
  const ids = [];
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next += 1;
      ids.push(await uploadTiny(user));
    }
  };
  await Promise.all(Array.from({ length: UPLOAD_PARALLELISM }, worker));
  return ids;
}

async function createPost (user, mediaId, caption) {
  const res = await api.post('/api/v1/posts', { json: { caption, media_id: mediaId }, headers: bearer(user) });
  assertStatus(res, 201, `create post "${caption}"`);
  return res.json().id;
}

async function feedPage (query) {
  const res = await api.get(`/api/v1/feed?${query}`);
  assertStatus(res, 200, `GET /api/v1/feed?${query}`);
  const page = res.json();
  assert.ok(Array.isArray(page.posts), `posts is not an array: ${res.text.slice(0, 200)}`);
  assert.equal(typeof page.has_more, 'boolean', `has_more: ${res.text.slice(0, 200)}`);
  return page;
}

// Newest first: created_at never increases along the pages (ties broken by the server).
function assertNewestFirst (posts, what) {
  for (let i = 1; i < posts.length; i++) {
    assert.ok(Date.parse(posts[i].created_at) <= Date.parse(posts[i - 1].created_at),
              `${what}: ${posts[i].id} (${posts[i].created_at}) comes after the older ${posts[i - 1].id} (${posts[i - 1].created_at})`);
  }
}

test('cursor paging from the top sees every earlier post exactly once while 250 posts are created', async (t) => {
  const started = Date.now();
  const creators = [];
  for (let i = 0; i < CREATORS; i++) creators.push(await registerUser(`creator${i}`));
  const reader = await registerUser('reader');

  // The media for every post, uploaded before the clock starts (one media per post).
  const perCreator = Math.ceil((INITIAL_POSTS + CONCURRENT_POSTS) / CREATORS);
  const media = await Promise.all(creators.map((c) => uploadMany(c, perCreator)));
  const uploadMs = Date.now() - started;

  // The posts that exist before paging begins.
  const existing = new Set();
  for (let i = 0; i < INITIAL_POSTS; i++) {
    const c = i % CREATORS;
    existing.add(await createPost(creators[c], media[c].pop(), `initial ${i} #paging`));
  }

  // Creators run concurrently with the reader; `created` counts finished posts.
  let created = 0;
  let creating = true;
  const createdIds = new Set();
  const quota = Array.from({ length: CREATORS }, (_, c) => Math.floor(CONCURRENT_POSTS / CREATORS) +
                                                          (c < CONCURRENT_POSTS % CREATORS ? 1 : 0));
  const creation = Promise.all(creators.map(async (creator, c) => {
    for (let i = 0; i < quota[c]; i++) {
      createdIds.add(await createPost(creator, media[c].pop(), `concurrent ${c}/${i}`));
      created += 1;
    }
  })).finally(() => { creating = false; });

  const seen = [];
  const seenPosts = [];
  let cursor = null;
  let pages = 0;
  let insertedWhilePaging = 0;
  const startCount = created;
  for (;;) {
    const query = cursor === null ? `limit=${PAGE}` : `limit=${PAGE}&cursor=${encodeURIComponent(cursor)}`;
    const page = await feedPage(query);
    pages += 1;
    assert.ok(page.posts.length <= PAGE, `page ${pages} has ${page.posts.length} posts`);
    seen.push(...page.posts.map((p) => p.id));
    seenPosts.push(...page.posts);
    if (page.next_cursor === null) {
      assert.equal(page.has_more, false, 'has_more must be false when next_cursor is null');
      break;
    }
    assert.equal(typeof page.next_cursor, 'string');
    assert.equal(page.has_more, true, `page ${pages} has a next_cursor but has_more false`);
    assert.ok(page.posts.length > 0, 'an empty page with a next_cursor');
    cursor = page.next_cursor;
    assert.ok(pages < 200, 'paging does not end');
    // Let inserts land before the next page (unless the creators are done).
    const target = created + INSERTS_BETWEEN_PAGES;
    while (creating && created < target) await sleep(2);
    insertedWhilePaging = created - startCount;
  }
  await creation;

  const counts = new Map();
  for (const id of seen) counts.set(id, (counts.get(id) ?? 0) + 1);
  const duplicates = [...counts].filter(([, n]) => n > 1);
  assert.deepEqual(duplicates, [], `posts seen more than once: ${JSON.stringify(duplicates)}`);
  const missing = [...existing].filter((id) => !counts.has(id));
  assert.deepEqual(missing, [], `${missing.length} posts that existed when paging began were never seen`);
  const strangers = seen.filter((id) => !existing.has(id) && !createdIds.has(id));
  assert.deepEqual(strangers, [], 'the feed returned posts nobody created');
  assertNewestFirst(seenPosts, 'cursor paging');
  assert.ok(insertedWhilePaging >= INSERTS_BETWEEN_PAGES * 3,
            `only ${insertedWhilePaging} posts were created while paging: the test did not overlap`);
  assert.ok(pages >= Math.ceil(INITIAL_POSTS / PAGE), `only ${pages} pages`);

  // Settled: offset paging covers all 310 posts once, then [] past the end.
  const total = INITIAL_POSTS + CONCURRENT_POSTS;
  const byOffset = [];
  for (let offset = 0; ; offset += 50) {
    const page = await feedPage(`limit=50&offset=${offset}`);
    byOffset.push(...page.posts);
    if (page.posts.length < 50) {
      assert.equal(page.has_more, false, `has_more at offset ${offset}`);
      break;
    }
  }
  assert.equal(byOffset.length, total, 'offset paging of the settled feed');
  assert.equal(new Set(byOffset.map((p) => p.id)).size, total, 'offset paging repeated a post');
  assertNewestFirst(byOffset, 'offset paging');
  const past = await feedPage(`limit=${PAGE}&offset=${total + 10}`);
  assert.deepEqual(past.posts, [], 'offset past the end');
  assert.equal(past.has_more, false);
  assert.equal(past.next_cursor, null);

  // The settled feed by cursor gives the same order as by offset.
  const byCursor = [];
  cursor = null;
  do {
    const page = await feedPage(cursor === null ? 'limit=40' : `limit=40&cursor=${encodeURIComponent(cursor)}`);
    byCursor.push(...page.posts.map((p) => p.id));
    cursor = page.next_cursor;
  } while (cursor !== null);
  assert.deepEqual(byCursor, byOffset.map((p) => p.id), 'cursor and offset paging disagree on the settled feed');

  // One user's posts by cursor: all of theirs, once.
  const mine = [];
  let userTotal = null;
  cursor = null;
  do {
    const q = cursor === null ? 'limit=9' : `limit=9&cursor=${encodeURIComponent(cursor)}`;
    const res = await api.get(`/api/v1/users/${creators[0].id}/posts?${q}`, { headers: bearer(reader) });
    assertStatus(res, 200, 'user posts');
    const page = res.json();
    userTotal = page.total;
    mine.push(...page.posts.map((p) => p.id));
    for (const p of page.posts) assert.equal(p.user_id, creators[0].id);
    cursor = page.next_cursor;
  } while (cursor !== null);
  const expectedMine = INITIAL_POSTS / CREATORS + quota[0];
  assert.equal(userTotal, expectedMine, 'total of the user\'s posts');
  assert.equal(mine.length, expectedMine);
  assert.equal(new Set(mine).size, expectedMine);

  t.diagnostic(`${total} uploads in ${uploadMs} ms; paging: ${pages} pages, ` +
              `${insertedWhilePaging} posts created meanwhile; whole test ${Date.now() - started} ms`);
});
