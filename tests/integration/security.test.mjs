// The security matrix (issue 6): hostile requests against one real node (all services in one
// process, a private PostgreSQL and Redis, see harness.mjs), table-driven.
//
// Each row is one request a hostile client could send: every write endpoint of API v1 and of
// the node's additions without a token, with another user's, with a tampered, expired, revoked
// or wrong-algorithm token; SQL, path traversal, NUL bytes and overlong strings in paths, query
// strings and body fields; deep and huge JSON; oversized and malformed multipart; tampered
// upload and media URLs.  For every row the test asserts
//   - the exact status (API v1's, and docs/api.md's codes), and the
//     problem+json code word where the row names one (every request asks for problem+json);
//   - that nothing changed in PostgreSQL: a fingerprint (md5 of every row) of each table of
//     auth, post and media;
//   - that nothing changed in storage: the files under the data folder's media/ folder, and
//     that the spool folder is empty again;
//   - that the node still answers GET /health.
// Rows that may take the node down (deep JSON) run last; if the node died, it is started again
// on the same data folder before the next row, so one crash fails its own row only.
//
// The rows describe the behaviour issue 6 asks for, not what a given build does: a row fails
// until its part of the issue is in.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  PROBLEM, assertStatus, client, filesUnder, freePort, makeTempDir, newAccount, postgresBin, removeDir,
  request, startNode, startStack,
} from './harness.mjs';
import { makeTinyJpeg } from './media-fixtures.mjs';

const MISSING_UUID = '00000000-0000-4000-8000-000000000000';
const TABLES = [
  'auth.users', 'auth.token_families', 'auth.refresh_tokens',
  'post.posts', 'post.post_media', 'post.hashtags', 'post.mentions', 'post.media_deletions',
  'media.media', 'media.variants',
];

let stack;
let api;
let nodeArgs;
let fixtureDir;
let tiny;
let alice;
let bob;
let carol; // logged out: her access token belongs to a revoked session
let secret; // the node's token key
const world = {};

// ---------------------------------------------------------------------------------------------
// Tokens

const b64url = (buf) => Buffer.from(buf).toString('base64url');

function jwt (header, claims, sign) {
  const head = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  return `${head}.${sign(head)}`;
}

function claimsFor (user, { exp = Math.floor(Date.now() / 1000) + 600, iat = Math.floor(Date.now() / 1000) } = {}) {
  return { sub: user.id, typ: 'access', jti: crypto.randomUUID(), iat, exp };
}

const hmac = (algorithm) => (head) => b64url(crypto.createHmac(algorithm, secret).update(head).digest());

const BAD_TOKENS = {
  // Alice's real token with Bob's id in the payload; the signature is Alice's.
  tampered: () => {
    const [head, , signature] = alice.token.split('.');
    return `${head}.${b64url(JSON.stringify(claimsFor(bob)))}.${signature}`;
  },
  // Signed with the node's own key, HS256, but expired a minute ago.
  expired: () => jwt({ alg: 'HS256', typ: 'JWT' }, claimsFor(alice, { exp: Math.floor(Date.now() / 1000) - 60, iat: Math.floor(Date.now() / 1000) - 960 }), hmac('sha256')),
  // Carol's token, issued before she logged out.
  revoked: () => carol.token,
  'alg none': () => jwt({ alg: 'none', typ: 'JWT' }, claimsFor(alice), () => ''),
  HS512: () => jwt({ alg: 'HS512', typ: 'JWT' }, claimsFor(alice), hmac('sha512')),
  RS256: () => {
    const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    return jwt({ alg: 'RS256', typ: 'JWT' }, claimsFor(alice),
      (head) => b64url(crypto.sign('sha256', Buffer.from(head), privateKey)));
  },
};

// ---------------------------------------------------------------------------------------------
// Requests

const bearer = (token) => (token ? { Authorization: `Bearer ${token}` } : {});

function send (method, urlPath, { token, json, body, headers = {} } = {}) {
  return api.request(method, urlPath, { json, body, headers: { ...PROBLEM, ...bearer(token), ...headers } });
}

