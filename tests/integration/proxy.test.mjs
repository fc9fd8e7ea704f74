// URLs that work from anywhere (issue 6): a node behind a reverse proxy, two nodes side by side,
// and presigned uploads refused before their body is read.
//
// Node A sits behind a real nginx (started here with its own config, on a free loopback port),
// which forwards to it with the node's own address as Host and the client's in
// X-Forwarded-Host/-Proto, as a host's nginx does; A trusts 127.0.0.1 as a proxy
// (gateway.trusted_proxies).  A client that knows the node as http://photos.test:<port> gets
// upload and media URLs under that base and loads everything through nginx.  Node B runs at the
// same time on another --gateway-port (no second fixed port left to clash on), trusts no proxy
// and serves its own media; it gives upload URLs one second of life, for the expired case.
// Both share one PostgreSQL and Redis and have their own data folders.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  assertStatus, client, filesUnder, freePort, makeTempDir, newAccount, psql, removeDir, request, sendWithheldBody,
  startNode, startPostgres, startRedis, tcpAccepts,
} from './harness.mjs';
import { isJpeg, makeFixtures } from './media-fixtures.mjs';

const PROXY_HOST = 'photos.test';
const FIFTY_MIB = 50 * 1024 * 1024;

let dir;
let pg;
let redis;
let nodeA;
let nodeB;
let nginx;
let fixtures;
let proxyPort;
let proxyBase;

