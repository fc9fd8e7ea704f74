// A node that heals and leaves nothing behind (embedded mode: the node runs its own PostgreSQL
// and Redis in its data folder).
//
// - kill -9 of the node: its PostgreSQL and Redis end by themselves within seconds, and every
//   write acknowledged before the kill is there after a restart on the same folder.
// - kill -9 of the embedded PostgreSQL, or of Redis, under load: while it is down requests get
//   fast 503s, never hang, and the node restarts it and serves again without a hand.
// - SIGTERM ends the node within node.shutdown_grace_ms + 5 s with uploads in flight (exit 0),
//   and with a statement stuck in PostgreSQL (the watchdog: exit 1); a second SIGTERM ends it at
//   once; either way the databases are shut down cleanly first.
// - The Redis the node starts obeys SIGTERM (it used to inherit the node's blocked signals).

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  assertStatus, client, makeTempDir, newAccount, postgresBin, processesUsing, removeDir, startNode,
} from './harness.mjs';
import { makeTinyJpeg } from './media-fixtures.mjs';

let dir;
let tiny;
const nodes = new Set();
const helpers = new Set();

before(async () => {
  dir = await makeTempDir('gn-heal-');
  tiny = makeTinyJpeg(dir);
});

after(async () => {
  for (const child of helpers) {
    try { child.kill('SIGKILL'); } catch {}
  }
  for (const node of nodes) {
    try { await node.stop(); } catch {}
  }
  // Whatever a failed test left must not outlive it.
  if (dir) {
    for (const proc of processesUsing(dir)) {
      try { process.kill(proc.pid, 'SIGKILL'); } catch {}
    }
    await removeDir(dir);
  }
});

async function launch (name, args = []) {
  const node = await startNode({ dataDir: path.join(dir, name), args });
  nodes.add(node);
  return node;
}

const isServer = (proc) => proc.comm === 'postgres' || proc.comm.startsWith('redis');

function servers (dataDir) {
  return processesUsing(dataDir).filter(isServer);
}

function describeProcs (procs) {
  return procs.map((p) => `  ${p.pid} ${p.comm} (${p.why}): ${p.cmdline}`).join('\n') || '  (none)';
}

// A zombie has ended: it only waits for its new parent (init) to reap it.
function alive (pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return false;
  }
}

// Everything the nodes of this file logged (harness.mjs appends it next to their data folders).
function fullLog () {
  return fs.readFileSync(path.join(dir, 'generia-node.log'), 'utf8');
}

async function until (what, check, ms, context = () => '') {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) assert.fail(`${what} did not happen within ${ms / 1000} s\n${context()}`);
    await sleep(50);
  }
}

// No PostgreSQL or Redis process of the folder runs any more.
async function assertNoServers (dataDir, ms, why) {
  let left = [];
  await until(`${why}: every server of ${dataDir} ending`, () => {
    left = servers(dataDir);
    return left.length === 0;
  }, ms, () => describeProcs(left));
}

function readPid (file) {
  return Number(fs.readFileSync(file, 'utf8').split('\n')[0]);
}

const postmasterPid = (node) => path.join(node.dataDir, 'postgres', 'postmaster.pid');
const redisPid = (node) => path.join(node.dataDir, 'redis', 'redis.pid');

function redisSocket (node) {
  const conf = fs.readFileSync(path.join(node.dataDir, 'redis', 'redis.conf'), 'utf8');
  return JSON.parse(conf.match(/^unixsocket (".*")$/m)[1]);
}

function redisPing (node) {
  const result = spawnSync('redis-cli', ['-s', redisSocket(node), 'ping'], { encoding: 'utf8' });
  return result.status === 0 && result.stdout.trim() === 'PONG';
}

