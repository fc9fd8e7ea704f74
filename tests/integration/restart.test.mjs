// A node restart keeps everything acknowledged: accounts live in PostgreSQL, and the token
// signing key in the data folder, so tokens issued before the restart stay valid after it.
// A restart with a 1 s access-token lifetime then shows that access tokens really expire.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { PROBLEM, assertProblem, assertStatus, newAccount, startStack } from './harness.mjs';

let stack;

before(async () => {
  stack = await startStack();
});

after(async () => {
  if (stack) await stack.stop();
});

test('accounts and tokens survive a restart of the node', async () => {
  const account = newAccount('restart');
  const registered = await stack.api.post('/api/v1/auth/register', { json: account });
  assertStatus(registered, 201);
  const session = registered.json();
  const before = await stack.api.get('/api/v1/auth/me', { headers: { Authorization: `Bearer ${session.token}` } });
  assertStatus(before, 200);
  const oldPid = stack.node.pid;

  const exit = await stack.restart();
  assert.equal(exit.code, 0, `the node must exit 0 on SIGTERM (signal ${exit.signal})`);
  assert.notEqual(stack.node.pid, oldPid, 'a new process serves after the restart');

  const login = await stack.api.post('/api/v1/auth/login', {
    json: { email_or_username: account.username, password: account.password },
  });
  assertStatus(login, 200, 'login after restart');
  const fresh = login.json();
  assert.equal(fresh.user.id, session.user.id);

  const after = await stack.api.get('/api/v1/auth/me', { headers: { Authorization: `Bearer ${fresh.token}` } });
  assertStatus(after, 200, '/me after restart');
  assert.deepEqual(after.json(), before.json(), '/me returns the same user after the restart');

  const oldToken = await stack.api.get('/api/v1/auth/me', { headers: { Authorization: `Bearer ${session.token}` } });
  assertStatus(oldToken, 200, 'an access token issued before the restart');
  assert.equal(oldToken.json().id, session.user.id);

  const refreshed = await stack.api.post('/api/v1/auth/refresh', { json: { refresh_token: session.refresh_token } });
  assertStatus(refreshed, 200, 'a refresh token issued before the restart');

  const duplicate = await stack.api.post('/api/v1/auth/register', { json: account });
  assertStatus(duplicate, 409, 'the username is still taken after the restart');
});

test('access tokens expire after auth.access_token_ttl; refreshing gives a working one', async () => {
  await stack.restart({ args: ['--set', 'auth.access_token_ttl=1'] });
  const account = newAccount('expiry');
  // auth.access_token_ttl is the lifetime for clients that refresh (API v1's get 24 h).
  const registered = await stack.api.post('/api/v1/auth/register', { json: { ...account, client_refreshes: true } });
  assertStatus(registered, 201);
  const session = registered.json();
  const expiresAt = Date.parse(session.expires_at);
  assert.ok(expiresAt - Date.now() <= 2000, `expires_at ${session.expires_at} ignores a 1 s TTL`);
  const me = (token, headers = {}) =>
    stack.api.get('/api/v1/auth/me', { headers: { Authorization: `Bearer ${token}`, ...headers } });
  assertStatus(await me(session.token), 200, 'a fresh token');

  await sleep(Math.max(0, expiresAt - Date.now()) + 1500);
  const expired = await me(session.token, PROBLEM);
  assertProblem(expired, 401, ['invalid_token', 'token_expired'], 'an expired access token');

  const refreshed = await stack.api.post('/api/v1/auth/refresh', { json: { refresh_token: session.refresh_token } });
  assertStatus(refreshed, 200, 'refresh with an expired access token');
  assertStatus(await me(refreshed.json().token), 200, 'the refreshed access token');
});