// nginx in the foreground, one process, everything in `prefix`; resolves once it accepts.
async function startNginx (prefix, listenPort, upstreamPort) {
  const conf = path.join(prefix, 'nginx.conf');
  fs.writeFileSync(conf, `
daemon off;
master_process off;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log;
events { worker_connections 64; }
http {
  access_log ${prefix}/access.log;
  client_body_temp_path ${prefix}/client-body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  client_max_body_size 0;
  server {
    listen 127.0.0.1:${listenPort};
    server_name ${PROXY_HOST};
    location / {
      proxy_pass http://127.0.0.1:${upstreamPort};
      proxy_http_version 1.1;
      proxy_request_buffering off;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
  }
}
`);
  const output = [];
  const child = spawn('nginx', ['-p', prefix, '-e', `${prefix}/error.log`, '-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (c) => output.push(c));
  child.stderr.on('data', (c) => output.push(c));
  const deadline = Date.now() + 10000;
  while (!(await tcpAccepts('127.0.0.1', listenPort))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      const log = fs.existsSync(`${prefix}/error.log`) ? fs.readFileSync(`${prefix}/error.log`, 'utf8') : '';
      throw new Error(`nginx did not start (exit ${child.exitCode}):\n${Buffer.concat(output)}${log}`);
    }
    await sleep(50);
  }
  return {
    async stop () {
      if (child.exitCode !== null) return;
      child.kill('SIGQUIT');
      await new Promise((resolve) => child.once('exit', resolve));
    },
  };
}

before(async () => {
  dir = await makeTempDir('gn-proxy-');
  fs.mkdirSync(path.join(dir, 'fixtures'));
  fixtures = await makeFixtures(path.join(dir, 'fixtures'));
  pg = await startPostgres();
  redis = await startRedis();
  const common = { databaseUrl: pg.url, redisUrl: redis.url };
  nodeA = await startNode({ ...common, dataDir: path.join(dir, 'a', 'data'), args: ['--set', 'gateway.trusted_proxies=127.0.0.1'] });
  nodeB = await startNode({ ...common, dataDir: path.join(dir, 'b', 'data'), args: ['--set', 'media.upload_url_ttl=1'] });
  proxyPort = await freePort();
  proxyBase = `http://${PROXY_HOST}:${proxyPort}`;
  const prefix = path.join(dir, 'nginx');
  fs.mkdirSync(prefix);
  nginx = await startNginx(prefix, proxyPort, nodeA.port);
});

after(async () => {
  const failures = [];
  for (const stop of [() => nginx?.stop(), () => nodeA?.stop(), () => nodeB?.stop(), () => redis?.stop(), () => pg?.stop()]) {
    try { await stop(); } catch (err) { failures.push(err); }
  }
  if (dir) await removeDir(dir);
  if (failures.length) throw failures[0];
});

// A request through nginx as a client that knows the node as http://photos.test:<port>:
// `target` is a path or an absolute URL, which must then be under that base.
function viaProxy (method, target, { headers = {}, ...options } = {}) {
  if (/^https?:/.test(target)) {
    assert.ok(target.startsWith(`${proxyBase}/`), `${target} is not under the proxy's base ${proxyBase}`);
    target = target.slice(proxyBase.length);
  }
  return request(`http://127.0.0.1:${proxyPort}`, method, target, { ...options, headers: { Host: `${PROXY_HOST}:${proxyPort}`, ...headers } });
}

async function register (send) {
  const account = newAccount('proxy');
  const res = await send('POST', '/api/v1/auth/register', { json: account });
  assertStatus(res, 201, 'register');
  return { Authorization: `Bearer ${res.json().token}` };
}

async function uploadUrl (send, auth, fixture, size = fixture.bytes.length) {
  const res = await send('POST', '/api/v1/media/upload-url', {
    json: { filename: fixture.name, content_type: fixture.contentType, size }, headers: auth,
  });
  assertStatus(res, 200, 'upload-url');
  return res.json();
}

const nodeSend = (node) => (method, target, options) => request(node.baseUrl, method, target, options);

test('behind nginx with another Host: a presigned upload and the images load through the proxy\'s URLs', async () => {
  const auth = await register(viaProxy);
  const fixture = fixtures.exif;
  const slot = await uploadUrl(viaProxy, auth, fixture);
  assert.ok(slot.upload_url.startsWith(`${proxyBase}/api/v1/media/${slot.media_id}/content?`), `upload_url: ${slot.upload_url}`);

  const put = await viaProxy('PUT', slot.upload_url, { body: fixture.bytes, headers: { 'Content-Type': 'image/jpeg' } });
  assertStatus(put, 200, 'PUT through the proxy');
  const confirmed = await viaProxy('POST', '/api/v1/media/confirm', { json: { media_id: slot.media_id }, headers: auth });
  assertStatus(confirmed, 200, 'confirm through the proxy');
  for (const [name, url] of Object.entries(confirmed.json().variants)) {
    const image = await viaProxy('GET', url);
    assertStatus(image, 200, `variant ${name} through the proxy: ${url}`);
    assert.equal(image.headers['content-type'], 'image/jpeg');
    assert.ok(isJpeg(image.body), `variant ${name} is not a JPEG`);
  }

  const post = await viaProxy('POST', '/api/v1/posts', { json: { caption: 'through nginx', media_id: slot.media_id }, headers: auth });
  assertStatus(post, 201, 'post through the proxy');
  const feed = await viaProxy('GET', '/api/v1/feed');
  assertStatus(feed, 200);
  const shown = feed.json().posts.find((p) => p.id === post.json().id);
  assert.ok(shown, 'the post is in the feed');
  assertStatus(await viaProxy('GET', shown.media_url), 200, `media_url through the proxy: ${shown.media_url}`);

  // The proxy reached the node by its loopback address: X-Forwarded-Host made the URLs.
  const log = fs.readFileSync(path.join(dir, 'nginx', 'access.log'), 'utf8');
  assert.match(log, /PUT \/api\/v1\/media\/[0-9a-f-]+\/content\?/, 'nginx did not see the PUT');
  assert.match(log, /GET \/media\/[0-9a-f-]+\//, 'nginx did not see the image loads');
});

test('X-Forwarded-Host/-Proto are believed from trusted proxies only', async () => {
  const forwarded = { 'X-Forwarded-Host': 'photos.example', 'X-Forwarded-Proto': 'https' };
  const authA = await register(nodeSend(nodeA));
  const slotA = await uploadUrl(nodeSend(nodeA), { ...authA, ...forwarded }, fixtures.tiny);
  assert.ok(slotA.upload_url.startsWith('https://photos.example/api/v1/media/'), `trusted: ${slotA.upload_url}`);
  // B trusts nobody: its URLs name the Host the request came with.
  const authB = await register(nodeSend(nodeB));
  const slotB = await uploadUrl(nodeSend(nodeB), { ...authB, ...forwarded }, fixtures.tiny);
  assert.ok(slotB.upload_url.startsWith(`http://127.0.0.1:${nodeB.port}/api/v1/media/`), `untrusted: ${slotB.upload_url}`);
});

test('two nodes with different --gateway-port run side by side, each serving its media on its port', async () => {
  assert.notEqual(nodeA.port, nodeB.port);
  for (const node of [nodeA, nodeB]) {
    const api = client(node.baseUrl);
    const auth = await register(nodeSend(node));
    const uploaded = await api.post('/api/v1/media', {
      json: { media_data: fixtures.tiny.bytes.toString('base64'), content_type: 'image/jpeg', filename: 'tiny.jpg' }, headers: auth,
    });
    assertStatus(uploaded, 201, `upload on ${node.baseUrl}`);
    for (const [name, url] of Object.entries(uploaded.json().variants)) {
      assert.ok(url.startsWith(`${node.baseUrl}/media/`), `variant ${name} of ${node.baseUrl}: ${url}`);
      const image = await request(url, 'GET', url);
      assertStatus(image, 200, `variant ${name}: ${url}`);
      assert.ok(isJpeg(image.body));
    }
    assert.doesNotMatch(node.output(), /cdn listening/, 'a separate CDN listener was opened');
  }
});

// What a refused PUT may not leave: no file in the spool folder, no object, no row moved on.
function leftovers (node, mediaId) {
  return {
    spool: filesUnder(path.join(node.dataDir, 'spool')),
    objects: filesUnder(path.join(node.dataDir, 'media')).filter((f) => f.includes(mediaId)),
    state: psql(pg.url, `SELECT state FROM media.media WHERE id = '${mediaId}'`),
  };
}

function withParam (url, name, value) {
  const u = new URL(url);
  u.searchParams.set(name, value);
  return u;
}

test('a 50 MiB PUT to a forged or expired upload URL is 403 before its body is read; more than declared is 413', async () => {
  const auth = await register(nodeSend(nodeA));
  const slot = await uploadUrl(nodeSend(nodeA), auth, fixtures.exif);
  const signature = new URL(slot.upload_url).searchParams.get('signature');
  const headers = { 'Content-Type': 'image/jpeg' };
  const cases = {
    'a tampered signature': withParam(slot.upload_url, 'signature', signature.replace(/^./, (c) => (c === 'A' ? 'B' : 'A'))),
    'a larger size': withParam(slot.upload_url, 'size', String(FIFTY_MIB)),
    'no signature': withParam(slot.upload_url, 'signature', ''),
    'a random media id': new URL(slot.upload_url.replace(slot.media_id, crypto.randomUUID())),
  };
  for (const [what, url] of Object.entries(cases)) {
    const target = url.pathname + url.search;
    const waiting = await sendWithheldBody(nodeA.baseUrl, 'PUT', target, { declared: FIFTY_MIB, send: FIFTY_MIB, expectContinue: true, headers });
    assert.equal(waiting.status, 403, `${what}, Expect: 100-continue: ${waiting.status} ${waiting.text}`);
    assert.equal(waiting.continued, false, `${what}: the server asked for the body`);
    assert.equal(waiting.bodyBytesSent, 0);
    const eager = await sendWithheldBody(nodeA.baseUrl, 'PUT', target, { declared: FIFTY_MIB, send: 256 * 1024, headers });
    assert.equal(eager.status, 403, `${what}, 256 KiB of 50 MiB sent: ${eager.status} ${eager.text}`);
    assert.ok(eager.ms < 3000, `${what}: the refusal took ${eager.ms} ms`);
    const chunked = await sendWithheldBody(nodeA.baseUrl, 'PUT', target, { chunked: true, send: 256 * 1024, headers });
    assert.equal(chunked.status, 403, `${what}, chunked: ${chunked.status} ${chunked.text}`);
  }
  assert.deepEqual(leftovers(nodeA, slot.media_id), { spool: [], objects: [], state: [['pending']] }, 'after the forged PUTs');

  // The genuine URL with more bytes than it was signed for: 413 from the declared length before
  // reading, and as soon as a chunked body passes the size.
  const genuine = new URL(slot.upload_url);
  const declaredOver = await sendWithheldBody(nodeA.baseUrl, 'PUT', genuine.pathname + genuine.search,
                                              { declared: FIFTY_MIB, send: 256 * 1024, headers });
  assert.equal(declaredOver.status, 413, `declared 50 MiB: ${declaredOver.status} ${declaredOver.text}`);
  const streamedOver = await request(nodeA.baseUrl, 'PUT', genuine.pathname + genuine.search,
                                     { body: Buffer.alloc(fixtures.exif.bytes.length + 100000, 1), chunked: true, headers });
  assertStatus(streamedOver, 413, 'chunked past the signed size');
  assert.deepEqual(leftovers(nodeA, slot.media_id), { spool: [], objects: [], state: [['pending']] }, 'after the oversized PUTs');
  assertStatus(await request(nodeA.baseUrl, 'PUT', genuine.pathname + genuine.search, { body: fixtures.exif.bytes, headers }),
               200, 'the genuine PUT afterwards');

  // Node B gives upload URLs a second: once it passed, the refusal comes before the body too.
  const authB = await register(nodeSend(nodeB));
  const late = await uploadUrl(nodeSend(nodeB), authB, fixtures.exif);
  await sleep(2100);
  const lateUrl = new URL(late.upload_url);
  const expired = await sendWithheldBody(nodeB.baseUrl, 'PUT', lateUrl.pathname + lateUrl.search,
                                         { declared: FIFTY_MIB, send: 256 * 1024, headers: { ...headers, Accept: 'application/problem+json' } });
  assert.equal(expired.status, 403, `expired: ${expired.status} ${expired.text}`);
  assert.equal(JSON.parse(expired.text).code, 'upload_url_expired');
  assert.deepEqual(leftovers(nodeB, late.media_id), { spool: [], objects: [], state: [['pending']] }, 'after the expired PUT');
});
