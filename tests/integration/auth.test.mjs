// The auth REST endpoints of the gateway, end to end: HTTP -> gateway -> gRPC -> auth service
// -> PostgreSQL, against a private PostgreSQL, Redis and the real node (see harness.mjs).
// Every error is checked twice: as the default short text/plain message the original web client
// shows, and as RFC 9457 problem details with our machine-readable code.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  PROBLEM, UUID_RE, assertErrorBothWays, assertPlainError, assertProblem, assertStatus, assertTimestamp, newAccount,
  startStack, unique,
} from './harness.mjs';

let stack;
let api;

before(async () => {
  stack = await startStack();
  api = stack.api;
});

after(async () => {
  if (stack) await stack.stop();
});

const register = (account, headers = {}) => api.post('/api/v1/auth/register', { json: account, headers });
const login = (emailOrUsername, password, headers = {}) =>
  api.post('/api/v1/auth/login', { json: { email_or_username: emailOrUsername, password }, headers });
const me = (token, headers = {}) =>
  api.get('/api/v1/auth/me', { headers: token === undefined ? headers : { Authorization: `Bearer ${token}`, ...headers } });
const refresh = (refreshToken, headers = {}) =>
  api.post('/api/v1/auth/refresh', { json: { refresh_token: refreshToken }, headers });
const logout = (refreshToken, headers = {}) =>
  api.post('/api/v1/auth/logout', { json: { refresh_token: refreshToken }, headers });

function assertJson (res) {
  assert.match(res.headers['content-type'] ?? '', /^application\/json\b/, `expected application/json: ${res.text}`);
  return res.json();
}

// {token, refresh_token, expires_at}: the access token must be a signed JWT (three parts) and
// expire in the future, but not in the far future (access tokens are short-lived).
function assertTokens (body) {
  assert.equal(typeof body.token, 'string');
  assert.match(body.token, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/, `token is not a JWT: ${body.token}`);
  assert.equal(typeof body.refresh_token, 'string');
  assert.ok(body.refresh_token.length >= 32, `refresh token too short to carry 256 bits: ${body.refresh_token}`);
  assert.notEqual(body.refresh_token, body.token);
  const expires = assertTimestamp(body.expires_at, 'expires_at');
  assert.ok(expires > Date.now(), `expires_at ${body.expires_at} is in the past`);
  assert.ok(expires < Date.now() + 24 * 3600 * 1000, `access token lives longer than a day: ${body.expires_at}`);
}

function assertUser (user, account) {
  assert.match(user.id, UUID_RE, `user.id is not a UUID: ${user.id}`);
  assert.equal(user.username, account.username);
  assert.equal(user.email, account.email);
  const created = assertTimestamp(user.created_at, 'created_at');
  assert.ok(Math.abs(created - Date.now()) < 10 * 60 * 1000, `created_at ${user.created_at} is not now`);
  for (const key of Object.keys(user)) {
    assert.doesNotMatch(key, /password|hash|secret/i, `user object leaks ${key}`);
  }
}

async function registered (prefix = 'user') {
  const account = newAccount(prefix);
  const res = await register(account);
  assertStatus(res, 201, `register ${account.username}`);
  return { account, session: res.json() };
}

