// Embedded mode: a node started with no database or Redis URL, in a fresh data folder, runs
// its own PostgreSQL and Redis inside that folder, serves accounts, takes them down with it on
// SIGTERM, and finds its accounts again when started on the same folder.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  assertStatus, client, makeTempDir, newAccount, processesUsing, removeDir, startNode,
} from './harness.mjs';

let dir;
let dataDir;
let node;

before(async () => {
  dir = await makeTempDir('gn-emb-');
  dataDir = path.join(dir, 'data');
});

after(async () => {
  let failure = null;
  if (node) {
    try { await node.stop(); } catch (err) { failure = err; }
  }
  // Whatever the test left behind must not outlive it.
  if (dir && fs.existsSync(dataDir)) {
    for (const proc of processesUsing(dataDir)) {
      try { process.kill(proc.pid, 'SIGKILL'); } catch {}
    }
  }
  if (dir) await removeDir(dir);
  if (failure) throw failure;
});

const isServer = (proc) => proc.comm === 'postgres' || proc.comm.startsWith('redis');

function alive (pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code !== 'ESRCH';
  }
}

function describeProcs (procs) {
  return procs.map((p) => `  ${p.pid} ${p.comm} (${p.why}): ${p.cmdline}`).join('\n') || '  (none)';
}

// The embedded servers of the running node: at least one postgres and one redis-server.
function embeddedServers () {
  const procs = processesUsing(dataDir).filter((p) => p.pid !== node.pid);
  const postgres = procs.filter((p) => p.comm === 'postgres');
  const redis = procs.filter((p) => p.comm.startsWith('redis'));
  assert.ok(postgres.length > 0, `no postgres process uses ${dataDir}:\n${describeProcs(procs)}\n${node.output()}`);
  assert.ok(redis.length > 0, `no redis-server process uses ${dataDir}:\n${describeProcs(procs)}\n${node.output()}`);
  return [...postgres, ...redis];
}

// SIGTERM the node; it must exit 0 and leave no server of its data folder running.
async function stopAndCheckNothingRemains (servers) {
  const exit = await node.stop();
  const output = node.output();
  node = null;
  assert.equal(exit.code, 0, `generia-node exited with code ${exit.code} signal ${exit.signal} on SIGTERM:\n${output}`);
  // The node waits for its servers before it exits; allow a moment for the kernel to reap.
  let remaining = [];
  for (let i = 0; i < 20; i++) {
    remaining = processesUsing(dataDir).filter(isServer);
    if (remaining.length === 0 && servers.every((p) => !alive(p.pid))) break;
    await sleep(100);
  }
  assert.deepEqual(remaining, [], `servers still running after the node exited:\n${describeProcs(remaining)}`);
  const survivors = servers.filter((p) => alive(p.pid));
  assert.deepEqual(survivors, [], `embedded server processes survived the node:\n${describeProcs(survivors)}`);
}

test('a node without database/redis URLs runs its own, stops them, and keeps its data', async () => {
  assert.ok(!fs.existsSync(dataDir), 'the data folder starts fresh');
  node = await startNode({ dataDir });
  let api = client(node.baseUrl);

  const account = newAccount('embedded');
  const registered = await api.post('/api/v1/auth/register', { json: account });
  assertStatus(registered, 201, 'register on the embedded node');
  const userId = registered.json().user.id;
  const login = await api.post('/api/v1/auth/login', { json: { email_or_username: account.email, password: account.password } });
  assertStatus(login, 200, 'login on the embedded node');
  const me = await api.get('/api/v1/auth/me', { headers: { Authorization: `Bearer ${login.json().token}` } });
  assertStatus(me, 200);
  assert.equal(me.json().id, userId);

  const firstServers = embeddedServers();
  await stopAndCheckNothingRemains(firstServers);

  // Second start on the same folder: the cluster is reused, not created again.
  node = await startNode({ dataDir });
  api = client(node.baseUrl);
  const again = await api.post('/api/v1/auth/login', { json: { email_or_username: account.username, password: account.password } });
  assertStatus(again, 200, 'login after restarting the embedded node');
  assert.equal(again.json().user.id, userId);
  const meAgain = await api.get('/api/v1/auth/me', { headers: { Authorization: `Bearer ${again.json().token}` } });
  assertStatus(meAgain, 200);
  assert.deepEqual(meAgain.json(), me.json());
  const taken = await api.post('/api/v1/auth/register', { json: account });
  assertStatus(taken, 409, 'the account still exists in the embedded database');

  const secondServers = embeddedServers();
  await stopAndCheckNothingRemains(secondServers);
});