function multipart (parts, { boundary = `----generia${crypto.randomBytes(8).toString('hex')}`, close = true } = {}) {
  const pieces = [];
  for (const part of parts) {
    pieces.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${part.name}"` +
      (part.filename !== undefined ? `; filename="${part.filename}"` : '') + '\r\n' +
      (part.type ? `Content-Type: ${part.type}\r\n` : '') + '\r\n'));
    pieces.push(Buffer.isBuffer(part.data) ? part.data : Buffer.from(part.data));
    pieces.push(Buffer.from('\r\n'));
  }
  if (close) pieces.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(pieces), type: `multipart/form-data; boundary=${boundary}` };
}

function sendMultipart (token, form, headers = {}) {
  return send('POST', '/api/v1/media/upload', { token, body: form.body, headers: { 'Content-Type': form.type, ...headers } });
}

const tinyForm = () => multipart([{ name: 'file', filename: 'tiny.jpg', type: 'image/jpeg', data: tiny.bytes }]);
const base64Body = () => ({ media_data: tiny.bytes.toString('base64'), content_type: 'image/jpeg', filename: 'tiny.jpg' });

// A PUT of `bytes` to an absolute upload URL (no credentials: the URL's signature is all).
function put (url, bytes = tiny.bytes, headers = {}) {
  return request(url, 'PUT', url, { body: bytes, headers: { ...PROBLEM, 'Content-Type': 'image/jpeg', ...headers } });
}

// Announces `declared` bytes, sends only the first 64 KiB, and waits for an answer: a node that
// checks the URL before it reads the body answers at once; one that reads first never does.
function putAnnounced (url, declared, ms = 10000) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: 'PUT',
      headers: { ...PROBLEM, 'Content-Type': 'image/jpeg', 'Content-Length': String(declared) },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        req.destroy();
        resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString() });
      });
    });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`no answer within ${ms} ms with ${declared} bytes announced and 64 KiB sent: the body is read before the URL is checked`));
    }, ms);
    req.on('error', () => {});
    req.write(Buffer.alloc(64 * 1024, 0xff));
  });
}

// Sends `method path` announcing a body of `declared` bytes, writes only the first 64 KiB and
// waits for the answer: a body over the route's limit is refused from its Content-Length,
// before it is read (a client that wrote it all would only see the connection close).
function announce (method, urlPath, declared, { token, type = 'application/json', ms = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(urlPath, api.baseUrl), {
      method,
      headers: { ...PROBLEM, ...bearer(token), 'Content-Type': type, 'Content-Length': String(declared) },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        req.destroy();
        resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString() });
      });
    });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`no answer within ${ms} ms with ${declared} bytes announced and 64 KiB sent`));
    }, ms);
    req.on('error', () => {});
    req.write(Buffer.alloc(Math.min(64 * 1024, declared), 0x20));
  });
}

// Replaces one query parameter (or the path segment `segment` of the path) of an absolute URL.
function withParam (url, name, value) {
  const u = new URL(url);
  u.searchParams.set(name, value);
  return u.toString();
}

function withSegment (url, index, value) {
  const u = new URL(url);
  const segments = u.pathname.split('/');
  segments[index < 0 ? segments.length + index : index] = value;
  u.pathname = segments.join('/');
  return u.toString();
}

// ---------------------------------------------------------------------------------------------
// What must not change

// One psql kept open for the whole file: starting psql twice per row costs more than the rows.
// Each query is followed by an \echo of a marker, and its output is everything before it.
let psqlSession = null;

function startPsql () {
  const child = spawn(postgresBin('psql'), ['-X', '-q', '-A', '-t', '-F', '\t', '-v', 'ON_ERROR_STOP=1', '-d', stack.pg.url],
    { stdio: ['pipe', 'pipe', 'pipe'] });
  const session = { child, buffer: '', errors: '', waiting: null };
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk) => {
    session.buffer += chunk;
    const end = session.buffer.indexOf('__gn_end__\n');
    if (end >= 0 && session.waiting) {
      const text = session.buffer.slice(0, end);
      session.buffer = session.buffer.slice(end + '__gn_end__\n'.length);
      const { resolve } = session.waiting;
      session.waiting = null;
      resolve(text);
    }
  });
  child.stderr.on('data', (chunk) => { session.errors += chunk; });
  child.on('exit', (code) => {
    if (session.waiting) session.waiting.reject(new Error(`psql exited (${code}): ${session.errors}`));
  });
  return session;
}

