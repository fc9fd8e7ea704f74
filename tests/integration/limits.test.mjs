// The gateway's edges against the real node: malformed and oversized bodies, content types,
// unknown routes and methods, CORS preflights, request ids, /health and /ready.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

import {
  PROBLEM, assertErrorBothWays, assertPlainError, assertProblem, assertStatus, freePort, makeTempDir,
  newAccount, psqlNumber, removeDir, startStack,
} from './harness.mjs';
import { makeTinyJpeg } from './media-fixtures.mjs';

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

  test('a body over 8 KiB on an auth route is 413 payload_too_large (Content-Length and chunked)', async () => {
    const { body } = registerBodyOfSize(8 * KIB + 1);
    assert.equal(body.length, 8 * KIB + 1);
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

  test('a body just under 8 KiB is accepted on an auth route', async () => {
    const { account, body } = registerBodyOfSize(8 * KIB - 100);
    const res = await api.post('/api/v1/auth/register', { body, headers: JSON_TYPE });
    assertStatus(res, 201, 'register body of almost 8 KiB');
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

// ---------------------------------------------------------------------------------------------
// Hostile input (issue 6): bounded parsing, text fields that never truncate.

const bearer = (user, headers = {}) => ({ Authorization: `Bearer ${user.token}`, ...headers });

async function registered (client, prefix, options = {}) {
  const account = newAccount(prefix);
  const res = await client.post('/api/v1/auth/register', { json: account, ...options });
  assertStatus(res, 201, `register ${account.username}`);
  const body = res.json();
  return { ...account, token: body.token, id: body.user.id };
}

function multipart (parts) {
  const boundary = `----generia${crypto.randomBytes(12).toString('hex')}`;
  const pieces = [];
  for (const { name, filename, contentType, value } of parts) {
    let head = `--${boundary}\r\nContent-Disposition: form-data; name="${name}"`;
    if (filename !== undefined) head += `; filename="${filename}"`;
    head += '\r\n';
    if (contentType) head += `Content-Type: ${contentType}\r\n`;
    pieces.push(Buffer.from(`${head}\r\n`, 'latin1'), Buffer.from(value), Buffer.from('\r\n'));
  }
  pieces.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(pieces), type: `multipart/form-data; boundary=${boundary}` };
}

const nested = (n) => '['.repeat(n) + ']'.repeat(n);

describe('hostile input', () => {
  let user;
  let tiny;
  let fixtureDir;
  const count = (sql) => psqlNumber(stack.pg.url, sql);
  const mediaOf = (u) => count(`SELECT count(*) FROM media.media WHERE user_id = '${u.id}'`);
  const postsOf = (u) => count(`SELECT count(*) FROM post.posts WHERE user_id = '${u.id}'`);

  before(async () => {
    user = await registered(api, 'hostile');
    fixtureDir = await makeTempDir('gn-limits-');
    tiny = makeTinyJpeg(fixtureDir);
  });

  after(async () => {
    if (fixtureDir) await removeDir(fixtureDir);
  });

  async function uploadTiny (u) {
    const { body, type } = multipart([{ name: 'file', filename: 'tiny.jpg', contentType: 'image/jpeg', value: tiny.bytes }]);
    const res = await api.post('/api/v1/media/upload', { body, headers: bearer(u, { 'Content-Type': type }) });
    assertStatus(res, 201, 'upload of tiny.jpg');
    return res.json().media_id;
  }

  async function assertStillServing () {
    assertStatus(await api.get('/health'), 200, '/health after the hostile request');
    assertStatus(await api.get('/api/v1/auth/me', { headers: bearer(user) }), 200, '/auth/me after the hostile request');
  }

  test('100,000 nested arrays on POST /api/v1/posts and /api/v1/media: refused, and the node still answers', async () => {
    const headers = { ...JSON_TYPE, ...PROBLEM, ...bearer(user) };
    // Over the route's 64 KiB: refused before a byte is parsed.
    let res = await api.post('/api/v1/posts', { body: `{"caption":${nested(100000)}}`, headers });
    assertProblem(res, 413, 'payload_too_large', '100,000 levels on /posts');
    // Within the limit, the guard refuses it before json-glib.
    res = await api.post('/api/v1/posts', { body: `{"caption":"x","media_id":${nested(30000)}}`, headers });
    assertProblem(res, 400, 'json_too_deep', '30,000 levels on /posts');
    assert.match(JSON.parse(res.text).detail, /deeper than 64/);
    // The base64 route takes megabytes of JSON.
    res = await api.post('/api/v1/media', { body: `{"media_data":${nested(100000)}}`, headers });
    assertProblem(res, 400, 'json_too_deep', '100,000 arrays on /media');
    res = await api.post('/api/v1/media', { body: '{"a":'.repeat(100000) + '1' + '}'.repeat(100000), headers });
    assertProblem(res, 400, 'json_too_deep', '100,000 objects on /media');
    res = await api.post('/api/v1/media', { body: nested(100000), headers, chunked: true });
    assertProblem(res, 400, 'json_too_deep', '100,000 arrays, chunked (spooled) on /media');
    await assertStillServing();
    // 64 levels are fine (the member is unknown and ignored).
    const account = newAccount('deep64');
    res = await api.post('/api/v1/auth/register', { body: JSON.stringify({ ...account, x: JSON.parse(nested(63)) }), headers: JSON_TYPE });
    assertStatus(res, 201, 'a register body nested 64 deep');
  });

  test('a NUL in a username is 400 and nothing is stored (escaped and raw)', async () => {
    for (const [what, body] of [
      ['\\u0000', (a) => JSON.stringify({ ...a, username: `${a.username}\u0000admin` })],
      ['raw NUL byte', (a) => `{"username":"${a.username}\u0000admin","email":"${a.email}","password":"${a.password}"}`],
    ]) {
      const account = newAccount('nul');
      const res = await api.post('/api/v1/auth/register', { body: body(account), headers: { ...JSON_TYPE, ...PROBLEM } });
      assertProblem(res, 400, 'nul_in_string', what);
      assert.equal(count(`SELECT count(*) FROM auth.users WHERE email = '${account.email}'`), 0, `${what}: a user row was stored`);
      const login = await api.post('/api/v1/auth/login', { json: { email_or_username: account.username, password: account.password } });
      assertStatus(login, 404, `${what}: the cut name must not exist`);
    }
  });

  test('invalid UTF-8 in JSON text is 400 invalid_utf8, nothing stored', async () => {
    const account = newAccount('utf');
    const raw = Buffer.concat([Buffer.from(`{"username":"${account.username}`), Buffer.from([0xff, 0xfe]),
                               Buffer.from(`","email":"${account.email}","password":"${account.password}"}`)]);
    let res = await api.post('/api/v1/auth/register', { body: raw, headers: { ...JSON_TYPE, ...PROBLEM } });
    assertProblem(res, 400, 'invalid_utf8', 'bytes ff fe');
    res = await api.post('/api/v1/auth/register', {
      body: `{"username":"${account.username}\\ud800","email":"${account.email}","password":"${account.password}"}`,
      headers: { ...JSON_TYPE, ...PROBLEM },
    });
    assertProblem(res, 400, 'invalid_utf8', 'a lone surrogate escape');
    assert.equal(count(`SELECT count(*) FROM auth.users WHERE email = '${account.email}'`), 0);
  });

  test('a NUL in a caption is 400 and no post is made (JSON); the media stays usable', async () => {
    const mediaId = await uploadTiny(user);
    const before = postsOf(user);
    const res = await api.post('/api/v1/posts', {
      json: { caption: 'visible\u0000hidden', media_id: mediaId }, headers: bearer(user, PROBLEM),
    });
    assertProblem(res, 400, 'nul_in_string', 'caption with \\u0000');
    assert.equal(postsOf(user), before, 'a post was stored');
    const ok = await api.post('/api/v1/posts', { json: { caption: 'visible', media_id: mediaId }, headers: bearer(user) });
    assertStatus(ok, 201, 'the same media with a clean caption');
  });

  test('multipart: a NUL or invalid UTF-8 in a field, or a file name that is not text, is 400 and nothing is stored', async () => {
    const before = mediaOf(user);
    const cases = [
      ['NUL in a caption field', [{ name: 'caption', value: Buffer.from('a\u0000b') }], 'invalid_text'],
      ['invalid UTF-8 in a field', [{ name: 'type', value: Buffer.from([0x69, 0xff]) }], 'invalid_text'],
      ['a file name with a control character', [], 'invalid_filename', 'ti\u0001ny.jpg'],
      ['a file name that is not UTF-8', [], 'invalid_filename', 'ti\u00ffny.jpg'],
    ];
    for (const [what, fields, code, filename = 'tiny.jpg'] of cases) {
      const { body, type } = multipart([...fields, { name: 'file', filename, contentType: 'image/jpeg', value: tiny.bytes }]);
      const res = await api.post('/api/v1/media/upload', { body, headers: bearer(user, { 'Content-Type': type, ...PROBLEM }) });
      assertProblem(res, 400, code, what);
    }
    assert.equal(mediaOf(user), before, 'a media row was stored');
  });

  test('query values: %00, invalid UTF-8, sloppy numbers and overlong values are refused', async () => {
    for (const query of ['cursor=%00', 'cursor=abc%00def', 'limit=5%00', 'cursor=%ff', 'cursor=%c3']) {
      assertProblem(await api.get(`/api/v1/feed?${query}`, { headers: PROBLEM }), 400, 'invalid_query', query);
    }
    for (const query of ['limit=+5', 'limit=5abc', 'limit=%205', 'offset=0x10', 'offset=-1', 'limit=1e2']) {
      assertProblem(await api.get(`/api/v1/feed?${query}`, { headers: PROBLEM }), 400, 'invalid_request', query);
    }
    assertProblem(await api.get(`/api/v1/feed?cursor=${'a'.repeat(2000)}`, { headers: PROBLEM }), 414, 'uri_too_long', 'a 2,000-byte cursor');
    const many = Array.from({ length: 40 }, (_, i) => `p${i}=1`).join('&');
    assertProblem(await api.get(`/api/v1/feed?${many}`, { headers: PROBLEM }), 400, 'too_many_query_parameters', '40 parameters');
    assertStatus(await api.get('/api/v1/feed?limit=5&offset=0'), 200, 'a normal page');
  });

  test('path parameters: %00, invalid UTF-8 and overlong values match nothing (404)', async () => {
    for (const p of ['/api/v1/posts/a%00b', '/api/v1/posts/%ff', '/api/v1/posts/%ed%a0%80',
                     `/api/v1/posts/${'a'.repeat(600)}`, `/api/v1${'/x'.repeat(1100)}`,
                     '/api/v1/media/%00', `/api/v1/users/${'%41'.repeat(600)}/posts`]) {
      assertProblem(await api.get(p, { headers: PROBLEM }), 404, 'not_found', p.slice(0, 60));
    }
  });

  test('signed upload URLs: expiry and signature parameters are parsed strictly', async () => {
    const id = crypto.randomUUID();
    for (const query of ['expires=12abc&signature=x', 'expires=%2B12&signature=x', 'expires=&signature=x', 'expires=1%00&signature=x']) {
      const res = await api.put(`/api/v1/media/${id}/content?${query}`, { body: tiny.bytes, headers: { 'Content-Type': 'image/jpeg', ...PROBLEM } });
      assert.ok([400, 403].includes(res.status), `${query}: ${res.status} ${res.text}`);
    }
  });

  test('per-route body limits: 413 over 64 KiB on JSON routes', async () => {
    const padding = 'p'.repeat(64 * KIB);
    for (const [route, json] of [
      ['/api/v1/posts', { caption: 'x', media_id: crypto.randomUUID(), padding }],
      ['/api/v1/media/upload-url', { filename: 'a.jpg', content_type: 'image/jpeg', size: 10, padding }],
      ['/api/v1/media/confirm', { media_id: crypto.randomUUID(), padding }],
    ]) {
      assertProblem(await api.post(route, { json, headers: bearer(user, PROBLEM) }), 413, 'payload_too_large', route);
    }
    await assertStillServing();
  });

  test('an overlong bearer token is 401, a User-Agent that is not UTF-8 does not break register', async () => {
    const res = await api.get('/api/v1/auth/me', { headers: { Authorization: `Bearer ${'a'.repeat(5000)}`, ...PROBLEM } });
    assertProblem(res, 401, 'invalid_token', '5,000-character token');
    const account = newAccount('agent');
    const reg = await api.post('/api/v1/auth/register', { json: account, headers: { 'User-Agent': 'Browser \u00ff\u00fe' } });
    assertStatus(reg, 201, 'register with a Latin-1 User-Agent');
  });
});

// ---------------------------------------------------------------------------------------------
// Rate limits: the built-in defaults for sign-in (burst 10, 30 a minute per address) and a small
// write budget (5, then one every 10 s per user) so the test stays short.

describe('rate limits', () => {
  let rl;

  before(async () => {
    rl = await startStack({ args: ['--set', 'ratelimit.write_burst=5', '--set', 'ratelimit.write_per_minute=6'] });
  });

  after(async () => {
    if (rl) await rl.stop();
  });

  const login = (address, name = 'nobody_here') => rl.api.post('/api/v1/auth/login', {
    json: { email_or_username: name, password: 'some-password' }, headers: PROBLEM, localAddress: address,
  });

  test('a burst of logins from one address gets 429 with Retry-After; another address still gets in', async () => {
    const statuses = [];
    let refused = null;
    for (let i = 0; i < 16; i++) {
      const res = await login('127.0.0.2');
      statuses.push(res.status);
      if (res.status === 429) refused ??= res;
    }
    // The burst reaches the auth service (404: no such user); then at most a refill or two.
    assert.deepEqual(statuses.slice(0, 10), Array(10).fill(404), statuses.join(','));
    assert.ok(statuses.filter((s) => s === 429).length >= 4, statuses.join(','));
    assertProblem(refused, 429, 'rate_limited', 'the refused login');
    const retryAfter = Number(refused.headers['retry-after']);
    assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 2, `Retry-After ${refused.headers['retry-after']}`);
    // Register and refresh draw on the same bucket of that address.
    const reg = await rl.api.post('/api/v1/auth/register', { json: newAccount('rl'), headers: PROBLEM, localAddress: '127.0.0.2' });
    assertProblem(reg, 429, 'rate_limited', 'register from the throttled address');
    const refresh = await rl.api.post('/api/v1/auth/refresh', { json: { refresh_token: 'x'.repeat(43) }, headers: PROBLEM, localAddress: '127.0.0.2' });
    assertProblem(refresh, 429, 'rate_limited', 'refresh from the throttled address');
    // Another client is not affected, and reads are not limited.
    assertStatus(await login('127.0.0.3'), 404, 'a login from 127.0.0.3');
    assertStatus(await rl.api.get('/api/v1/feed', { localAddress: '127.0.0.2' }), 200, 'a read from the throttled address');
    // After Retry-After the address gets in again.
    let again = await login('127.0.0.2');
    if (again.status === 429) {
      await new Promise((resolve) => setTimeout(resolve, Number(again.headers['retry-after']) * 1000 + 100));
      again = await login('127.0.0.2');
    }
    assertStatus(again, 404, 'a login after Retry-After');
  });

  test('writes are limited per user: the sixth quick write is 429, another user and reads are not', async () => {
    const first = await registered(rl.api, 'writer', { localAddress: '127.0.0.4' });
    const second = await registered(rl.api, 'writer', { localAddress: '127.0.0.4' });
    const statuses = [];
    let refused = null;
    for (let i = 0; i < 7; i++) {
      const res = await rl.api.delete(`/api/v1/posts/${crypto.randomUUID()}`, { headers: bearer(first, PROBLEM) });
      statuses.push(res.status);
      if (res.status === 429) refused ??= res;
    }
    assert.deepEqual(statuses.slice(0, 5), Array(5).fill(404), statuses.join(','));
    assert.ok(refused, `no 429 in ${statuses.join(',')}`);
    assertProblem(refused, 429, 'rate_limited', 'the sixth write');
    assert.ok(Number(refused.headers['retry-after']) >= 1, `Retry-After ${refused.headers['retry-after']}`);
    // A refused write with a body is not read, and the connection still answers.
    const post = await rl.api.post('/api/v1/posts', { json: { caption: 'x', media_id: crypto.randomUUID() }, headers: bearer(first, PROBLEM) });
    assertProblem(post, 429, 'rate_limited', 'a POST of the throttled user');
    assertStatus(await rl.api.delete(`/api/v1/posts/${crypto.randomUUID()}`, { headers: bearer(second) }), 404, 'the other user writes');
    assertStatus(await rl.api.get('/api/v1/auth/me', { headers: bearer(first) }), 200, 'the throttled user reads');
  });
});

// ---------------------------------------------------------------------------------------------
// Password hashing under load, and the gRPC edge (the auth service on TCP, called directly).

const PROTO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'node', 'proto');
const { AuthService } = grpc.loadPackageDefinition(protoLoader.loadSync(path.join(PROTO_DIR, 'auth.proto'), {
  includeDirs: [PROTO_DIR], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
})).generia.auth.v1;

function highWaterMarkBytes (pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmHWM:\s+(\d+) kB/m.exec(status);
  assert.ok(match, 'VmHWM in /proc/PID/status');
  return Number(match[1]) * 1024;
}

describe('password hashes and the gRPC edge', () => {
  const MIB = 1024 * 1024;
  let hs;
  let target;
  let grpcClient;

  before(async () => {
    target = `127.0.0.1:${await freePort()}`;
    hs = await startStack({ env: { GENERIA_RPC_AUTH_ADDRESS: target }, args: ['--set', 'auth.max_concurrent_hashes=1'] });
    grpcClient = new AuthService(target, grpc.credentials.createInsecure());
  });

  after(async () => {
    grpcClient?.close();
    if (hs) await hs.stop();
  });

  const rawCall = (method, bytes, deadlineMs = 5000) => new Promise((resolve) => {
    grpcClient.makeUnaryRequest(`/generia.auth.v1.AuthService/${method}`, (b) => b, (b) => b, bytes,
                                new grpc.Metadata(), { deadline: Date.now() + deadlineMs },
                                (err, response) => resolve({ err, response }));
  });
  const call = (method, request, deadlineMs = 5000) => new Promise((resolve) => {
    grpcClient[method](request, new grpc.Metadata(), { deadline: Date.now() + deadlineMs },
                       (err, response) => resolve({ err, response }));
  });
  const reason = (err) => String(err?.metadata?.get('x-error-code')?.[0] ?? '');

  // 201, or 503 busy (no hash slot in time), or 504 for a call that waited in the auth service's
  // worker queue (rpc.workers = 8 per service) until its deadline had passed.
  test('many concurrent registers: each 201, 503 busy or 504, and memory stays below the hash cap', async () => {
    const before = highWaterMarkBytes(hs.node.pid);
    const accounts = Array.from({ length: 24 }, () => newAccount('crowd'));
    const results = await Promise.all(accounts.map((account) => hs.api.post('/api/v1/auth/register', { json: account, headers: PROBLEM })));
    const statuses = results.map((r) => r.status);
    for (const res of results) {
      assert.ok([201, 503, 504].includes(res.status), `status ${res.status}: ${res.text}`);
      if (res.status === 503) {
        assertProblem(res, 503, 'busy', 'a register that found no hash slot');
        assert.equal(res.headers['retry-after'], '1');
      }
    }
    assert.ok(statuses.includes(201), statuses.join(','));
    const grown = highWaterMarkBytes(hs.node.pid) - before;
    // One argon2id hash (64 MiB) at a time, plus a margin; eight at once would be 512 MiB.
    assert.ok(grown < 64 * MIB + 64 * MIB, `peak RSS grew by ${(grown / MIB).toFixed(1)} MiB`);
    assertStatus(await hs.api.get('/health'), 200);
    const created = accounts.filter((_, i) => results[i].status === 201);
    assert.equal(psqlNumber(hs.pg.url, `SELECT count(*) FROM auth.users WHERE username IN (${created.map((a) => `'${a.username}'`).join(',') || "''"})`), created.length);
  });

  test('a call that finds no hash slot within its deadline fails RESOURCE_EXHAUSTED busy', async () => {
    // One slot, and an argon2id hash takes tens of milliseconds even on an idle machine: sixteen
    // calls of 500 ms cannot all find the slot in time.
    const results = await Promise.all(Array.from({ length: 16 }, () => call('Register', newAccount('rush'), 500)));
    const outcomes = results.map(({ err }) => (err ? `${err.code}:${reason(err)}` : 'ok'));
    assert.ok(outcomes.includes(`${grpc.status.RESOURCE_EXHAUSTED}:busy`), outcomes.join(','));
    for (const outcome of outcomes) {
      assert.ok(['ok', `${grpc.status.RESOURCE_EXHAUSTED}:busy`, `${grpc.status.DEADLINE_EXCEEDED}:`].includes(outcome), outcome);
    }
  });

  test('string fields with a NUL or invalid UTF-8 are INVALID_ARGUMENT before any handler', async () => {
    const account = newAccount('edge');
    let { err } = await call('Register', { ...account, username: `${account.username}\u0000x` });
    assert.equal(err?.code, grpc.status.INVALID_ARGUMENT, String(err));
    assert.equal(reason(err), 'nul_in_string');
    // username = "ab" + 0xff, written by hand: a JS string cannot hold it.
    ({ err } = await rawCall('Register', Buffer.from([0x0a, 0x03, 0x61, 0x62, 0xff])));
    assert.equal(err?.code, grpc.status.INVALID_ARGUMENT, String(err));
    assert.equal(reason(err), 'invalid_utf8');
    assert.equal(psqlNumber(hs.pg.url, `SELECT count(*) FROM auth.users WHERE email = '${account.email}'`), 0);
    ({ err } = await call('Register', account));
    assert.equal(err, null, 'the same account with a clean name registers');
  });
});

