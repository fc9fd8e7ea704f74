// Sessions for clients that never refresh, and revocations that reach every process.
//
// Two generia-node processes share PostgreSQL, Redis and the data folder (the token key):
//   A  --services auth,media,cdn,gateway   (the auth service; its rpc address is TCP)
//   B  --services gateway,post             (split from auth: its gateway and its post service
//                                           verify tokens with their own revocation set, fed
//                                           by polling A's AuthService.ListRevokedSessions)
// API v1 bodies (no client_refreshes) get 24 h access tokens, clients that say they refresh get
// 15-minute ones; a logout or a refresh-token reuse makes the session's access tokens answer 401
// within seconds at both gateways and at B's post service over gRPC.  Last, A is restarted with
// a tiny refresh-token lifetime: a refresh after it passed is refused.

import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

import {
  PROBLEM, UUID_RE, assertProblem, assertStatus, assertTimestamp, client, freePort, makeTempDir,
  newAccount, removeDir, request, startNode, startPostgres, startRedis, tcpAccepts,
} from './harness.mjs';

const PROTO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'node', 'proto');
const { PostService } = grpc.loadPackageDefinition(protoLoader.loadSync(path.join(PROTO_DIR, 'post.proto'), {
  includeDirs: [PROTO_DIR], keepCase: true, longs: String, enums: String, defaults: true,
})).generia.post.v1;

// Revocations are polled every second; "within seconds" is asserted with room for a loaded
// machine.
const PROPAGATION_MS = 5000;

let pg;
let redis;
let dir;
let nodeA;
let nodeB;
let apiA;
let apiB;
let postTarget;
let postClient;
let common;
let authPort;

before(async () => {
  pg = await startPostgres();
  redis = await startRedis();
  dir = await makeTempDir('gn-sessions-');
  authPort = await freePort();
  const postPort = await freePort();
  postTarget = `127.0.0.1:${postPort}`;
  const env = { GENERIA_RPC_POST_ADDRESS: postTarget };
  for (const name of ['AUTH', 'MEDIA', 'CDN']) env[`GENERIA_RPC_${name}_ADDRESS`] = `127.0.0.1:${authPort}`;
  common = { dataDir: path.join(dir, 'data'), databaseUrl: pg.url, redisUrl: redis.url, env };
  nodeA = await startA();
  nodeB = await startNode({ ...common, args: ['--services', 'gateway,post'] });
  apiA = client(nodeA.baseUrl);
  apiB = client(nodeB.baseUrl);
  postClient = new PostService(postTarget, grpc.credentials.createInsecure());
});

after(async () => {
  postClient?.close();
  const failures = [];
  for (const stop of [() => nodeB?.stop(), () => nodeA?.stop(), () => redis?.stop(), () => pg?.stop()]) {
    try { await stop(); } catch (err) { failures.push(err); }
  }
  if (dir) await removeDir(dir);
  if (failures.length) throw failures[0];
});

function startA (args = []) {
  return startNode({
    ...common,
    args: ['--services', 'auth,media,cdn,gateway', ...args],
    // Not /ready: that also asks for B's post service.
    isReady: async (baseUrl) => await tcpAccepts('127.0.0.1', authPort)
      && (await request(baseUrl, 'GET', '/health')).status === 200,
  });
}

function claims (jwt) {
  const [, payload] = jwt.split('.');
  return JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
}

const bearer = (token) => ({ Authorization: `Bearer ${token}` });

async function register (api, extra = {}) {
  const account = newAccount('sess');
  const res = await api.post('/api/v1/auth/register', { json: { ...account, ...extra } });
  assertStatus(res, 201, 'register');
  return { account, session: res.json() };
}

async function login (api, account, extra = {}) {
  const res = await api.post('/api/v1/auth/login', {
    json: { email_or_username: account.username, password: account.password, ...extra },
  });
  assertStatus(res, 200, 'login');
  return res.json();
}

