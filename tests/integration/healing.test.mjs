// healing.test.mjs - writes that span services or outlive their caller leave nothing half-done.
//
// CreatePost writes its post as pending, attaches the media in the media service, then
// publishes (post.c: Creating a post).  Fail points (node/lib/failpoint.h, set through
// GENERIA_FAILPOINTS when the node starts) break it between the steps: an error where the
// publishing commit would run, and the process exiting at once before and after the attach.
// Afterwards no pending post is ever visible, the media can be used again (or belong to the
// post that healing published), and the healing job settles everything within a bound.
//
// Deadlines: a Register whose caller gave up must not commit, whether the time ran out before
// the commit (a fail point sleeps there) or inside a statement that PostgreSQL then cancels
// (a test transaction holds the lock the INSERT waits for).
//
// Real PostgreSQL, Redis and node; the node is restarted with other fail points per case.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

import { assertStatus, newAccount, postgresBin, psql, startNode, startStack, unique } from './harness.mjs';

const PROTO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'node', 'proto');
const generia = grpc.loadPackageDefinition(protoLoader.loadSync(
  ['post.proto', 'media.proto', 'auth.proto'].map((f) => path.join(PROTO_DIR, f)), {
    includeDirs: [PROTO_DIR], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
  })).generia;

// Healing runs every second and settles pending posts older than two seconds.
const HEALING = ['--set', 'media.sweep_interval=1', '--set', 'post.pending_grace=2'];
// Generous against a busy machine; healing itself takes ~3 s here.
const SETTLE_MS = 20000;

let stack;
let clients;
let alice;

function connect () {
  clients?.close();
  const target = `unix:${path.join(stack.dataDir, 'run', 'node.sock')}`;
  const creds = grpc.credentials.createInsecure();
  const posts = new generia.post.v1.PostService(target, creds);
  const media = new generia.media.v1.MediaService(target, creds);
  const auth = new generia.auth.v1.AuthService(target, creds);
  clients = { posts, media, auth, close () { posts.close(); media.close(); auth.close(); } };
}

// Restarts the node with these fail points (none: '') and healing settings.
async function restart (failpoints, args = HEALING) {
  await stack.restart({ env: { GENERIA_FAILPOINTS: failpoints }, args });
  connect();
}

// After a "crash" fail point: the node must have exited with the fail point's status; a new
// one starts on the same data folder and databases.
async function startAfterCrash (args = HEALING) {
  const child = stack.node.process;
  if (child.exitCode === null && child.signalCode === null) {
    await new Promise((resolve) => child.once('exit', resolve));
  }
  assert.equal(child.exitCode, 70, `the fail point's exit status\n${stack.node.output().slice(-1500)}`);
  stack.node = await startNode({ dataDir: stack.dataDir, databaseUrl: stack.pg.url, redisUrl: stack.redis.url, args });
  connect();
}

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

async function rpcError (promise) {
  try {
    const response = await promise;
    assert.fail(`expected an error, got ${JSON.stringify(response).slice(0, 300)}`);
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    return err;
  }
}

// One statement against the node's database, as psql's unaligned text ("a|b" per row).
function sql (query) {
  return psql(stack.pg.url, query).map((row) => row.join('|')).join('\n');
}

function jpeg () {
  const result = spawnSync('convert', ['-size', '32x24', 'gradient:red-blue', 'jpg:-'], { maxBuffer: 1 << 24 });
  if (result.status !== 0) throw new Error(`convert failed: ${result.stderr}`);
  return result.stdout;
}

