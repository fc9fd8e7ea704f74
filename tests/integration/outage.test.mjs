// Readiness follows the node's dependencies: with PostgreSQL down, GET /ready answers 503 and
// the auth routes answer 503 (plain text by default, problem+json when asked) while /health
// stays 200; when PostgreSQL is back the node reconnects by itself and serves again.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { assertErrorBothWays, assertStatus, newAccount, startStack } from './harness.mjs';

let stack;

before(async () => {
  stack = await startStack();
});

after(async () => {
  if (stack) await stack.stop();
});

async function until (what, check, ms = 20000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) assert.fail(`${what} did not happen within ${ms / 1000} s\n${stack.node.output().slice(-3000)}`);
    await sleep(100);
  }
}

test('PostgreSQL down: /ready and auth answer 503; back up: the node recovers', async () => {
  const { api, pg } = stack;
  const account = newAccount('outage');
  assertStatus(await api.post('/api/v1/auth/register', { json: account }), 201);
  const loginBody = { email_or_username: account.username, password: account.password };

  pg.halt();
  try {
    await until('/ready turning 503', async () => (await api.get('/ready')).status === 503);
    assertStatus(await api.get('/health'), 200, '/health while PostgreSQL is down');
    await assertErrorBothWays((headers) => api.post('/api/v1/auth/login', { json: loginBody, headers }),
      503, undefined, 'login while PostgreSQL is down');
  } finally {
    pg.resume();
  }

  await until('/ready turning 200', async () => (await api.get('/ready')).status === 200);
  const login = await api.post('/api/v1/auth/login', { json: loginBody });
  assertStatus(login, 200, 'login after PostgreSQL came back');
  // Every worker's connection must have recovered, not just one: a burst of requests.
  const token = login.json().token;
  const results = await Promise.all(Array.from({ length: 32 }, () =>
    api.get('/api/v1/auth/me', { headers: { Authorization: `Bearer ${token}` } })));
  assert.deepEqual(results.map((r) => r.status).filter((s) => s !== 200), [], 'some /me requests failed after recovery');
});