// Resolves the status of GET /auth/me with the token.
async function meStatus (api, token) {
  return (await api.get('/api/v1/auth/me', { headers: bearer(token) })).status;
}

async function until (what, check, ms = PROPAGATION_MS) {
  const started = Date.now();
  for (;;) {
    if (await check()) return Date.now() - started;
    if (Date.now() - started > ms) assert.fail(`${what} did not happen within ${ms / 1000} s`);
    await sleep(100);
  }
}

// PostService.DeletePost on B's own rpc server, bypassing every gateway: the grpc status code.
function deletePostStatus (token) {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  return new Promise((resolve) => {
    postClient.DeletePost({ post_id: '00000000-0000-4000-8000-000000000000' }, metadata,
      { deadline: Date.now() + 10000 }, (err) => resolve(err ? err.code : grpc.status.OK));
  });
}

// Everything that verifies tokens refuses this one.
async function assertCutOffEverywhere (token, what) {
  await until(`${what}: 401 at gateway A`, async () => (await meStatus(apiA, token)) === 401);
  await until(`${what}: 401 at gateway B`, async () => (await meStatus(apiB, token)) === 401);
  await until(`${what}: UNAUTHENTICATED at B's post service`,
    async () => (await deletePostStatus(token)) === grpc.status.UNAUTHENTICATED);
  const refused = await apiB.get('/api/v1/auth/me', { headers: { ...bearer(token), ...PROBLEM } });
  assertProblem(refused, 401, undefined, `${what}: the problem answer`);
}

test('API v1 login and register (no client_refreshes) get 24 h access tokens', async () => {
  const { account, session } = await register(apiA);
  for (const [what, answer] of [['register', session], ['login', await login(apiB, account)]]) {
    const c = claims(answer.token);
    assert.equal(c.exp - c.iat, 86400, `${what}: access token lifetime`);
    assert.match(c.sid, UUID_RE, `${what}: the token names its session`);
    assert.equal(c.sub, session.user.id, `${what}: subject`);
    assertTimestamp(answer.expires_at, `${what}: expires_at`);
    assert.equal(Date.parse(answer.expires_at) / 1000, c.exp, `${what}: expires_at is the token's exp`);
    assert.ok(Date.parse(answer.expires_at) - Date.now() > 23.9 * 3600 * 1000, `${what}: expires_at a day ahead`);
    assert.equal(await meStatus(apiA, answer.token), 200);
  }
  // Each login is its own session.
  assert.notEqual(claims(session.token).sid, claims((await login(apiA, account)).token).sid);
});

test('clients that say client_refreshes get 15-minute tokens, and refresh keeps each kind', async () => {
  const { account, session } = await register(apiA, { client_refreshes: true });
  const short = claims(session.token);
  assert.equal(short.exp - short.iat, 900, 'register with client_refreshes');
  const loggedIn = await login(apiA, account, { client_refreshes: true });
  assert.equal(claims(loggedIn.token).exp - claims(loggedIn.token).iat, 900, 'login with client_refreshes');
  assert.equal(Date.parse(loggedIn.expires_at) / 1000, claims(loggedIn.token).exp);

  const refreshed = await apiB.post('/api/v1/auth/refresh', { json: { refresh_token: loggedIn.refresh_token } });
  assertStatus(refreshed, 200);
  const next = claims(refreshed.json().token);
  assert.equal(next.exp - next.iat, 900, 'a refreshing session stays short-lived');
  assert.equal(next.sid, claims(loggedIn.token).sid, 'a refresh stays in its session');

  const legacy = await login(apiA, account, { client_refreshes: false });
  const legacyRefreshed = await apiA.post('/api/v1/auth/refresh', { json: { refresh_token: legacy.refresh_token } });
  assertStatus(legacyRefreshed, 200);
  const legacyNext = claims(legacyRefreshed.json().token);
  assert.equal(legacyNext.exp - legacyNext.iat, 86400, 'an API v1 session stays long-lived');

  for (const value of ['yes', 1, {}]) {
    const res = await apiA.post('/api/v1/auth/login', {
      json: { email_or_username: account.username, password: account.password, client_refreshes: value },
      headers: PROBLEM,
    });
    assertProblem(res, 400, 'invalid_request', `client_refreshes: ${JSON.stringify(value)}`);
  }
});

