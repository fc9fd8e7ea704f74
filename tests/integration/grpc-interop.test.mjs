// Interop: a real gRPC client from npm (@grpc/grpc-js + @grpc/proto-loader) loads our .proto
// files and calls the node's AuthService, first over TCP (the auth address moved with
// GENERIA_RPC_AUTH_ADDRESS, which the gateway then also uses), then over the default unix
// socket in the data folder.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

import { UUID_RE, assertStatus, freePort, newAccount, startStack, unique } from './harness.mjs';

const PROTO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'node', 'proto');
const packageDefinition = protoLoader.loadSync(path.join(PROTO_DIR, 'auth.proto'), {
  includeDirs: [PROTO_DIR],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const { AuthService } = grpc.loadPackageDefinition(packageDefinition).generia.auth.v1;

let stack;
let tcpTarget;
let clients = [];

before(async () => {
  tcpTarget = `127.0.0.1:${await freePort()}`;
  stack = await startStack({ env: { GENERIA_RPC_AUTH_ADDRESS: tcpTarget } });
});

after(async () => {
  for (const c of clients) c.close();
  if (stack) await stack.stop();
});

function connect (target) {
  const c = new AuthService(target, grpc.credentials.createInsecure());
  clients.push(c);
  return c;
}

// Promise form of a unary call; resolves {response, metadata (initial)} or rejects with the
// grpc-js ServiceError (code, details, metadata = trailers).
function call (c, method, request, { metadata = new grpc.Metadata(), deadlineMs = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    let initial = null;
    const deadline = Date.now() + deadlineMs;
    const pending = c[method](request, metadata, { deadline }, (err, response) => {
      if (err) reject(err);
      else resolve({ response, metadata: initial });
    });
    pending.on('metadata', (m) => { initial = m; });
  });
}

function bearer (token) {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  return metadata;
}

// The call must fail with `code`, a non-empty message and (when given) trailer x-error-code.
async function assertRpcError (promise, code, errorCode, what) {
  let err = null;
  try {
    const { response } = await promise;
    assert.fail(`${what}: expected ${grpc.status[code]}, got a response ${JSON.stringify(response)}`);
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    err = e;
  }
  assert.equal(err.code, code, `${what}: expected ${grpc.status[code]}, got ${grpc.status[err.code]} (${err.details})`);
  assert.ok(typeof err.details === 'string' && err.details.length > 0, `${what}: empty status message`);
  if (errorCode !== undefined) {
    const trailer = err.metadata?.get('x-error-code') ?? [];
    assert.deepEqual(trailer.map(String), [errorCode], `${what}: trailer x-error-code`);
  }
  return err;
}

function assertSession (session, account) {
  assert.ok(session.access_token.length > 20, 'access_token');
  assert.ok(session.refresh_token.length >= 32, 'refresh_token');
  const nowUs = Date.now() * 1000;
  assert.ok(Number(session.access_expires_at_us) > nowUs, `access_expires_at_us ${session.access_expires_at_us} not in the future`);
  assert.ok(Number(session.refresh_expires_at_us) > Number(session.access_expires_at_us), 'refresh outlives access');
  assert.match(session.user.id, UUID_RE);
  assert.equal(session.user.username, account.username);
  assert.equal(session.user.email, account.email);
  assert.ok(Math.abs(Number(session.user.created_at_us) - nowUs) < 10 * 60 * 1e6, `created_at_us ${session.user.created_at_us}`);
}

describe('over TCP (GENERIA_RPC_AUTH_ADDRESS)', () => {
  let auth;
  const account = newAccount('grpc');
  let session;

  before(() => {
    auth = connect(tcpTarget);
  });

  test('Register returns a session; the request id comes back in initial metadata', async () => {
    const metadata = new grpc.Metadata();
    metadata.set('x-request-id', 'grpc-interop-register-1');
    const { response, metadata: initial } = await call(auth, 'Register', { ...account, client_name: 'interop test' }, { metadata });
    assertSession(response, account);
    session = response;
    assert.deepEqual(initial?.get('x-request-id').map(String), ['grpc-interop-register-1']);
  });

  test('Register errors: ALREADY_EXISTS username_taken, INVALID_ARGUMENT invalid_username/weak_password', async () => {
    await assertRpcError(call(auth, 'Register', { ...account, email: `${unique('x')}@example.test` }),
      grpc.status.ALREADY_EXISTS, 'username_taken', 'same username');
    await assertRpcError(call(auth, 'Register', { ...account, username: unique('y') }),
      grpc.status.ALREADY_EXISTS, 'email_taken', 'same email');
    await assertRpcError(call(auth, 'Register', { ...newAccount('z'), username: 'no' }),
      grpc.status.INVALID_ARGUMENT, 'invalid_username', 'short username');
    await assertRpcError(call(auth, 'Register', { ...newAccount('w'), password: 'short' }),
      grpc.status.INVALID_ARGUMENT, 'weak_password', 'short password');
  });

  test('the gateway reaches auth at the moved address: REST and gRPC see the same accounts', async () => {
    const restAccount = newAccount('rest');
    const res = await stack.api.post('/api/v1/auth/register', { json: restAccount });
    assertStatus(res, 201);
    const { response } = await call(auth, 'Login', { email_or_username: restAccount.email, password: restAccount.password });
    assert.equal(response.user.id, res.json().user.id);
    const rest = await stack.api.post('/api/v1/auth/login', { json: { email_or_username: account.username, password: account.password } });
    assertStatus(rest, 200);
    assert.equal(rest.json().user.id, session.user.id);
  });

  test('Login by username and e-mail; wrong password UNAUTHENTICATED, unknown user NOT_FOUND', async () => {
    for (const name of [account.username, account.email]) {
      const { response } = await call(auth, 'Login', { email_or_username: name, password: account.password });
      assertSession(response, account);
      assert.equal(response.user.id, session.user.id);
    }
    await assertRpcError(call(auth, 'Login', { email_or_username: account.username, password: 'not-the-password' }),
      grpc.status.UNAUTHENTICATED, 'wrong_password', 'wrong password');
    await assertRpcError(call(auth, 'Login', { email_or_username: unique('ghost'), password: 'whatever-password' }),
      grpc.status.NOT_FOUND, 'user_not_found', 'unknown user');
  });

  test('ValidateToken: valid for our token, not valid for a forged one', async () => {
    const { response: valid } = await call(auth, 'ValidateToken', { token: session.access_token });
    assert.equal(valid.valid, true);
    assert.equal(valid.user_id, session.user.id);
    assert.equal(valid.expires_at_us, session.access_expires_at_us);

    const [h, p, s] = session.access_token.split('.');
    const forged = `${h}.${p}.${s.startsWith('A') ? 'B' : 'A'}${s.slice(1)}`;
    for (const token of ['garbage', forged, session.refresh_token]) {
      const { response } = await call(auth, 'ValidateToken', { token });
      assert.equal(response.valid, false, `token ${token.slice(0, 20)}... validated`);
      assert.equal(response.user_id, '', 'an invalid token names no user');
    }
  });

  test('GetUserInfo needs the bearer token of that user', async () => {
    const { response } = await call(auth, 'GetUserInfo', { user_id: session.user.id }, { metadata: bearer(session.access_token) });
    assert.equal(response.id, session.user.id);
    assert.equal(response.username, account.username);
    assert.equal(response.email, account.email);
    assert.equal(response.created_at_us, session.user.created_at_us);

    await assertRpcError(call(auth, 'GetUserInfo', { user_id: session.user.id }),
      grpc.status.UNAUTHENTICATED, undefined, 'without authorization');
    await assertRpcError(call(auth, 'GetUserInfo', { user_id: session.user.id }, { metadata: bearer('not-a-token') }),
      grpc.status.UNAUTHENTICATED, undefined, 'with an invalid token');
    const other = (await call(auth, 'Register', newAccount('other'))).response;
    await assertRpcError(call(auth, 'GetUserInfo', { user_id: session.user.id }, { metadata: bearer(other.access_token) }),
      grpc.status.PERMISSION_DENIED, undefined, 'with another user\'s token');
  });

  test('GetUsersByIds and GetUserByUsername return public summaries', async () => {
    const other = (await call(auth, 'Register', newAccount('summ'))).response;
    const { response } = await call(auth, 'GetUsersByIds', { user_ids: [session.user.id, other.user.id] });
    const byId = new Map(response.users.map((u) => [u.id, u]));
    assert.equal(byId.size, 2, JSON.stringify(response));
    assert.equal(byId.get(session.user.id).username, account.username);
    assert.equal(byId.get(other.user.id).username, other.user.username);

    const { response: summary } = await call(auth, 'GetUserByUsername', { username: account.username });
    assert.equal(summary.id, session.user.id);
    assert.ok(!('email' in summary), 'UserSummary has no e-mail');
    await assertRpcError(call(auth, 'GetUserByUsername', { username: unique('ghost') }),
      grpc.status.NOT_FOUND, undefined, 'unknown username');
  });

  test('RefreshToken rotates; reuse is UNAUTHENTICATED refresh_token_reused; Logout revokes', async () => {
    const login = (await call(auth, 'Login', { email_or_username: account.username, password: account.password })).response;
    const rotated = (await call(auth, 'RefreshToken', { refresh_token: login.refresh_token })).response;
    assert.notEqual(rotated.refresh_token, login.refresh_token);
    await assertRpcError(call(auth, 'RefreshToken', { refresh_token: login.refresh_token }),
      grpc.status.UNAUTHENTICATED, 'refresh_token_reused', 'reused refresh token');
    await assertRpcError(call(auth, 'RefreshToken', { refresh_token: rotated.refresh_token }),
      grpc.status.UNAUTHENTICATED, undefined, 'newest token of a revoked family');

    const second = (await call(auth, 'Login', { email_or_username: account.username, password: account.password })).response;
    const { response: out } = await call(auth, 'Logout', { refresh_token: second.refresh_token });
    assert.equal(out.revoked, true);
    await assertRpcError(call(auth, 'RefreshToken', { refresh_token: second.refresh_token }),
      grpc.status.UNAUTHENTICATED, undefined, 'refresh after logout');
  });

  test('HealthCheck is SERVING', async () => {
    const { response } = await call(auth, 'HealthCheck', {});
    assert.equal(response.status, 'SERVING', JSON.stringify(response));
  });

  test('an unknown method or service is UNIMPLEMENTED', async () => {
    const raw = new grpc.Client(tcpTarget, grpc.credentials.createInsecure());
    clients.push(raw);
    for (const method of ['/generia.auth.v1.AuthService/NoSuchMethod', '/generia.nope.v1.NopeService/Anything']) {
      const err = await new Promise((resolve) => {
        raw.makeUnaryRequest(method, (b) => b, (b) => b, Buffer.alloc(0), new grpc.Metadata(),
          { deadline: Date.now() + 10000 }, (e) => resolve(e));
      });
      assert.ok(err, `${method} answered OK`);
      assert.equal(err.code, grpc.status.UNIMPLEMENTED, `${method}: ${grpc.status[err.code]} ${err.details}`);
    }
  });

  test('a 1 ms deadline is DEADLINE_EXCEEDED, and the server carries on', async () => {
    for (let i = 0; i < 5; i++) {
      await assertRpcError(call(auth, 'Login', { email_or_username: account.username, password: account.password }, { deadlineMs: 1 }),
        grpc.status.DEADLINE_EXCEEDED, undefined, '1 ms deadline');
    }
    const { response } = await call(auth, 'Login', { email_or_username: account.username, password: account.password });
    assert.equal(response.user.id, session.user.id);
  });

  test('a malformed request message is INVALID_ARGUMENT or INTERNAL, never a crash', async () => {
    const raw = new grpc.Client(tcpTarget, grpc.credentials.createInsecure());
    clients.push(raw);
    const err = await new Promise((resolve) => {
      raw.makeUnaryRequest('/generia.auth.v1.AuthService/Login', (b) => b, (b) => b,
        Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), new grpc.Metadata(), { deadline: Date.now() + 10000 },
        (e) => resolve(e));
    });
    assert.ok(err, 'a truncated protobuf was accepted');
    assert.ok([grpc.status.INVALID_ARGUMENT, grpc.status.INTERNAL].includes(err.code),
      `truncated protobuf: ${grpc.status[err.code]} ${err.details}`);
    const { response } = await call(auth, 'HealthCheck', {});
    assert.equal(response.status, 'SERVING');
  });
});