describe('register', () => {
  test('201 with tokens and the new user', async () => {
    const account = newAccount('reg');
    const res = await register(account);
    assertStatus(res, 201);
    const body = assertJson(res);
    assertTokens(body);
    assertUser(body.user, account);
    assert.ok(res.headers['x-request-id'], 'X-Request-Id missing');
  });

  test('two users get different ids and tokens', async () => {
    const a = await registered('twoa');
    const b = await registered('twob');
    assert.notEqual(a.session.user.id, b.session.user.id);
    assert.notEqual(a.session.token, b.session.token);
    assert.notEqual(a.session.refresh_token, b.session.refresh_token);
  });

  test('the same username again is 409 username_taken, also in other letter case', async () => {
    const { account } = await registered('dupname');
    const again = (username) => (headers) =>
      register({ username, email: `${unique('other')}@example.test`, password: account.password }, headers);
    await assertErrorBothWays(again(account.username), 409, 'username_taken', 'same username');
    await assertErrorBothWays(again(account.username.toUpperCase()), 409, 'username_taken', 'same username upper case');
  });

  test('the same e-mail again is 409 email_taken', async () => {
    const { account } = await registered('dupmail');
    await assertErrorBothWays(
      (headers) => register({ username: unique('fresh'), email: account.email, password: account.password }, headers),
      409, 'email_taken', 'same email');
  });

  test('invalid usernames are 400 invalid_username', async () => {
    for (const username of ['ab', 'a'.repeat(31), 'has space', 'dash-name', 'semi;colon', 'имя_юзера', '']) {
      await assertErrorBothWays(
        (headers) => register({ username, email: `${unique('iu')}@example.test`, password: 'long-enough-pw' }, headers),
        400, username === '' ? undefined : 'invalid_username', `username ${JSON.stringify(username)}`);
    }
  });

  test('usernames at the limits (3 and 30 characters of [a-z0-9_.]) are accepted', async () => {
    const short = unique('').replace(/[^a-z0-9]/g, '').slice(-3).padStart(3, 'x');
    const long = `${unique('long.name_')}${'z'.repeat(30)}`.slice(0, 30);
    for (const username of [short, long]) {
      const res = await register({ username, email: `${unique('lim')}@example.test`, password: 'long-enough-pw' });
      assertStatus(res, 201, `username ${username}`);
      assert.equal(res.json().user.username, username);
    }
  });

  test('invalid e-mails are 400 invalid_email', async () => {
    for (const email of ['not-an-email', 'a@', '@example.test', 'two@@example.test', 'spa ce@example.test']) {
      await assertErrorBothWays(
        (headers) => register({ username: unique('ie'), email, password: 'long-enough-pw' }, headers),
        400, 'invalid_email', `email ${JSON.stringify(email)}`);
    }
  });

  test('a password shorter than 8 characters is 400 weak_password', async () => {
    for (const password of ['', 'short', '1234567']) {
      await assertErrorBothWays(
        (headers) => register({ username: unique('wp'), email: `${unique('wp')}@example.test`, password }, headers),
        400, password === '' ? undefined : 'weak_password', `password of ${password.length}`);
    }
    const ok = await register({ username: unique('wp8'), email: `${unique('wp8')}@example.test`, password: '12345678' });
    assertStatus(ok, 201, 'password of exactly 8 characters');
  });

  test('missing fields are 400 invalid_request', async () => {
    const full = newAccount('miss');
    for (const field of ['username', 'email', 'password']) {
      const body = { ...full };
      delete body[field];
      await assertErrorBothWays((headers) => register(body, headers), 400, 'invalid_request', `without ${field}`);
    }
    await assertErrorBothWays((headers) => register({}, headers), 400, 'invalid_request', 'empty object');
    await assertErrorBothWays(
      (headers) => register({ ...full, password: 12345678 }, headers), 400, 'invalid_request', 'password as a number');
  });

  test('concurrent registrations of one name: exactly one 201, the rest 409', async () => {
    const account = newAccount('race');
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) =>
      register({ ...account, email: `${i}.${account.email}` })));
    const statuses = results.map((r) => r.status).sort();
    assert.deepEqual(statuses, [201, 409, 409, 409, 409, 409, 409, 409], results.map((r) => r.text).join('\n'));
  });

  test('long and non-ASCII passwords are kept whole', async () => {
    const account = { ...newAccount('longpw'), password: `пароль-🔑-${'x'.repeat(200)}` };
    assertStatus(await register(account), 201);
    assertStatus(await login(account.username, account.password), 200, 'the whole password');
    assertStatus(await login(account.username, account.password.slice(0, -1)), 401, 'the password minus its last character');
    assertStatus(await login(account.username, account.password.slice(0, 72)), 401, 'a 72-character prefix (no bcrypt-style truncation)');
  });

  test('malformed JSON is 400 invalid_json', async () => {
    await assertErrorBothWays(
      (headers) => api.post('/api/v1/auth/register', {
        body: '{"username": "x", "email": ', headers: { 'Content-Type': 'application/json', ...headers },
      }),
      400, 'invalid_json', 'truncated JSON');
  });
});