function query (sql) {
  psqlSession ??= startPsql();
  return new Promise((resolve, reject) => {
    psqlSession.waiting = { resolve, reject };
    psqlSession.child.stdin.write(`${sql};\n\\echo __gn_end__\n`);
  });
}

async function fingerprint () {
  const columns = TABLES.map((table) =>
    `(SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '-') FROM ${table} t)`);
  const row = (await query(`SELECT ${columns.join(', ')}`)).trim().split('\t');
  assert.equal(row.length, TABLES.length, `fingerprint: ${row.join(' ')} ${psqlSession.errors}`);
  return Object.fromEntries(TABLES.map((table, i) => [table, row[i]]));
}

function storage () {
  return filesUnder(path.join(stack.dataDir, 'media'));
}

function spool () {
  return filesUnder(path.join(stack.dataDir, 'spool'));
}

function nodeAlive () {
  const child = stack.node.process;
  return child.exitCode === null && child.signalCode === null;
}

// After a crash: the node again on the same data folder, PostgreSQL and Redis.  A node that
// still runs but no longer answers /health (dying, or hung) is killed first.
async function ensureNode () {
  if (nodeAlive()) {
    try {
      if ((await request(stack.baseUrl, 'GET', '/health')).status === 200) return;
    } catch {}
    stack.node.process.kill('SIGKILL');
    await new Promise((resolve) => {
      if (!nodeAlive()) resolve();
      else stack.node.process.once('exit', resolve);
    });
  }
  await revive();
}

async function revive () {
  stack.node = await startNode({
    dataDir: stack.dataDir, databaseUrl: stack.pg.url, redisUrl: stack.redis.url, args: nodeArgs,
  });
  stack.baseUrl = stack.node.baseUrl;
  stack.api = api = client(stack.baseUrl);
}

// ---------------------------------------------------------------------------------------------
// The world the rows attack

async function register (prefix) {
  const account = newAccount(prefix);
  const res = await api.post('/api/v1/auth/register', { json: account });
  assertStatus(res, 201, `register ${prefix}`);
  const body = res.json();
  return { ...account, id: body.user.id, token: body.token, refresh: body.refresh_token };
}

async function uploadTiny (user) {
  const res = await sendMultipart(user.token, tinyForm());
  assertStatus(res, 201, 'upload tiny.jpg');
  return res.json();
}

async function uploadSlot (user) {
  const res = await send('POST', '/api/v1/media/upload-url', {
    token: user.token, json: { filename: 'tiny.jpg', content_type: 'image/jpeg', size: tiny.bytes.length },
  });
  assertStatus(res, 200, 'upload-url');
  return res.json();
}

before(async () => {
  fixtureDir = await makeTempDir('gn-fixtures-');
  tiny = makeTinyJpeg(fixtureDir);
  const cdnPort = await freePort();
  nodeArgs = ['--set', `cdn.port=${cdnPort}`];
  stack = await startStack({ args: nodeArgs });
  api = stack.api;

  const key = fs.readFileSync(path.join(stack.dataDir, 'secrets', 'token.key'));
  assert.equal(key.length, 32, 'the node wrote a 32-byte token key');
  secret = key;

  alice = await register('alice');
  bob = await register('bob');
  carol = await register('carol');
  assertStatus(await send('POST', '/api/v1/auth/logout', { json: { refresh_token: carol.refresh } }), 200, 'carol logs out');

  // Alice: a post, a confirmed media nobody uses yet, a pending upload slot; Bob: a slot.
  world.postMedia = await uploadTiny(alice);
  const created = await send('POST', '/api/v1/posts', { token: alice.token, json: { caption: 'mine', media_id: world.postMedia.media_id } });
  assertStatus(created, 201, 'alice posts');
  world.post = created.json().id;
  world.aliceMedia = await uploadTiny(alice);
  world.aliceSlot = await uploadSlot(alice);
  world.bobSlot = await uploadSlot(bob);
  world.mediaUrl = world.aliceMedia.variants.medium;
  world.otherMediaUrl = world.postMedia.variants.medium;

  // A revoked session's access tokens must stop working within seconds (issue 6, part 9):
  // give it that long before the rows run.
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline && (await send('GET', '/api/v1/auth/me', { token: carol.token })).status !== 401) {
    await sleep(250);
  }
});