describe('over the default unix socket', () => {
  test('unix:<data-dir>/run/node.sock serves AuthService', async () => {
    await stack.restart({ env: {} });
    const sock = path.join(stack.dataDir, 'run', 'node.sock');
    assert.ok(fs.statSync(sock).isSocket(), `${sock} is not a socket`);
    const auth = connect(`unix:${sock}`);

    const { response: health } = await call(auth, 'HealthCheck', {});
    assert.equal(health.status, 'SERVING');
    const account = newAccount('unix');
    const { response: session } = await call(auth, 'Register', account);
    assertSession(session, account);
    const { response: login } = await call(auth, 'Login', { email_or_username: account.email, password: account.password });
    assert.equal(login.user.id, session.user.id);
    const { response: info } = await call(auth, 'GetUserInfo', { user_id: session.user.id }, { metadata: bearer(login.access_token) });
    assert.equal(info.username, account.username);
    await assertRpcError(call(auth, 'Login', { email_or_username: account.email, password: 'wrong-password' }),
      grpc.status.UNAUTHENTICATED, 'wrong_password', 'wrong password over unix');

    // The gateway now talks to auth over the socket too.
    const rest = await stack.api.post('/api/v1/auth/login', { json: { email_or_username: account.username, password: account.password } });
    assertStatus(rest, 200);
    assert.equal(rest.json().user.id, session.user.id);
  });
});