test('logout cuts a 24 h token off at every gateway and at a split service within seconds', async () => {
  const { account, session } = await register(apiA);
  const other = await login(apiA, account);
  assert.equal(await meStatus(apiA, session.token), 200);
  assert.equal(await meStatus(apiB, session.token), 200);
  assert.equal(await deletePostStatus(session.token), grpc.status.NOT_FOUND, 'a live token reaches the handler');

  assertStatus(await apiA.post('/api/v1/auth/logout', { json: { refresh_token: session.refresh_token } }), 200);
  await assertCutOffEverywhere(session.token, 'after logout');

  // The person's other login is another session and goes on.
  assert.equal(await meStatus(apiA, other.token), 200);
  assert.equal(await meStatus(apiB, other.token), 200);
  assert.equal(await deletePostStatus(other.token), grpc.status.NOT_FOUND);
});

test('refresh-token reuse revokes the access tokens of the whole family everywhere', async () => {
  const { session } = await register(apiA, { client_refreshes: true });
  const rotated = await apiA.post('/api/v1/auth/refresh', { json: { refresh_token: session.refresh_token } });
  assertStatus(rotated, 200);
  const second = rotated.json();
  assert.equal(await meStatus(apiB, second.token), 200);

  // The first refresh token again: someone holds a copy.
  const reused = await apiB.post('/api/v1/auth/refresh', { json: { refresh_token: session.refresh_token }, headers: PROBLEM });
  assertProblem(reused, 401, 'refresh_token_reused');
  await assertCutOffEverywhere(session.token, 'the first access token after reuse');
  await assertCutOffEverywhere(second.token, 'the rotated access token after reuse');
});

test('a process that starts after a logout knows of it before it serves', async () => {
  const { session } = await register(apiA);
  assertStatus(await apiA.post('/api/v1/auth/logout', { json: { refresh_token: session.refresh_token } }), 200);
  await until('401 at gateway A', async () => (await meStatus(apiA, session.token)) === 401);

  const exit = await nodeB.stop();
  assert.equal(exit.code, 0, `B exited with ${exit.code} signal ${exit.signal}`);
  nodeB = await startNode({ ...common, args: ['--services', 'gateway,post'] });
  apiB = client(nodeB.baseUrl);
  assert.equal(await meStatus(apiB, session.token), 401, 'the first request after the start');
  assert.equal(await deletePostStatus(session.token), grpc.status.UNAUTHENTICATED);
});

test('a refresh token is refused once its own lifetime has passed', async () => {
  const exit = await nodeA.stop();
  assert.equal(exit.code, 0, `A exited with ${exit.code} signal ${exit.signal}`);
  nodeA = await startA(['--set', 'auth.refresh_token_ttl=6']);
  apiA = client(nodeA.baseUrl);

  const { session } = await register(apiA, { client_refreshes: true });
  const lifetime = Date.parse(session.refresh_expires_at) - Date.now();
  assert.ok(lifetime > 0 && lifetime <= 6000, `refresh_expires_at ${session.refresh_expires_at} is ~6 s ahead`);
  const fresh = await apiA.post('/api/v1/auth/refresh', { json: { refresh_token: session.refresh_token } });
  assertStatus(fresh, 200, 'a refresh within the lifetime');
  const next = fresh.json();

  await sleep(Math.max(0, Date.parse(next.refresh_expires_at) - Date.now()) + 1500);
  const late = await apiA.post('/api/v1/auth/refresh', { json: { refresh_token: next.refresh_token }, headers: PROBLEM });
  assertProblem(late, 401, 'refresh_token_expired', 'a refresh after the lifetime');
  // Expiry is not reuse: the session was not revoked, its access token still works.
  assert.equal(await meStatus(apiA, next.token), 200);
});