after(async () => {
  if (psqlSession) {
    psqlSession.child.stdin.end();
    await new Promise((resolve) => psqlSession.child.once('close', resolve));
  }
  if (stack) {
    await ensureNode().catch(() => {});
    await stack.stop();
  }
  if (fixtureDir) await removeDir(fixtureDir);
});

// ---------------------------------------------------------------------------------------------
// The rows: [name, status, code or undefined, () => response]

const rows = [];
const row = (name, status, code, fn) => rows.push({ name, status, code, fn });

// The write endpoints that need a session; `token` is whatever the row tries.
const WRITES = [
  ['POST /api/v1/posts', (token) => send('POST', '/api/v1/posts', { token, json: { caption: 'x', media_id: world.aliceMedia.media_id } })],
  ['PATCH /api/v1/posts/{id}', (token) => send('PATCH', `/api/v1/posts/${world.post}`, { token, json: { caption: 'changed' } })],
  ['DELETE /api/v1/posts/{id}', (token) => send('DELETE', `/api/v1/posts/${world.post}`, { token })],
  ['POST /api/v1/media/upload-url', (token) => send('POST', '/api/v1/media/upload-url', { token, json: { filename: 'a.jpg', content_type: 'image/jpeg', size: 1000 } })],
  ['POST /api/v1/media/confirm', (token) => send('POST', '/api/v1/media/confirm', { token, json: { media_id: world.aliceSlot.media_id } })],
  ['POST /api/v1/media/upload (multipart)', (token) => sendMultipart(token, tinyForm())],
  ['POST /api/v1/media (base64)', (token) => send('POST', '/api/v1/media', { token, json: base64Body() })],
];

for (const [endpoint, call] of WRITES) {
  row(`${endpoint} anonymous`, 401, 'unauthorized', () => call(undefined));
  for (const [kind, make] of Object.entries(BAD_TOKENS)) {
    row(`${endpoint} with a ${kind} token`, 401, 'invalid_token', () => call(make()));
  }
}

// Another user.
row('PATCH another user\'s post', 403, 'not_your_post', () => send('PATCH', `/api/v1/posts/${world.post}`, { token: bob.token, json: { caption: 'hijacked' } }));
row('DELETE another user\'s post', 403, 'not_your_post', () => send('DELETE', `/api/v1/posts/${world.post}`, { token: bob.token }));
row('POST /posts with another user\'s media (API v1: 400)', 400, undefined, () => send('POST', '/api/v1/posts', { token: bob.token, json: { caption: 'x', media_id: world.aliceMedia.media_id } }));
// The media service answers someone else's upload as it answers a missing one: no existence leak.
row('confirm another user\'s upload', 404, 'media_not_found', () => send('POST', '/api/v1/media/confirm', { token: bob.token, json: { media_id: world.aliceSlot.media_id } }));
// Logout is idempotent: an unknown refresh token is "already logged out" and changes nothing.
row('logout with a tampered refresh token changes nothing', 200, undefined, () => send('POST', '/api/v1/auth/logout', { json: { refresh_token: `${alice.refresh.slice(0, -2)}xx` } }));
row('refresh with a tampered refresh token', 401, undefined, () => send('POST', '/api/v1/auth/refresh', { json: { refresh_token: `x${alice.refresh.slice(1)}` } }));
row('refresh with the revoked session\'s refresh token', 401, undefined, () => send('POST', '/api/v1/auth/refresh', { json: { refresh_token: carol.refresh } }));
row('login with the right username and a SQL password', 401, 'wrong_password', () => send('POST', '/api/v1/auth/login', { json: { email_or_username: alice.username, password: "' OR '1'='1" } }));