// Resolves to {code, signal} when the node's process has ended.
function exited (node) {
  const child = node.process;
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

async function terminate (node, ms) {
  const started = Date.now();
  const result = await Promise.race([exited(node), sleep(ms).then(() => null)]);
  nodes.delete(node);
  assert.ok(result, `the node still ran ${ms / 1000} s after SIGTERM\n${node.output().slice(-3000)}`);
  return { ...result, ms: Date.now() - started };
}

async function register (api, prefix) {
  const account = newAccount(prefix);
  const res = await api.post('/api/v1/auth/register', { json: account });
  assertStatus(res, 201, `register ${account.username}`);
  return { ...account, token: res.json().token, id: res.json().user.id };
}

async function createPost (api, user, caption) {
  const auth = { Authorization: `Bearer ${user.token}` };
  const media = await api.post('/api/v1/media', {
    json: { media_data: tiny.bytes.toString('base64'), content_type: 'image/jpeg', filename: 'tiny.jpg' },
    headers: auth,
  });
  assertStatus(media, 201, 'base64 upload');
  const post = await api.post('/api/v1/posts', { json: { caption, media_id: media.json().media_id }, headers: auth });
  assertStatus(post, 201, `create post "${caption}"`);
  return post.json().id;
}

test('kill -9 of the node: its PostgreSQL and Redis stop, every acknowledged write survives', async () => {
  let node = await launch('killed');
  let api = client(node.baseUrl);
  const author = await register(api, 'author');
  const posts = [];
  for (let i = 0; i < 3; i++) {
    const caption = `kept ${i}`;
    posts.push({ id: await createPost(api, author, caption), caption });
  }

  // Registrations keep arriving while the node is killed; those answered 201 must survive.
  const acknowledged = [];
  let writing = true;
  const writer = async () => {
    while (writing) {
      const account = newAccount('inflight');
      try {
        const res = await api.post('/api/v1/auth/register', { json: account });
        if (res.status === 201) acknowledged.push(account);
      } catch {
        // the node died under this request: not acknowledged
      }
    }
  };
  const writers = Array.from({ length: 3 }, writer);
  await until('three acknowledged registrations', () => acknowledged.length >= 3, 60000, node.output);

  const before = servers(node.dataDir);
  assert.ok(before.some((p) => p.comm === 'postgres'), `no postgres runs:\n${describeProcs(before)}`);
  assert.ok(before.some((p) => p.comm.startsWith('redis')), `no redis-server runs:\n${describeProcs(before)}`);
  node.process.kill('SIGKILL');
  await exited(node);
  nodes.delete(node);
  writing = false;
  await Promise.all(writers);

  await assertNoServers(node.dataDir, 10000, 'after kill -9 of the node');
  await until('every server process of the killed node ending', () => before.every((p) => !alive(p.pid)), 5000,
    () => describeProcs(before.filter((p) => alive(p.pid))));

  node = await launch('killed');
  api = client(node.baseUrl);
  for (const account of acknowledged) {
    const login = await api.post('/api/v1/auth/login', { json: { email_or_username: account.username, password: account.password } });
    assertStatus(login, 200, `login of ${account.username}, acknowledged before the kill`);
  }
  for (const post of posts) {
    const res = await api.get(`/api/v1/posts/${post.id}`);
    assertStatus(res, 200, `post ${post.id} after the kill`);
    assert.equal(res.json().caption, post.caption);
  }
  const exit = await node.stop();
  nodes.delete(node);
  assert.equal(exit.code, 0, `exit on SIGTERM: ${JSON.stringify(exit)}\n${node.output().slice(-3000)}`);
  await assertNoServers(node.dataDir, 5000, 'after SIGTERM');
});

describe('a node whose servers die', () => {
  let node;
  let api;

  before(async () => {
    node = await launch('healing');
    api = client(node.baseUrl);
  });

  after(async () => {
    if (!node) return;
    const exit = await node.stop();
    nodes.delete(node);
    assert.equal(exit.code, 0, `exit on SIGTERM: ${JSON.stringify(exit)}\n${node.output().slice(-3000)}`);
    await assertNoServers(node.dataDir, 5000, 'after SIGTERM');
  });

  test('kill -9 of the embedded PostgreSQL under load: fast 503s, then it heals by itself', async () => {
    const user = await register(api, 'load');
    await createPost(api, user, 'before the crash');

    const results = [];
    let loading = true;
    const loader = (urlPath) => async () => {
      while (loading) {
        const at = Date.now();
        let status;
        try {
          status = (await api.get(urlPath)).status;
        } catch (err) {
          status = `error ${err.message}`;
        }
        results.push({ urlPath, status, at, ms: Date.now() - at });
        await sleep(10);
      }
    };
    const loaders = [loader('/api/v1/feed?limit=5'), loader('/api/v1/feed?limit=5'),
      loader(`/api/v1/users/${user.id}/posts`), loader('/ready')].map((f) => f());
    await sleep(500);

    const oldPid = readPid(postmasterPid(node));
    const killedAt = Date.now();
    process.kill(oldPid, 'SIGKILL');
    try {
      await until('PostgreSQL coming back (feed 200 and /ready 200 after the kill)', () => {
        const fresh = results.filter((r) => r.at > killedAt + 200);
        return fresh.some((r) => r.urlPath === '/ready' && r.status === 200) &&
               fresh.some((r) => r.urlPath.startsWith('/api/v1/feed') && r.status === 200);
      }, 30000, () => node.output().slice(-3000));
    } finally {
      loading = false;
      await Promise.all(loaders);
    }

    const unexpected = results.filter((r) => r.status !== 200 && r.status !== 503);
    assert.deepEqual(unexpected, [], 'answers other than 200 and 503');
    const failures = results.filter((r) => r.status === 503);
    assert.ok(failures.length > 0, `no request saw the outage (${results.length} requests)`);
    const slow = failures.filter((r) => r.ms > 3000);
    assert.deepEqual(slow, [], 'a 503 took longer than 3 s: the node waited instead of failing fast');
    const newPid = readPid(postmasterPid(node));
    assert.notEqual(newPid, oldPid, 'a new postmaster serves');
    const logged = [new RegExp(`embedded PostgreSQL \\(pid ${oldPid}\\) was killed by signal 9`),
      new RegExp(`embedded PostgreSQL restarted \\(pid ${newPid}\\)`)];
    await until('the node logging the death and the restart', () => logged.every((line) => line.test(fullLog())), 5000);

    // Every worker's connection recovered, not just one.
    const burst = await Promise.all(Array.from({ length: 24 }, () => api.get('/api/v1/feed?limit=5')));
    assert.deepEqual(burst.map((r) => r.status).filter((s) => s !== 200), [], 'feed after recovery');
    const login = await api.post('/api/v1/auth/login', { json: { email_or_username: user.username, password: user.password } });
    assertStatus(login, 200, 'login after recovery');
  });

  test('kill -9 of the embedded Redis: the node starts a new one and stays ready', async () => {
    const oldPid = readPid(redisPid(node));
    assert.ok(redisPing(node), 'Redis answers before the kill');
    process.kill(oldPid, 'SIGKILL');
    const readiness = [];
    await until('a new Redis answering', async () => {
      const ready = await api.get('/ready');
      readiness.push(ready.status);
      return fs.existsSync(redisPid(node)) && readPid(redisPid(node)) !== oldPid && redisPing(node);
    }, 20000, () => node.output().slice(-3000));
    assert.deepEqual(readiness.filter((s) => s !== 200), [], '/ready while Redis restarted');
    const deathLine = new RegExp(`embedded Redis \\(pid ${oldPid}\\) was killed by signal 9`);
    await until('the node logging that Redis died', () => deathLine.test(fullLog()), 5000);
  });

  test('the Redis the node started obeys SIGTERM (no inherited blocked signals)', async () => {
    const pid = readPid(redisPid(node));
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    assert.equal(status.match(/^SigBlk:\s*(\w+)$/m)[1], '0000000000000000', `Redis starts with blocked signals:\n${status}`);
    process.kill(pid, 'SIGTERM');
    await until(`Redis ${pid} ending on SIGTERM`, () => !alive(pid), 10000, () => node.output().slice(-3000));
    const exitLine = new RegExp(`embedded Redis \\(pid ${pid}\\) exited with status 0`);
    await until('the node logging that Redis exited', () => exitLine.test(fullLog()), 5000);
    // Supervised: it comes back.
    await until('a new Redis answering', () => fs.existsSync(redisPid(node)) && readPid(redisPid(node)) !== pid && redisPing(node),
      20000, () => node.output().slice(-3000));
  });
});

describe('SIGTERM stops the node within its bound', () => {
  const GRACE_MS = 1000;
  const BOUND_MS = GRACE_MS + 5000;
  const name = 'stopping';

  // A statement holding an exclusive lock on auth.users in the node's own PostgreSQL: every
  // register or login waits on it.
  async function blockUsersTable (node) {
    const conninfo = `host=${path.join(node.dataDir, 'run')} port=5432 dbname=generia user=generia`;
    const psql = spawn(postgresBin('psql'), ['-X', '-q', '-d', conninfo, '-c',
      'BEGIN; LOCK TABLE auth.users IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600);'], { stdio: 'ignore' });
    helpers.add(psql);
    await until('the lock on auth.users', () => {
      const check = spawnSync(postgresBin('psql'), ['-X', '-A', '-t', '-d', conninfo, '-c',
        "SELECT count(*) FROM pg_locks WHERE relation = 'auth.users'::regclass AND mode = 'AccessExclusiveLock' AND granted"],
      { encoding: 'utf8' });
      return check.stdout.trim() === '1';
    }, 20000);
    return psql;
  }

  // A register request that will hang on the lock; its fate does not matter.
  function stuckRegister (node) {
    const api = client(node.baseUrl);
    api.post('/api/v1/auth/register', { json: newAccount('stuck') }).catch(() => {});
  }

  async function checkStoppedCleanly (node) {
    await assertNoServers(node.dataDir, 3000, 'after the node exited');
    assert.ok(!fs.existsSync(postmasterPid(node)), 'PostgreSQL did not shut down cleanly (postmaster.pid is left)');
    assert.ok(!fs.existsSync(redisPid(node)), 'Redis did not shut down cleanly (redis.pid is left)');
  }

  test('uploads and requests in flight: exit 0 within the bound, databases stopped', async () => {
    const node = await launch(name, ['--set', `node.shutdown_grace_ms=${GRACE_MS}`]);
    const api = client(node.baseUrl);
    const user = await register(api, 'slow');
    const size = 1 << 20;
    const slot = await api.post('/api/v1/media/upload-url', {
      json: { filename: 'big.jpg', content_type: 'image/jpeg', size },
      headers: { Authorization: `Bearer ${user.token}` },
    });
    assertStatus(slot, 200, 'upload-url');

    // A presigned PUT and a multipart upload that send part of their body and then stall.
    const stalled = [];
    const stall = (url, method, headers, bytes) => {
      const req = http.request(new URL(url, node.baseUrl), { method, headers, agent: false });
      req.on('error', () => {});
      req.on('response', (res) => res.resume());
      req.write(Buffer.alloc(bytes, 0x41));
      stalled.push(req);
    };
    stall(slot.json().upload_url, 'PUT', { 'Content-Type': 'image/jpeg', 'Content-Length': String(size) }, 64 * 1024);
    stall('/api/v1/media/upload', 'POST', {
      'Content-Type': 'multipart/form-data; boundary=xyz',
      'Content-Length': String(size),
      Authorization: `Bearer ${user.token}`,
    }, 32 * 1024);
    const feeds = Array.from({ length: 8 }, () => api.get('/api/v1/feed?limit=5').catch(() => null));
    await sleep(300);

    node.process.kill('SIGTERM');
    const exit = await terminate(node, BOUND_MS + 5000);
    for (const req of stalled) req.destroy();
    await Promise.all(feeds);
    assert.equal(exit.code, 0, `exit status on SIGTERM: ${JSON.stringify(exit)}\n${node.output().slice(-3000)}`);
    assert.ok(exit.ms < BOUND_MS, `SIGTERM took ${exit.ms} ms, bound ${BOUND_MS} ms`);
    await checkStoppedCleanly(node);
  });

  test('a statement stuck in PostgreSQL: the watchdog ends the node after the bound, databases stopped', async () => {
    const node = await launch(name, ['--set', `node.shutdown_grace_ms=${GRACE_MS}`, '--set', 'rpc.deadline_ms=60000']);
    const psql = await blockUsersTable(node);
    stuckRegister(node);
    await sleep(500);

    const signalled = Date.now();
    node.process.kill('SIGTERM');
    const exit = await terminate(node, BOUND_MS + 10000);
    assert.equal(exit.code, 1, `a forced shutdown exits 1: ${JSON.stringify(exit)}\n${node.output().slice(-3000)}`);
    assert.match(node.output(), new RegExp(`shutdown did not finish within ${BOUND_MS} ms`));
    assert.ok(Date.now() - signalled >= BOUND_MS, 'the watchdog fired before its time');
    assert.ok(exit.ms < BOUND_MS + 5000, `SIGTERM took ${exit.ms} ms, bound ${BOUND_MS} ms + the databases' stop`);
    await checkStoppedCleanly(node);
    await until('psql ending with its server', () => psql.exitCode !== null || psql.signalCode !== null, 5000);
  });

  test('a second SIGTERM ends the node at once, databases stopped', async () => {
    const node = await launch(name, ['--set', 'node.shutdown_grace_ms=60000', '--set', 'rpc.deadline_ms=60000']);
    const psql = await blockUsersTable(node);
    stuckRegister(node);
    await sleep(500);

    node.process.kill('SIGTERM');
    await sleep(1000);
    assert.equal(node.process.exitCode, null, 'the node waits for its stuck call after one SIGTERM');
    node.process.kill('SIGTERM');
    const exit = await terminate(node, 10000);
    assert.equal(exit.code, 1, `exit status after a second SIGTERM: ${JSON.stringify(exit)}\n${node.output().slice(-3000)}`);
    assert.ok(exit.ms < 5000, `a second SIGTERM took ${exit.ms} ms`);
    assert.match(node.output(), /second SIGTERM: stopping the embedded servers and exiting now/);
    await checkStoppedCleanly(node);
    await until('psql ending with its server', () => psql.exitCode !== null || psql.signalCode !== null, 5000);
  });
});