function upload (user) {
  return new Promise((resolve, reject) => {
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${user.token}`);
    const stream = clients.media.Upload(metadata, { deadline: Date.now() + 30000 }, (err, response) => {
      if (err) reject(err);
      else resolve(response.id);
    });
    stream.write({ start: { filename: 'photo.jpg', content_type: 'image/jpeg' } });
    stream.write({ data: jpeg() });
    stream.end();
  });
}

async function attachedTo (mediaId) {
  return (await call(clients.media, 'GetMedia', { media_id: mediaId }, { token: alice.token })).post_id;
}

// Every way a post is read: none may show a pending post.
async function assertInvisible (postId, caption) {
  const { posts } = clients;
  const err = await rpcError(call(posts, 'GetPost', { post_id: postId }));
  assert.equal(err.code, grpc.status.NOT_FOUND, `GetPost of pending ${postId}: ${err.details}`);
  assert.deepEqual((await call(posts, 'GetPostsByIds', { post_ids: [postId] })).posts, []);
  const feed = await call(posts, 'GetGlobalFeed', { page: { limit: 100 } });
  assert.ok(!feed.posts.some((p) => p.id === postId || p.caption === caption), 'pending post in the feed');
  const mine = await call(posts, 'GetUserPosts', { user_id: alice.id, page: { limit: 100 } });
  assert.ok(!mine.posts.some((p) => p.id === postId), 'pending post in the user\'s posts');
  assert.equal(Number(mine.total), mine.posts.length, 'the total counts a pending post');
  const edit = await rpcError(call(posts, 'EditCaption', { post_id: postId, caption: 'x' }, { token: alice.token }));
  assert.equal(edit.code, grpc.status.NOT_FOUND, 'EditCaption of a pending post');
  const del = await rpcError(call(posts, 'DeletePost', { post_id: postId }, { token: alice.token }));
  assert.equal(del.code, grpc.status.NOT_FOUND, 'DeletePost of a pending post');
}

async function waitFor (what, predicate) {
  const deadline = Date.now() + SETTLE_MS;
  for (;;) {
    if (await predicate()) return Date.now();
    assert.ok(Date.now() < deadline, `${what} within ${SETTLE_MS} ms\n${stack.node.output().slice(-2500)}`);
    await sleep(200);
  }
}

const pendingCount = () => sql("SELECT count(*) FROM post.posts WHERE state <> 'published'");

before(async () => {
  stack = await startStack({ args: HEALING });
  connect();
  const account = newAccount('alice');
  const res = await stack.api.post('/api/v1/auth/register', { json: account });
  assertStatus(res, 201, 'register');
  alice = { ...account, id: res.json().user.id, token: res.json().token };
});

after(async () => {
  clients?.close();
  if (stack) await stack.stop();
});

describe('CreatePost across the post and media services', () => {
  test('the publishing commit fails after the attach: undone at once, the media are free again', async () => {
    await restart('post.create.after_attach=1*error');
    const media = await upload(alice);
    const err = await rpcError(call(clients.posts, 'CreatePost', { caption: 'doomed', media_ids: [media] }, { token: alice.token }));
    assert.equal(err.code, grpc.status.INTERNAL, err.details);
    assert.equal(sql("SELECT count(*) FROM post.posts WHERE caption = 'doomed'"), '0', 'the pending post is gone');
    assert.equal(await attachedTo(media), '', 'the media were released');

    const again = await call(clients.posts, 'CreatePost', { caption: 'second try', media_ids: [media] }, { token: alice.token });
    assert.equal((await call(clients.posts, 'GetPost', { post_id: again.post_id })).media_ids[0], media);
    assert.equal(await attachedTo(media), again.post_id);
  });

  test('between the attach and the publishing the post is invisible everywhere', async () => {
    // A long grace: healing would publish the post during the pause (the next test).
    await restart('post.create.after_attach=1*sleep(2500)', ['--set', 'post.pending_grace=3600']);
    const media = await upload(alice);
    const creating = call(clients.posts, 'CreatePost', { caption: 'slow one', media_ids: [media] }, { token: alice.token });
    let postId = '';
    await waitFor('the pending post is attached', async () => {
      postId = sql("SELECT id FROM post.posts WHERE caption = 'slow one' AND state = 'pending'");
      return postId !== '' && await attachedTo(media) === postId;
    });
    await assertInvisible(postId, 'slow one');
    const res = await fetch(`${stack.node.baseUrl}/api/v1/posts/${postId}`);
    assert.equal(res.status, 404, 'GET /api/v1/posts/{id} of a pending post');
    const created = await creating;
    assert.equal(created.post_id, postId);
    assert.equal((await call(clients.posts, 'GetPost', { post_id: postId })).caption, 'slow one');
  });

  test('healing publishes a post whose CreatePost is slow to: one post, and CreatePost succeeds', async () => {
    await restart('post.create.after_attach=1*sleep(5000)');
    const media = await upload(alice);
    const creating = call(clients.posts, 'CreatePost', { caption: 'overtaken', media_ids: [media] }, { token: alice.token });
    await waitFor('healing publishes it first', () => sql("SELECT state FROM post.posts WHERE caption = 'overtaken'") === 'published');
    const created = await creating;
    assert.equal(sql("SELECT count(*) FROM post.posts WHERE caption = 'overtaken'"), '1');
    assert.equal((await call(clients.posts, 'GetPost', { post_id: created.post_id })).caption, 'overtaken');
    assert.equal(await attachedTo(media), created.post_id, 'the media stay attached');
  });

  test('the node dies after the attach: healing publishes the post, never showing it before', async () => {
    await restart('post.create.after_attach=crash');
    const media = await upload(alice);
    const err = await rpcError(call(clients.posts, 'CreatePost', { caption: 'crashed after', media_ids: [media] }, { token: alice.token }));
    assert.ok([grpc.status.UNAVAILABLE, grpc.status.INTERNAL, grpc.status.CANCELLED].includes(err.code), `${grpc.status[err.code]} ${err.details}`);
    const postId = sql("SELECT id FROM post.posts WHERE caption = 'crashed after' AND state = 'pending'");
    assert.ok(postId, 'the crash left a pending post');

    // Healing would settle it two seconds after it was written: start with a long grace
    // first to look at the pending post from a running node.
    await startAfterCrash(['--set', 'media.sweep_interval=1', '--set', 'post.pending_grace=3600']);
    assert.equal(await attachedTo(media), postId, 'the media were attached before the crash');
    await assertInvisible(postId, 'crashed after');

    await restart('');
    const started = Date.now();
    await waitFor('healing publishes the post', () => pendingCount() === '0');
    const post = await call(clients.posts, 'GetPost', { post_id: postId });
    assert.deepEqual(post.media_ids, [media]);
    assert.ok(Date.now() - started < SETTLE_MS);
    const feed = await call(clients.posts, 'GetGlobalFeed', { page: { limit: 5 } });
    assert.equal(feed.posts[0].id, postId, 'published with a fresh time: first in the feed');
  });

  test('the node dies before the attach: healing removes the post and the media are free', async () => {
    await restart('post.create.before_attach=crash');
    const media = await upload(alice);
    await rpcError(call(clients.posts, 'CreatePost', { caption: 'crashed before', media_ids: [media] }, { token: alice.token }));
    const postId = sql("SELECT id FROM post.posts WHERE caption = 'crashed before' AND state = 'pending'");
    assert.ok(postId, 'the crash left a pending post');

    await startAfterCrash();
    await waitFor('healing removes the post', () => sql(`SELECT count(*) FROM post.posts WHERE id = '${postId}'`) === '0');
    assert.equal(await attachedTo(media), '');
    const again = await call(clients.posts, 'CreatePost', { caption: 'after the crash', media_ids: [media] }, { token: alice.token });
    assert.equal(await attachedTo(media), again.post_id);
  });

  test('a failure before the attach that the process survives is settled the same way', async () => {
    await restart('post.create.before_attach=1*error');
    const media = await upload(alice);
    await rpcError(call(clients.posts, 'CreatePost', { caption: 'left pending', media_ids: [media] }, { token: alice.token }));
    await waitFor('healing removes the post', () => sql("SELECT count(*) FROM post.posts WHERE caption = 'left pending'") === '0');
    assert.equal(await attachedTo(media), '');
    assert.equal(pendingCount(), '0');
  });
});

describe('deadlines end work in PostgreSQL', () => {
  function registerRpc (username, deadlineMs) {
    return call(clients.auth, 'Register', { username, email: `${username}@example.com`, password: 'correct horse 1', client_name: 'test' }, { deadlineMs });
  }

  test('a Register whose deadline passes before its commit leaves no account', async () => {
    await restart('commit.Register=1*sleep(4000)');
    const username = unique('late').toLowerCase().slice(0, 30);
    // Time enough for the password hash on a busy machine; the pause before the commit
    // outlasts it.
    const err = await rpcError(registerRpc(username, 3000));
    assert.equal(err.code, grpc.status.DEADLINE_EXCEEDED, err.details);
    await waitFor('the handler reached its commit', () => /commit\.Register: sleeping/.test(stack.node.output()));
    await waitFor('the handler gave up', () => /deadline passed before the commit/.test(stack.node.output()));
    assert.equal(sql(`SELECT count(*) FROM auth.users WHERE username = '${username}'`), '0', 'the account exists');
    // The same name is still free.
    const ok = await registerRpc(username, 15000);
    assert.equal(ok.user.username, username);
  });

  test('a statement still waiting when the deadline passes is cancelled by PostgreSQL', async () => {
    await restart('');
    const username = unique('lock').toLowerCase().slice(0, 30);
    // A transaction of the test's own holds the username's unique-index entry, so the node's
    // INSERT of the same name waits on it.
    const holder = spawn(postgresBin('psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', stack.pg.url], { stdio: ['pipe', 'pipe', 'pipe'] });
    let holderOut = '';
    holder.stdout.on('data', (c) => { holderOut += c; });
    holder.stdin.write(`BEGIN; INSERT INTO auth.users (username, email, password_hash) VALUES ('${username}', '${username}-holder@example.com', 'x'); SELECT 'held';\n`);
    await waitFor('the lock is held', () => holderOut.includes('held'));
    try {
      const started = Date.now();
      const err = await rpcError(registerRpc(username, 3000));
      assert.equal(err.code, grpc.status.DEADLINE_EXCEEDED, err.details);
      // argon2 takes a moment before the INSERT; the timeout is what is left of 3 s then.
      await sleep(Math.max(0, started + 4000 - Date.now()));
      const waiting = sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'generia-node'" +
                          " AND state = 'active' AND query LIKE 'INSERT INTO auth.users%'");
      assert.equal(waiting, '0', 'the INSERT still waits after the deadline');
      assert.match(stack.node.output(), /canceling statement due to statement timeout/);
    } finally {
      holder.stdin.end('ROLLBACK;\n');
      await new Promise((resolve) => holder.once('exit', resolve));
    }
    await sleep(500);
    assert.equal(sql(`SELECT count(*) FROM auth.users WHERE username = '${username}'`), '0',
      'the INSERT ran on once the lock was gone');
  });

  test('over HTTP, a register that runs out of time is 504 and leaves no account', async () => {
    await restart('commit.Register=1*sleep(6000)');
    const account = newAccount('slow');
    const res = await fetch(`${stack.node.baseUrl}/api/v1/auth/register`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(account),
    });
    assert.equal(res.status, 504, await res.text());
    await waitFor('the handler reached its commit', () => /commit\.Register: sleeping/.test(stack.node.output()));
    await waitFor('the handler gave up', () => /deadline passed before the commit/.test(stack.node.output()));
    assert.equal(sql(`SELECT count(*) FROM auth.users WHERE username = '${account.username.toLowerCase()}'`), '0');
  });
});