describe('login', () => {
  test('by username and by e-mail: 200, same shape as register, tokens work', async () => {
    const { account, session } = await registered('login');
    for (const name of [account.username, account.email]) {
      const res = await login(name, account.password);
      assertStatus(res, 200, `login as ${name}`);
      const body = assertJson(res);
      assertTokens(body);
      assertUser(body.user, account);
      assert.equal(body.user.id, session.user.id);
      assert.notEqual(body.refresh_token, session.refresh_token, 'every login starts a new refresh token');
      const who = await me(body.token);
      assertStatus(who, 200);
      assert.equal(who.json().id, session.user.id);
    }
  });

  test('wrong password is 401 wrong_password', async () => {
    const { account } = await registered('wrongpw');
    await assertErrorBothWays((headers) => login(account.username, `${account.password}x`, headers),
      401, 'wrong_password', 'wrong password');
    await assertErrorBothWays((headers) => login(account.email, 'another-password', headers),
      401, 'wrong_password', 'wrong password by email');
  });

  test('unknown user is 404 user_not_found', async () => {
    await assertErrorBothWays((headers) => login(unique('nobody'), 'whatever-password', headers),
      404, 'user_not_found', 'unknown username');
    await registered('quoted');
    for (const name of ["' OR '1'='1", '%', '_', '*']) {
      assertStatus(await login(name, 'whatever-password'), 404, `login as ${JSON.stringify(name)}`);
    }
    await assertErrorBothWays((headers) => login(`${unique('nobody')}@example.test`, 'whatever-password', headers),
      404, 'user_not_found', 'unknown email');
  });

  test('missing fields are 400 invalid_request, malformed JSON 400 invalid_json', async () => {
    await assertErrorBothWays(
      (headers) => api.post('/api/v1/auth/login', { json: { email_or_username: 'someone' }, headers }),
      400, 'invalid_request', 'login without password');
    await assertErrorBothWays(
      (headers) => api.post('/api/v1/auth/login', { json: { password: 'whatever-password' }, headers }),
      400, 'invalid_request', 'login without name');
    await assertErrorBothWays(
      (headers) => api.post('/api/v1/auth/login', { body: 'not json', headers: { 'Content-Type': 'application/json', ...headers } }),
      400, 'invalid_json', 'login with malformed JSON');
  });
});

