// The gateway's edges against the real node: malformed and oversized bodies, content types,
// unknown routes and methods, CORS preflights, request ids, /health and /ready.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';

import {
  PROBLEM, assertErrorBothWays, assertPlainError, assertProblem, assertStatus, newAccount, startStack,
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

const KIB = 1024;
const JSON_TYPE = { 'Content-Type': 'application/json' };

// A syntactically valid register body of about `bytes` bytes (the padding field is unknown to
// the server and must be ignored).
function registerBodyOfSize (bytes) {
  const account = newAccount('big');
  const base = JSON.stringify({ ...account, padding: '' });
  return { account, body: JSON.stringify({ ...account, padding: 'p'.repeat(Math.max(0, bytes - base.length)) }) };
}

describe('request bodies', () => {
  test('malformed JSON is 400 invalid_json', async () => {
    for (const body of ['{', '{"username":', 'not json at all', '{"a":1}}', '\u0000\u0001']) {
      await assertErrorBothWays(
        (headers) => api.post('/api/v1/auth/register', { body, headers: { ...JSON_TYPE, ...headers } }),
        400, 'invalid_json', `body ${JSON.stringify(body)}`);
    }
  });

  test('an empty body on a JSON route is 400', async () => {
    const res = await api.post('/api/v1/auth/login', { body: '', headers: { ...JSON_TYPE, ...PROBLEM } });
    assertProblem(res, 400, ['invalid_json', 'invalid_request'], 'empty body');
  });

  test('a body over 64 KiB is 413 payload_too_large (Content-Length and chunked)', async () => {
    const { body } = registerBodyOfSize(64 * KIB + 1);
    assert.equal(body.length, 64 * KIB + 1);
    await assertErrorBothWays(
      (headers) => api.post('/api/v1/auth/register', { body, headers: { ...JSON_TYPE, ...headers } }),
      413, 'payload_too_large', 'with Content-Length');
    const huge = registerBodyOfSize(1024 * KIB).body;
    await assertErrorBothWays(
      (headers) => api.post('/api/v1/auth/login', { body: huge, chunked: true, headers: { ...JSON_TYPE, ...headers } }),
      413, 'payload_too_large', 'chunked, 1 MiB');
    // The node still serves after refusing them.
    assertStatus(await api.get('/health'), 200);
  });

  test('a body just under 64 KiB is accepted', async () => {
    const { account, body } = registerBodyOfSize(60 * KIB);
    const res = await api.post('/api/v1/auth/register', { body, headers: JSON_TYPE });
    assertStatus(res, 201, '60 KiB register body');
    assert.equal(res.json().user.username, account.username);
  });

  test('a JSON route refuses text/plain with 415', async () => {
    const account = newAccount('ctype');
    await assertErrorBothWays(
      (headers) => api.post('/api/v1/auth/register', {
        body: JSON.stringify(account), headers: { 'Content-Type': 'text/plain', ...headers },
      }),
      415, undefined, 'text/plain body');
    await assertErrorBothWays(
      (headers) => api.post('/api/v1/auth/login', {
        body: 'email_or_username=a&password=b', headers: { 'Content-Type': 'application/x-www-form-urlencoded', ...headers },
      }),
      415, undefined, 'form body');
    // Not registered by the refused request.
    const login = await api.post('/api/v1/auth/login', { json: { email_or_username: account.username, password: account.password } });
    assertStatus(login, 404, 'the account of the refused 415 request');
  });

  test('application/json with a charset parameter is accepted', async () => {
    const account = newAccount('charset');
    const res = await api.post('/api/v1/auth/register', {
      body: JSON.stringify(account), headers: { 'Content-Type': 'application/json; charset=utf-8' },
    });
    assertStatus(res, 201);
  });
});

describe('routing', () => {
  test('an unknown route is 404 not_found', async () => {
    for (const path of ['/api/v1/nope', '/api/v1/auth/me/extra', '/api/v2/auth/me', '/definitely/not/here']) {
      await assertErrorBothWays((headers) => api.get(path, { headers }), 404, 'not_found', `GET ${path}`);
    }
    await assertErrorBothWays((headers) => api.post('/api/v1/auth/nope', { json: {}, headers }), 404, 'not_found', 'POST unknown');
  });

  test('a wrong method on a known path is 405 with Allow', async () => {
    const cases = [
      ['GET', '/api/v1/auth/register', 'POST'],
      ['PUT', '/api/v1/auth/login', 'POST'],
      ['DELETE', '/api/v1/auth/me', 'GET'],
      ['POST', '/health', 'GET'],
    ];
    for (const [method, path, allowed] of cases) {
      const send = (headers) => api.request(method, path, method === 'GET' || method === 'DELETE'
        ? { headers } : { json: {}, headers });
      const plain = await send({});
      assertPlainError(plain, 405, `${method} ${path}`);
      const allow = (plain.headers.allow ?? '').split(',').map((m) => m.trim());
      assert.ok(allow.includes(allowed), `${method} ${path}: Allow "${plain.headers.allow}" lacks ${allowed}`);
      assert.ok(!allow.includes(method), `${method} ${path}: Allow "${plain.headers.allow}" lists the refused method`);
      const problem = await send({ ...PROBLEM });
      assertProblem(problem, 405, undefined, `${method} ${path}`);
      assert.ok(problem.headers.allow, `${method} ${path}: problem answer lacks Allow`);
    }
  });
});

describe('connections', () => {
  test('keep-alive: several requests, errors included, share one connection', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const account = newAccount('keepalive');
      const responses = [
        await api.get('/health', { agent }),
        await api.post('/api/v1/auth/register', { json: account, agent }),
        await api.get('/api/v1/nope', { agent }),
        await api.post('/api/v1/auth/login', { json: { email_or_username: account.username, password: 'wrong-password' }, agent }),
        await api.post('/api/v1/auth/login', { json: { email_or_username: account.username, password: account.password }, agent }),
      ];
      assert.deepEqual(responses.map((r) => r.status), [200, 201, 404, 401, 200]);
      for (const res of responses) {
        assert.notEqual(res.headers.connection, 'close', `${res.status} answered with Connection: close`);
      }
      const sockets = new Set(responses.map((r) => r.socket));
      assert.equal(sockets.size, 1, `the requests used ${sockets.size} connections`);
    } finally {
      agent.destroy();
    }
  });
});

