// Services in separate processes: `--services auth,post,media,cdn` in one generia-node,
// `--services gateway` in another, both told where the services listen (GENERIA_RPC_*_ADDRESS,
// one TCP address for all four) and sharing PostgreSQL, Redis and the data folder (the gateway
// verifies access tokens itself with the key kept there).  The REST API works across the two
// processes, uploads included (the bytes stream over TCP); when the services go away the
// gateway says so (/ready and the routes answer 503) and recovers when they come back.
// Media are served by the services process's own CDN listener (cdn.port), which the gateway's
// media URLs name (cdn.public_url); a gateway that could not give working media URLs says so
// at start, and a CDN process nothing would serve media for refuses to start.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  PROBLEM, assertProblem, assertStatus, client, freePort, makeTempDir, newAccount, nodeBinary, removeDir, request,
  startNode, startPostgres, startRedis, tcpAccepts,
} from './harness.mjs';

let pg;
let redis;
let dir;
let authNode;
let gatewayNode;
let authPort;
let cdnPort;
let common;

before(async () => {
  pg = await startPostgres();
  redis = await startRedis();
  dir = await makeTempDir('gn-split-');
  authPort = await freePort();
  cdnPort = await freePort();
  common = {
    dataDir: path.join(dir, 'data'),
    databaseUrl: pg.url,
    redisUrl: redis.url,
    env: Object.fromEntries(['AUTH', 'POST', 'MEDIA', 'CDN'].map(
      (name) => [`GENERIA_RPC_${name}_ADDRESS`, `127.0.0.1:${authPort}`])),
  };
});

after(async () => {
  const failures = [];
  for (const stop of [() => gatewayNode?.stop(), () => authNode?.stop(), () => redis?.stop(), () => pg?.stop()]) {
    try { await stop(); } catch (err) { failures.push(err); }
  }
  if (dir) await removeDir(dir);
  if (failures.length) throw failures[0];
});

const startAuth = () => startNode({
  ...common, args: ['--services', 'auth,post,media,cdn', '--set', `cdn.port=${cdnPort}`],
  isReady: () => tcpAccepts('127.0.0.1', authPort),
});
const cdnBase = () => `http://127.0.0.1:${cdnPort}`;

async function until (what, check, ms = 15000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) assert.fail(`${what} did not happen within ${ms / 1000} s`);
    await sleep(100);
  }
}

test('a gateway process in front of a process running the services', async () => {
  authNode = await startAuth();
  gatewayNode = await startNode({ ...common, args: ['--services', 'gateway', '--set', `cdn.public_url=${cdnBase()}/`] });
  const api = client(gatewayNode.baseUrl);

  const account = newAccount('split');
  const registered = await api.post('/api/v1/auth/register', { json: account });
  assertStatus(registered, 201, 'register through the gateway process');
  const login = await api.post('/api/v1/auth/login', { json: { email_or_username: account.username, password: account.password } });
  assertStatus(login, 200);
  const me = await api.get('/api/v1/auth/me', { headers: { Authorization: `Bearer ${login.json().token}` } });
  assertStatus(me, 200);
  assert.equal(me.json().id, registered.json().user.id);

  // A photo crosses both processes: multipart into the gateway, streamed to media over TCP.
  const auth = { Authorization: `Bearer ${login.json().token}` };
  const jpeg = execFileSync('convert', ['-size', '16x16', 'xc:blue', 'jpg:-']);
  const uploaded = await api.post('/api/v1/media', {
    json: { media_data: jpeg.toString('base64'), content_type: 'image/jpeg', filename: 'dot.jpg' }, headers: auth,
  });
  assertStatus(uploaded, 201, 'upload through the gateway process');
  // Its media URLs name the CDN listener of the services process, and load there.
  for (const [name, url] of Object.entries(uploaded.json().variants)) {
    assert.ok(url.startsWith(`${cdnBase()}/media/`), `variant ${name}: ${url}`);
    assertStatus(await request(url, 'GET', url), 200, `variant ${name} from the CDN listener`);
  }
  const created = await api.post('/api/v1/posts', { json: { caption: 'split #ok', media_id: uploaded.json().media_id }, headers: auth });
  assertStatus(created, 201, 'post through the gateway process');
  const feed = await api.get('/api/v1/feed');
  assertStatus(feed, 200);
  assert.equal(feed.json().posts[0].id, created.json().id);
  assert.deepEqual(feed.json().posts[0].hashtags, ['ok']);

  // Auth goes away: the gateway stays up, says it is not ready and answers 503.
  const exit = await authNode.stop();
  authNode = null;
  assert.equal(exit.code, 0, `the auth process exited with ${exit.code} signal ${exit.signal}`);
  assertStatus(await api.get('/health'), 200, '/health without auth');
  await until('/ready turning 503', async () => (await api.get('/ready')).status === 503);
  const down = await api.post('/api/v1/auth/login', {
    json: { email_or_username: account.username, password: account.password }, headers: PROBLEM,
  });
  assertProblem(down, 503, undefined, 'login while auth is down');

  // Auth comes back on the same address: the gateway reconnects.
  authNode = await startAuth();
  await until('/ready turning 200', async () => (await api.get('/ready')).status === 200);
  const again = await api.post('/api/v1/auth/login', { json: { email_or_username: account.email, password: account.password } });
  assertStatus(again, 200, 'login after auth came back');
  const meAgain = await api.get('/api/v1/auth/me', { headers: { Authorization: `Bearer ${again.json().token}` } });
  assertStatus(meAgain, 200);
  assert.deepEqual(meAgain.json(), me.json());
});

test('a split that could not serve media says so: the gateway warns, a lone CDN refuses to start', async () => {
  const lone = await startNode({
    dataDir: path.join(dir, 'lone-gateway'), args: ['--services', 'gateway'],
    env: Object.fromEntries(['AUTH', 'POST', 'MEDIA', 'CDN'].map((name) => [`GENERIA_RPC_${name}_ADDRESS`, '127.0.0.1:1'])),
    isReady: async (baseUrl) => (await request(baseUrl, 'GET', '/health')).status === 200,
  });
  try {
    // The warning may reach the pipe after /health already answers: wait for it.
    const warning = /media URLs pointing at this gateway will not load: set cdn\.public_url/;
    await until('the gateway\'s warning about media URLs', async () => warning.test(lone.output()));
  } finally {
    await lone.stop();
  }
  const cdn = spawnSync(nodeBinary(), ['serve', '--data-dir', path.join(dir, 'lone-cdn'), '--services', 'cdn'],
                        { encoding: 'utf8', timeout: 30000 });
  assert.equal(cdn.status, 1, `a cdn without the gateway or cdn.port: ${cdn.status}\n${cdn.stderr}`);
  assert.match(cdn.stderr, /nothing would serve media: set cdn\.port/);
});