// SQL injection.
const SQL = "x' OR '1'='1'; DROP TABLE auth.users; --";
row('register with SQL in username', 400, 'invalid_username', () => send('POST', '/api/v1/auth/register', { json: { ...newAccount('sql'), username: SQL } }));
row('register with SQL in email', 400, 'invalid_email', () => send('POST', '/api/v1/auth/register', { json: { ...newAccount('sql'), email: `${SQL}@example.test` } }));
row('login with SQL as the username (API v1: unknown user 404)', 404, 'user_not_found', () => send('POST', '/api/v1/auth/login', { json: { email_or_username: SQL, password: 'whatever-long' } }));
row('create post with SQL as media_id', 400, 'invalid_media_id', () => send('POST', '/api/v1/posts', { token: alice.token, json: { caption: SQL, media_id: SQL } }));
row('create post with an unknown media_id (API v1: 400)', 400, undefined, () => send('POST', '/api/v1/posts', { token: alice.token, json: { caption: 'x', media_id: MISSING_UUID } }));
row('edit post with SQL as the id', 404, 'post_not_found', () => send('PATCH', `/api/v1/posts/${encodeURIComponent(SQL)}`, { token: alice.token, json: { caption: 'x' } }));
row('delete post with SQL as the id', 404, 'post_not_found', () => send('DELETE', `/api/v1/posts/${encodeURIComponent("' OR 1=1 --")}`, { token: alice.token }));
row('confirm with SQL as media_id', 404, 'media_not_found', () => send('POST', '/api/v1/media/confirm', { token: alice.token, json: { media_id: SQL } }));
row('feed with SQL in cursor', 400, 'invalid_cursor', () => send('GET', `/api/v1/feed?cursor=${encodeURIComponent(SQL)}`));
row('feed with SQL in limit', 400, 'invalid_request', () => send('GET', `/api/v1/feed?limit=${encodeURIComponent('1 OR 1=1')}`));

// Path traversal.
const TRAVERSAL = '../../../../etc/passwd';
row('PUT to an upload URL whose media id is a traversal', 404, 'not_found', () => put(withSegment(world.aliceSlot.upload_url, -2, encodeURIComponent(TRAVERSAL))));
row('confirm with a traversal media_id', 404, 'media_not_found', () => send('POST', '/api/v1/media/confirm', { token: alice.token, json: { media_id: TRAVERSAL } }));
row('edit post with a traversal id', 404, ['not_found', 'post_not_found'], () => send('PATCH', `/api/v1/posts/${encodeURIComponent(TRAVERSAL)}`, { token: alice.token, json: { caption: 'x' } }));
row('multipart upload of a text file named like a traversal', 415, 'unsupported_media_type', () => sendMultipart(alice.token, multipart([{ name: 'file', filename: TRAVERSAL, type: 'image/jpeg', data: 'root:x:0:0:root:/root:/bin/bash\n' }])));
row('media URL with a traversal in its path', 404, undefined, () => request(world.mediaUrl, 'GET', withSegment(world.mediaUrl, -1, encodeURIComponent(TRAVERSAL))));

// NUL bytes, escaped in JSON and raw.
row('register with \\u0000 in username', 400, 'nul_in_string', () => send('POST', '/api/v1/auth/register', { json: { ...newAccount('nul'), username: `nul${Date.now() % 100000}\u0000admin` } }));
row('register with \\u0000 in password', 400, undefined, () => send('POST', '/api/v1/auth/register', { json: { ...newAccount('nul'), password: 'long-enough-pass\u0000word' } }));
row('login with \\u0000 after a real username', 400, undefined, () => send('POST', '/api/v1/auth/login', { json: { email_or_username: `${alice.username}\u0000x`, password: alice.password } }));
row('create post with \\u0000 in caption', 400, 'nul_in_string', () => send('POST', '/api/v1/posts', { token: alice.token, json: { caption: 'before\u0000after', media_id: world.aliceMedia.media_id } }));
row('edit post with \\u0000 in caption', 400, 'nul_in_string', () => send('PATCH', `/api/v1/posts/${world.post}`, { token: alice.token, json: { caption: 'before\u0000after' } }));
row('register with a raw NUL byte in the JSON', 400, 'nul_in_string', () => send('POST', '/api/v1/auth/register', { body: Buffer.from(`{"username":"raw\u0000nul","email":"raw@example.test","password":"long-enough-pw"}`), headers: { 'Content-Type': 'application/json' } }));
row('edit post with %00 in the id', 404, ['not_found', 'post_not_found'], () => send('PATCH', `/api/v1/posts/${world.post}%00`, { token: alice.token, json: { caption: 'x' } }));
row('feed with %00 in the cursor', 400, 'invalid_query', () => send('GET', '/api/v1/feed?cursor=abc%00def'));
row('upload-url with \\u0000 in filename', 400, undefined, () => send('POST', '/api/v1/media/upload-url', { token: alice.token, json: { filename: 'a\u0000.jpg', content_type: 'image/jpeg', size: 1000 } }));

