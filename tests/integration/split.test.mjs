// Services in separate processes: `--services auth` in one generia-node, `--services gateway`
// in another, both told where auth listens (GENERIA_RPC_AUTH_ADDRESS) and sharing PostgreSQL,
// Redis and the data folder (the gateway verifies access tokens itself with the key kept
// there).  The REST API works across the two processes; when auth goes away the gateway says
// so (/ready and the auth routes answer 503) and recovers when auth comes back.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  PROBLEM, assertProblem, assertStatus, client, freePort, makeTempDir, newAccount, removeDir, startNode,
  startPostgres, startRedis, tcpAccepts,
} from './harness.mjs';

let pg;
let redis;
let dir;
let authNode;
let gatewayNode;
let authPort;
let common;

before(async () => {
  pg = await startPostgres();
  redis = await startRedis();
  dir = await makeTempDir('gn-split-');
  authPort = await freePort();
  common = {
    dataDir: path.join(dir, 'data'),
    databaseUrl: pg.url,
    redisUrl: redis.url,
    env: { GENERIA_RPC_AUTH_ADDRESS: `127.0.0.1:${authPort}` },
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
  ...common, args: ['--services', 'auth'], isReady: () => tcpAccepts('127.0.0.1', authPort),
});

async function until (what, check, ms = 15000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) assert.fail(`${what} did not happen within ${ms / 1000} s`);
    await sleep(100);
  }
}

test('a gateway process in front of an auth process', async () => {
  authNode = await startAuth();
  gatewayNode = await startNode({ ...common, args: ['--services', 'gateway'] });
  const api = client(gatewayNode.baseUrl);

  const account = newAccount('split');
  const registered = await api.post('/api/v1/auth/register', { json: account });
  assertStatus(registered, 201, 'register through the gateway process');
  const login = await api.post('/api/v1/auth/login', { json: { email_or_username: account.username, password: account.password } });
  assertStatus(login, 200);
  const me = await api.get('/api/v1/auth/me', { headers: { Authorization: `Bearer ${login.json().token}` } });
  assertStatus(me, 200);
  assert.equal(me.json().id, registered.json().user.id);

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