describe('CORS', () => {
  const origin = 'http://web-client.example.test:3000';

  test('a preflight is answered 204 with the allow headers', async () => {
    // The web client's upload PUT goes to upload_url on the gateway, from another origin too.
    const uploadPath = `/api/v1/media/${crypto.randomUUID()}/content?expires=1&signature=x`;
    for (const [path, method] of [['/api/v1/auth/register', 'POST'], ['/api/v1/auth/me', 'GET'],
      ['/api/v1/posts', 'POST'], ['/api/v1/feed', 'GET'], [uploadPath, 'PUT']]) {
      const res = await api.options(path, {
        headers: {
          Origin: origin,
          'Access-Control-Request-Method': method,
          'Access-Control-Request-Headers': 'authorization, content-type',
        },
      });
      assertStatus(res, 204, `preflight ${path}`);
      const allowOrigin = res.headers['access-control-allow-origin'];
      assert.ok(allowOrigin === origin || allowOrigin === '*', `Access-Control-Allow-Origin: ${allowOrigin}`);
      const methods = (res.headers['access-control-allow-methods'] ?? '').toUpperCase();
      assert.ok(methods.includes(method), `Access-Control-Allow-Methods "${methods}" lacks ${method}`);
      const allowHeaders = (res.headers['access-control-allow-headers'] ?? '').toLowerCase();
      assert.ok(allowHeaders === '*' || (allowHeaders.includes('authorization') && allowHeaders.includes('content-type')),
        `Access-Control-Allow-Headers "${allowHeaders}" lacks authorization/content-type`);
      assert.ok(res.headers['x-request-id'], 'preflight without X-Request-Id');
    }
  });

  test('the real cross-origin request carries Access-Control-Allow-Origin too', async () => {
    const res = await api.post('/api/v1/auth/register', { json: newAccount('cors'), headers: { Origin: origin } });
    assertStatus(res, 201);
    const allowOrigin = res.headers['access-control-allow-origin'];
    assert.ok(allowOrigin === origin || allowOrigin === '*', `Access-Control-Allow-Origin: ${allowOrigin}`);
  });
});

describe('X-Request-Id', () => {
  test('every response carries one, and distinct requests get distinct ids', async () => {
    const responses = [
      await api.get('/health'),
      await api.get('/ready'),
      await api.get('/api/v1/nope'),
      await api.get('/api/v1/auth/register'),
      await api.get('/api/v1/auth/me'),
      await api.post('/api/v1/auth/register', { json: newAccount('rid') }),
      await api.post('/api/v1/auth/login', { body: '{', headers: JSON_TYPE }),
      await api.post('/api/v1/auth/login', { body: 'x'.repeat(65 * KIB), headers: JSON_TYPE }),
    ];
    const ids = responses.map((res) => {
      const id = res.headers['x-request-id'];
      assert.ok(typeof id === 'string' && id.length >= 8, `response ${res.status} has X-Request-Id ${JSON.stringify(id)}`);
      return id;
    });
    assert.equal(new Set(ids).size, ids.length, `request ids repeat: ${ids.join(' ')}`);
  });

  test('a sane incoming id is echoed, an unsafe one replaced', async () => {
    const sane = 'client-req-0123456789abcdef';
    const echoed = await api.get('/health', { headers: { 'X-Request-Id': sane } });
    assert.equal(echoed.headers['x-request-id'], sane);
    const onError = await api.get('/api/v1/nope', { headers: { 'X-Request-Id': sane } });
    assert.equal(onError.headers['x-request-id'], sane, 'echoed on errors as well');

    for (const unsafe of ['bad id with "quotes" <and> spaces', 'x'.repeat(1000)]) {
      const res = await api.get('/health', { headers: { 'X-Request-Id': unsafe } });
      const id = res.headers['x-request-id'];
      assert.ok(id && id !== unsafe, `unsafe request id echoed: ${JSON.stringify(id).slice(0, 80)}`);
      assert.ok(id.length <= 128, 'replacement id is long');
    }
  });
});

describe('service endpoints', () => {
  test('GET /health and GET /ready answer 200', async () => {
    assertStatus(await api.get('/health'), 200, '/health');
    assertStatus(await api.get('/ready'), 200, '/ready');
  });
});