// Overlong strings.
const LONG = 'a'.repeat(20000);
// Past every field's limit but inside the 8 KiB body limit of the auth routes.
const MID = 'a'.repeat(4000);
row('register with an overlong username', 400, 'invalid_username', () => send('POST', '/api/v1/auth/register', { json: { ...newAccount('long'), username: MID } }));
row('register with an overlong password', 400, 'password_too_long', () => send('POST', '/api/v1/auth/register', { json: { ...newAccount('long'), password: MID } }));
row('login with an overlong password', 401, 'wrong_password', () => send('POST', '/api/v1/auth/login', { json: { email_or_username: alice.username, password: MID } }));
row('refresh with an overlong refresh token', 401, undefined, () => send('POST', '/api/v1/auth/refresh', { json: { refresh_token: MID } }));
row('register with a body past the auth routes\' 8 KiB', 413, 'payload_too_large', () => send('POST', '/api/v1/auth/register', { json: { ...newAccount('long'), username: LONG } }));
row('create post with an overlong caption', 400, 'caption_too_long', () => send('POST', '/api/v1/posts', { token: alice.token, json: { caption: LONG, media_id: world.aliceMedia.media_id } }));
row('edit post with an overlong caption', 400, 'caption_too_long', () => send('PATCH', `/api/v1/posts/${world.post}`, { token: alice.token, json: { caption: LONG } }));
row('create post with 1000 media_ids', 400, 'too_many_media', () => send('POST', '/api/v1/posts', { token: alice.token, json: { caption: 'x', media_ids: Array(1000).fill(world.aliceMedia.media_id) } }));
row('delete post with an overlong id', 404, ['not_found', 'post_not_found'], () => send('DELETE', `/api/v1/posts/${'b'.repeat(4000)}`, { token: alice.token }));
row('feed with an overlong cursor', 414, 'uri_too_long', () => send('GET', `/api/v1/feed?cursor=${'c'.repeat(8000)}`));
row('an overlong bearer token', 401, 'invalid_token', () => send('POST', '/api/v1/media/upload-url', { token: `${'t'.repeat(8000)}.x.y`, json: { filename: 'a.jpg', content_type: 'image/jpeg', size: 1000 } }));
row('upload-url with an overlong content_type', 415, 'unsupported_media_type', () => send('POST', '/api/v1/media/upload-url', { token: alice.token, json: { filename: 'a.jpg', content_type: `image/${LONG}`, size: 1000 } }));
row('upload-url with a negative size', 400, undefined, () => send('POST', '/api/v1/media/upload-url', { token: alice.token, json: { filename: 'a.jpg', content_type: 'image/jpeg', size: -5 } }));
row('upload-url with a petabyte size', 413, 'file_too_large', () => send('POST', '/api/v1/media/upload-url', { token: alice.token, json: { filename: 'a.jpg', content_type: 'image/jpeg', size: 1e15 } }));

// Huge and malformed JSON.
row('login announcing 2 MiB', 413, 'payload_too_large', () => announce('POST', '/api/v1/auth/login', 2 * 1024 * 1024));
row('login with a 2 MiB chunked body', 413, 'payload_too_large', () => api.post('/api/v1/auth/login', { body: `{"password":"${'p'.repeat(2 * 1024 * 1024)}"}`, chunked: true, headers: { ...PROBLEM, 'Content-Type': 'application/json' } }));
row('create post announcing 16 MiB', 413, 'payload_too_large', () => announce('POST', '/api/v1/posts', 16 * 1024 * 1024, { token: alice.token }));
row('create post with an 8 MiB chunked body', 413, 'payload_too_large', () => api.post('/api/v1/posts', { body: JSON.stringify({ caption: 'x'.repeat(8 * 1024 * 1024), media_id: world.aliceMedia.media_id }), chunked: true, headers: { ...PROBLEM, ...bearer(alice.token), 'Content-Type': 'application/json' } }));
row('create post with malformed JSON', 400, 'invalid_json', () => send('POST', '/api/v1/posts', { token: alice.token, body: '{"caption": "x", "media_id": ', headers: { 'Content-Type': 'application/json' } }));
row('base64 upload whose media_data is not base64', 400, undefined, () => send('POST', '/api/v1/media', { token: alice.token, json: { ...base64Body(), media_data: '!!!not base64 at all!!!' } }));
row('base64 upload announcing 40 MiB', 413, 'payload_too_large', () => announce('POST', '/api/v1/media', 40 * 1024 * 1024, { token: alice.token }));

