// The S3 backend unreachable: a node on S3 (a real SigV4-checking s3rver, see harness.mjs)
// whose S3 port stops accepting connections.  Uploads by every path answer 503
// storage_unavailable quickly and leave nothing behind (no media row past pending, no object,
// nothing in the spool folder or the node's TMPDIR); reading an object the node has no local
// copy of answers 503 too; /ready says 503 while /health and the routes that need no storage
// keep answering; when S3 accepts again the node serves uploads and reads without a restart.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  assertErrorBothWays, assertStatus, filesUnder, freePort, makeTempDir, newAccount, psql, removeDir,
  request, startS3, startStack,
} from './harness.mjs';
import { makeTinyJpeg } from './media-fixtures.mjs';

let s3;
let stack;
let tmpDir;
let fixtureDir;
let tiny;
let user;

before(async () => {
  fixtureDir = await makeTempDir('gn-fixtures-');
  tiny = makeTinyJpeg(fixtureDir);
  tmpDir = await makeTempDir('gn-node-tmp-');
  s3 = await startS3();
  const cdnPort = await freePort();
  stack = await startStack({ args: ['--set', `cdn.port=${cdnPort}`, ...s3.nodeArgs], env: { TMPDIR: tmpDir } });
  const account = newAccount('s3down');
  const res = await stack.api.post('/api/v1/auth/register', { json: account });
  assertStatus(res, 201, 'register');
  user = { token: res.json().token, ...account };
});

after(async () => {
  if (stack) await stack.stop();
  if (s3) await s3.stop();
  if (tmpDir) await removeDir(tmpDir);
  if (fixtureDir) await removeDir(fixtureDir);
});

const auth = (headers = {}) => ({ Authorization: `Bearer ${user.token}`, ...headers });

function multipart (headers = {}) {
  const boundary = `----generia${crypto.randomBytes(12).toString('hex')}`;
  const body = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="tiny.jpg"\r\n` +
                'Content-Type: image/jpeg\r\n\r\n'),
    tiny.bytes,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  return stack.api.post('/api/v1/media/upload', {
    body, headers: auth({ 'Content-Type': `multipart/form-data; boundary=${boundary}`, ...headers }),
  });
}

function base64 (headers = {}) {
  return stack.api.post('/api/v1/media', {
    json: { media_data: tiny.bytes.toString('base64'), content_type: 'image/jpeg', filename: 'tiny.jpg' },
    headers: auth(headers),
  });
}

async function uploadUrl () {
  const res = await stack.api.post('/api/v1/media/upload-url', {
    json: { filename: 'tiny.jpg', content_type: 'image/jpeg', size: tiny.bytes.length }, headers: auth(),
  });
  assertStatus(res, 200, 'upload-url');
  return res.json();
}

function put (url, headers = {}) {
  return request(url, 'PUT', url, { body: tiny.bytes, headers: { 'Content-Type': 'image/jpeg', ...headers } });
}

function state () {
  return {
    media: psql(stack.pg.url, "SELECT id, state FROM media.media WHERE state <> 'pending' ORDER BY id")
      .map((row) => row.join(' ')),
    objects: s3.objectKeys(),
    localMedia: filesUnder(path.join(stack.dataDir, 'media')),
    spool: filesUnder(path.join(stack.dataDir, 'spool')),
    tmp: filesUnder(tmpDir),
  };
}

async function until (what, check, ms = 20000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) assert.fail(`${what} did not happen within ${ms / 1000} s\n${stack.node.output().slice(-3000)}`);
    await sleep(100);
  }
}

test('S3 unreachable: uploads and uncached reads answer 503, nothing is left, and the node recovers by itself', async () => {
  const { api } = stack;
  // With S3 up: an upload whose variants are then read once, and one never read (no local copy).
  const first = await multipart();
  assertStatus(first, 201, 'multipart upload while S3 is up');
  const unread = await multipart();
  assertStatus(unread, 201, 'second upload while S3 is up');
  const unreadUrl = unread.json().variants.original;
  // The CDN keeps local copies of what it served or stored; drop them (its folders stay) so the
  // read must go to S3.
  const cacheDir = path.join(stack.dataDir, 'cdn-cache');
  for (const file of filesUnder(cacheDir)) fs.rmSync(path.join(cacheDir, file));

  await s3.halt();
  try {
    const before = state();
    const started = Date.now();
    await assertErrorBothWays((headers) => multipart(headers), 503, 'storage_unavailable', 'multipart upload, S3 down');
    await assertErrorBothWays((headers) => base64(headers), 503, 'storage_unavailable', 'base64 upload, S3 down');
    await assertErrorBothWays(async (headers) => put((await uploadUrl()).upload_url, headers), 503,
      'storage_unavailable', 'presigned PUT, S3 down');
    assert.ok(Date.now() - started < 30000, `the refusals took ${Date.now() - started} ms`);

    const read = await request(unreadUrl, 'GET', unreadUrl);
    assertStatus(read, 503, 'reading an object with no local copy while S3 is down');

    assertStatus(await api.get('/health'), 200, '/health while S3 is down');
    await until('/ready turning 503', async () => (await api.get('/ready')).status === 503);
    assertStatus(await api.get('/api/v1/auth/me', { headers: auth() }), 200, '/me needs no storage');
    assertStatus(await api.get('/api/v1/feed'), 200, 'the feed needs no storage');

    await sleep(300); // temporary files may trail the answer by a moment
    assert.deepEqual(state(), before, 'a refused upload changed rows, objects or temporary files');
  } finally {
    await s3.resume();
  }

  await until('/ready turning 200', async () => (await api.get('/ready')).status === 200);
  assertStatus(await multipart(), 201, 'multipart upload after S3 came back');
  const slot = await uploadUrl();
  assertStatus(await put(slot.upload_url), 200, 'presigned PUT after S3 came back');
  const again = await request(unreadUrl, 'GET', unreadUrl);
  assertStatus(again, 200, 'the object reads again');
  assert.deepEqual(state().spool, [], 'spool folder empty');
});