describe('me', () => {
  test('200 with the bare user object', async () => {
    const { account, session } = await registered('me');
    const res = await me(session.token);
    assertStatus(res, 200);
    const user = assertJson(res);
    assert.equal(user.user, undefined, '/me must return the bare user, not {user: ...}');
    assertUser(user, account);
    assert.equal(user.id, session.user.id);
    assert.equal(user.created_at, session.user.created_at);
  });

  test('each token sees its own user', async () => {
    const a = await registered('mea');
    const b = await registered('meb');
    assert.equal((await me(a.session.token)).json().username, a.account.username);
    assert.equal((await me(b.session.token)).json().username, b.account.username);
  });

  test('without a token: 401 unauthorized', async () => {
    await assertErrorBothWays((headers) => me(undefined, headers), 401, 'unauthorized', 'no Authorization');
    await assertErrorBothWays((headers) => me(undefined, { Authorization: 'Basic dXNlcjpwYXNz', ...headers }),
      401, ['unauthorized', 'invalid_token'], 'Basic instead of Bearer');
  });

  test('a bad token: 401 invalid_token', async () => {
    const { session } = await registered('badtok');
    const [header, payload, signature] = session.token.split('.');
    const flipped = signature[5] === 'A' ? 'B' : 'A';
    const tamperedSignature = `${header}.${payload}.${signature.slice(0, 5)}${flipped}${signature.slice(6)}`;
    // The payload of another user under the first user's signature.
    const other = await registered('badtok2');
    const swappedPayload = `${header}.${other.session.token.split('.')[1]}.${signature}`;
    const unsigned = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${payload}.`;
    for (const [what, token] of [['garbage', 'garbage'], ['tampered signature', tamperedSignature],
      ['swapped payload', swappedPayload], ['alg none', unsigned], ['refresh token as access token', session.refresh_token]]) {
      await assertErrorBothWays((headers) => me(token, headers), 401, 'invalid_token', what);
    }
  });
});

describe('refresh', () => {
  test('rotates: new tokens work, the old refresh token does not', async () => {
    const { account, session } = await registered('rot');
    const res = await refresh(session.refresh_token);
    assertStatus(res, 200);
    const body = assertJson(res);
    assertTokens(body);
    assert.notEqual(body.refresh_token, session.refresh_token, 'the refresh token must rotate');
    const who = await me(body.token);
    assertStatus(who, 200);
    assert.equal(who.json().username, account.username);

    const again = await refresh(body.refresh_token);
    assertStatus(again, 200, 'the rotated token refreshes once');
    const stale = await refresh(session.refresh_token);
    assertStatus(stale, 401, 'the first refresh token after rotation');
  });

  test('reusing a rotated refresh token is refresh_token_reused and revokes the whole family', async () => {
    for (const asProblem of [false, true]) {
      const { account, session } = await registered(asProblem ? 'reusep' : 'reuse');
      const otherLogin = await login(account.username, account.password);
      assertStatus(otherLogin, 200);

      const second = (await refresh(session.refresh_token)).json();
      const third = await refresh(second.refresh_token);
      assertStatus(third, 200);
      const newest = third.json().refresh_token;

      const reuse = await refresh(session.refresh_token, asProblem ? PROBLEM : {});
      if (asProblem) {
        assertProblem(reuse, 401, 'refresh_token_reused', 'reuse');
      } else {
        assertPlainError(reuse, 401, 'reuse');
      }
      const newestAfter = await refresh(newest);
      assertStatus(newestAfter, 401, 'the newest token of the reused family');
      const middleAfter = await refresh(second.refresh_token);
      assertStatus(middleAfter, 401, 'a middle token of the reused family');

      // Another login of the same user is another family and keeps working.
      const other = await refresh(otherLogin.json().refresh_token);
      assertStatus(other, 200, 'another login of the same user');
      assertStatus(await me(other.json().token), 200);
    }
  });

  test('concurrent refreshes of one token: exactly one succeeds', async () => {
    const { session } = await registered('refrace');
    const results = await Promise.all(Array.from({ length: 6 }, () => refresh(session.refresh_token)));
    const ok = results.filter((r) => r.status === 200);
    assert.equal(ok.length, 1, `${ok.length} refreshes of one token succeeded`);
    for (const r of results) {
      assert.ok(r.status === 200 || r.status === 401, `refresh answered ${r.status}: ${r.text}`);
    }
  });

  test('an unknown refresh token is 401, a missing one 400 invalid_request', async () => {
    await assertErrorBothWays((headers) => refresh('this-is-not-a-refresh-token', headers), 401, undefined, 'unknown token');
    const { session } = await registered('rtjwt');
    await assertErrorBothWays((headers) => refresh(session.token, headers), 401, undefined, 'access token as refresh token');
    await assertErrorBothWays((headers) => api.post('/api/v1/auth/refresh', { json: {}, headers }),
      400, 'invalid_request', 'no refresh_token');
  });
});

describe('logout', () => {
  test('200 {success:true}, and that login family is dead', async () => {
    const { account, session } = await registered('logout');
    const otherLogin = (await login(account.email, account.password)).json();
    const rotated = (await refresh(session.refresh_token)).json();

    const res = await logout(rotated.refresh_token);
    assertStatus(res, 200);
    assert.deepEqual(assertJson(res).success, true);

    assertStatus(await refresh(rotated.refresh_token), 401, 'refresh after logout');
    assertStatus(await refresh(session.refresh_token), 401, 'an older token of the logged-out family');
    const other = await refresh(otherLogin.refresh_token);
    assertStatus(other, 200, 'another login of the same user survives the logout');
  });

  test('logout without a refresh token is 400 invalid_request', async () => {
    await assertErrorBothWays((headers) => api.post('/api/v1/auth/logout', { json: {}, headers }),
      400, 'invalid_request', 'logout without refresh_token');
  });
});