// Oversized and malformed multipart.
row('multipart without a boundary', 400, 'invalid_multipart', () => send('POST', '/api/v1/media/upload', { token: alice.token, body: tinyForm().body, headers: { 'Content-Type': 'multipart/form-data' } }));
row('multipart that never closes', 400, ['invalid_multipart', 'invalid_media'], () => sendMultipart(alice.token, multipart([{ name: 'file', filename: 'tiny.jpg', type: 'image/jpeg', data: tiny.bytes }], { close: false })));
row('multipart with garbage between the boundaries', 400, ['invalid_multipart', 'invalid_request'], () => {
  const boundary = 'xyzzy';
  return sendMultipart(alice.token, { body: Buffer.from(`--${boundary}\r\nno headers here at all\r\n--${boundary}--\r\n`), type: `multipart/form-data; boundary=${boundary}` });
});
row('multipart without a file part', 400, 'invalid_request', () => sendMultipart(alice.token, multipart([{ name: 'caption', data: 'no file' }])));
row('multipart with an empty file', 400, 'empty_upload', () => sendMultipart(alice.token, multipart([{ name: 'file', filename: 'tiny.jpg', type: 'image/jpeg', data: '' }])));
row('multipart announcing 120 MiB', 413, 'payload_too_large', () => announce('POST', '/api/v1/media/upload', 120 * 1024 * 1024, { token: alice.token, type: 'multipart/form-data; boundary=xyzzy' }));
row('multipart with an overlong boundary', 400, 'invalid_multipart', () => sendMultipart(alice.token, multipart([{ name: 'file', filename: 'tiny.jpg', type: 'image/jpeg', data: tiny.bytes }], { boundary: 'b'.repeat(5000) })));

// Signed upload URLs.
row('PUT without the signature', 403, 'invalid_signature', () => {
  const u = new URL(world.aliceSlot.upload_url);
  u.searchParams.delete('signature');
  return put(u.toString());
});
row('PUT with a changed signature', 403, 'invalid_signature', () => {
  const signature = new URL(world.aliceSlot.upload_url).searchParams.get('signature');
  return put(withParam(world.aliceSlot.upload_url, 'signature', `${signature[0] === 'A' ? 'B' : 'A'}${signature.slice(1)}`));
});
row('PUT with a later expiry', 403, 'invalid_signature', () => {
  const expires = Number(new URL(world.aliceSlot.upload_url).searchParams.get('expires'));
  return put(withParam(world.aliceSlot.upload_url, 'expires', String(expires + 86400)));
});
row('PUT with an expiry in the past', 403, undefined, () => put(withParam(world.aliceSlot.upload_url, 'expires', '1')));
row('PUT with an overlong expiry', 414, 'uri_too_long', () => put(withParam(world.aliceSlot.upload_url, 'expires', '9'.repeat(5000))));
row('PUT of Alice\'s signature to Bob\'s upload', 403, 'invalid_signature', () => {
  const signature = new URL(world.aliceSlot.upload_url).searchParams.get('signature');
  return put(withParam(world.bobSlot.upload_url, 'signature', signature));
});
row('PUT of Bob\'s URL with Alice\'s media id', 403, 'invalid_signature', () => put(withSegment(world.bobSlot.upload_url, -2, world.aliceSlot.media_id)));
row('PUT with a bad signature is refused before the body is read', 403, 'invalid_signature', () => putAnnounced(withParam(world.bobSlot.upload_url, 'signature', 'A'.repeat(43)), 100 * 1024 * 1024));

// Signed media URLs (the CDN listener).
row('media URL with a later expiry', 403, undefined, () => {
  const expires = Number(new URL(world.mediaUrl).searchParams.get('expires'));
  const url = withParam(world.mediaUrl, 'expires', String(expires + 86400));
  return request(url, 'GET', url);
});
row('media URL with a changed signature', 403, undefined, () => {
  const signature = new URL(world.mediaUrl).searchParams.get('signature');
  const url = withParam(world.mediaUrl, 'signature', `${signature[0] === 'A' ? 'B' : 'A'}${signature.slice(1)}`);
  return request(url, 'GET', url);
});
row('media URL with another media\'s path', 403, undefined, () => {
  const other = new URL(world.otherMediaUrl);
  const url = new URL(world.mediaUrl);
  url.pathname = other.pathname;
  return request(url.toString(), 'GET', url.toString());
});
row('media URL without its signature', 403, undefined, () => {
  const url = new URL(world.mediaUrl);
  url.search = '';
  return request(url.toString(), 'GET', url.toString());
});

// Deep JSON, last: a parser without a depth limit takes the node down.
const deep = (n) => `${'['.repeat(n)}${']'.repeat(n)}`;
row('register with JSON nested 30,000 deep', 413, 'payload_too_large', () => send('POST', '/api/v1/auth/register', { body: deep(30000), headers: { 'Content-Type': 'application/json' } }));
row('create post with JSON nested 30,000 deep', 400, 'json_too_deep', () => send('POST', '/api/v1/posts', { token: alice.token, body: `{"caption":${deep(30000)}}`, headers: { 'Content-Type': 'application/json' } }));
row('create post with JSON nested 100,000 deep', 413, 'payload_too_large', () => send('POST', '/api/v1/posts', { token: alice.token, body: `{"caption":${deep(100000)}}`, headers: { 'Content-Type': 'application/json' } }));
row('base64 upload with JSON nested 100,000 deep', 400, 'json_too_deep', () => send('POST', '/api/v1/media', { token: alice.token, body: `{"media_data":${deep(100000)}}`, headers: { 'Content-Type': 'application/json' } }));

test(`the matrix has at least 60 rows (${rows.length})`, () => {
  assert.ok(rows.length >= 60, `${rows.length} rows`);
});

for (const r of rows) {
  test(`${r.name}: ${r.status}${r.code ? ` ${[r.code].flat().join('|')}` : ''}`, async () => {
    await ensureNode();
    const beforeDb = await fingerprint();
    const beforeStorage = storage();
    let res;
    try {
      res = await r.fn();
    } catch (err) {
      res = { error: err };
    }
    // Spooled bodies and temporary files may go a moment after the answer.
    let left = spool();
    for (let i = 0; i < 20 && left.length > 0; i++) {
      await sleep(100);
      left = spool();
    }
    const problems = [];
    if (res.error) {
      problems.push(`no answer: ${res.error.message}`);
    } else if (res.status !== r.status) {
      problems.push(`status ${res.status}, expected ${r.status}: ${(res.text ?? '').slice(0, 300)}`);
    } else if (r.code) {
      let code;
      try { code = JSON.parse(res.text).code; } catch { code = `(not problem+json: ${(res.text ?? '').slice(0, 200)})`; }
      const expected = [r.code].flat();
      if (!expected.includes(code)) problems.push(`code ${code}, expected ${expected.join(' or ')}`);
    }
    let health = null;
    try {
      health = (await request(stack.baseUrl, 'GET', '/health')).status;
    } catch (err) {
      health = err.message;
    }
    if (health !== 200) problems.push(`GET /health afterwards: ${health}${nodeAlive() ? '' : ' (the node died)'}`);
    const afterDb = await fingerprint();
    for (const table of TABLES) {
      if (afterDb[table] !== beforeDb[table]) problems.push(`${table} changed (${beforeDb[table]} -> ${afterDb[table]})`);
    }
    const afterStorage = storage();
    if (JSON.stringify(afterStorage) !== JSON.stringify(beforeStorage)) {
      problems.push(`media storage changed: ${beforeStorage.length} -> ${afterStorage.length} files`);
    }
    if (left.length > 0) problems.push(`spool not empty: ${left.join(', ')}`);
    assert.deepEqual(problems, [], `${r.name}:\n  ${problems.join('\n  ')}`);
  });
}
