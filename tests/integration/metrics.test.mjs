// GET /metrics over HTTP from a running node: the Prometheus text exposition parses (every
// sample belongs to a declared family, histogram buckets are cumulative and end in +Inf equal
// to _count), it is served with the exposition format's content type, and its counters move
// by exactly the requests the test makes.  Nothing else talks to this node while a test runs
// (the harness only polls /ready before the first one), so the differences are exact.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { assertStatus, newAccount, startStack } from './harness.mjs';

let stack;

before(async () => {
  stack = await startStack();
});

after(async () => {
  if (stack) await stack.stop();
});

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const SAMPLE_RE = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)$`);
const LABEL_RE = new RegExp(`^(${NAME})="((?:[^"\\\\]|\\\\.)*)"(?:,|$)`);

// Parses the text format strictly; throws on any line it does not understand.
// Returns {types: Map(family -> type), samples: [{name, labels, value}]}.
function parseExposition (text) {
  const types = new Map();
  const samples = [];
  assert.ok(text.endsWith('\n'), 'the exposition must end with a newline');
  for (const line of text.slice(0, -1).split('\n')) {
    if (line.startsWith('# HELP ')) continue;
    if (line.startsWith('# TYPE ')) {
      const [, , family, type] = line.split(' ');
      assert.match(type, /^(counter|gauge|histogram|summary|untyped)$/, `bad TYPE line: ${line}`);
      assert.ok(!types.has(family), `family ${family} declared twice`);
      types.set(family, type);
      continue;
    }
    const match = SAMPLE_RE.exec(line);
    assert.ok(match, `not a sample line: ${JSON.stringify(line)}`);
    const [, name, labelText = '', valueText] = match;
    const labels = {};
    for (let rest = labelText; rest !== '';) {
      const label = LABEL_RE.exec(rest);
      assert.ok(label, `bad labels in ${JSON.stringify(line)}`);
      labels[label[1]] = label[2].replace(/\\n/g, '\n').replace(/\\(.)/g, '$1');
      rest = rest.slice(label[0].length);
    }
    const value = valueText === '+Inf' ? Infinity : Number(valueText);
    assert.ok(!Number.isNaN(value), `bad value in ${JSON.stringify(line)}`);
    const family = [...types.keys()].find((f) => name === f || (types.get(f) === 'histogram' &&
      [`${f}_bucket`, `${f}_sum`, `${f}_count`].includes(name)));
    assert.ok(family, `sample ${name} has no # TYPE line before it`);
    samples.push({ name, family, labels, value });
  }
  return { types, samples };
}

// The value of the one sample `name` whose labels include `labels` (0 when there is none yet).
function valueOf (scrape, name, labels) {
  const found = scrape.samples.filter((s) => s.name === name &&
    Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.ok(found.length <= 1, `${name} ${JSON.stringify(labels)} matches ${found.length} samples`);
  return found.length === 1 ? found[0].value : 0;
}

async function scrape () {
  const res = await stack.api.get('/metrics');
  assertStatus(res, 200, 'GET /metrics');
  assert.match(res.headers['content-type'] ?? '', /^text\/plain; version=0\.0\.4\b/,
    'the content type of the Prometheus text format');
  return parseExposition(res.text);
}

test('GET /metrics parses, and its histograms are consistent', async () => {
  const result = await scrape();
  assert.equal(result.types.get('generia_http_requests_total'), 'counter');
  assert.equal(result.types.get('generia_http_request_duration_seconds'), 'histogram');
  assert.equal(result.types.get('generia_rpc_server_calls_total'), 'counter');
  assert.equal(result.types.get('process_start_time_seconds'), 'gauge');

  const started = valueOf(result, 'process_start_time_seconds', {});
  assert.ok(started <= Date.now() / 1000 && started > Date.now() / 1000 - 600,
    `process_start_time_seconds ${started} is not the last minutes`);
  assert.ok(valueOf(result, 'process_resident_memory_bytes', {}) > 1024 * 1024, 'resident memory');

  // Each histogram series: buckets cumulative, sorted by le, the last +Inf equal to _count.
  const series = new Map();
  for (const s of result.samples.filter((x) => result.types.get(x.family) === 'histogram')) {
    const { le, ...rest } = s.labels;
    const key = `${s.family} ${JSON.stringify(rest)}`;
    const entry = series.get(key) ?? { buckets: [], count: null };
    if (s.name.endsWith('_bucket')) entry.buckets.push([le === '+Inf' ? Infinity : Number(le), s.value]);
    if (s.name.endsWith('_count')) entry.count = s.value;
    series.set(key, entry);
  }
  assert.ok(series.size > 0, 'no histogram series at all (the readiness polls were requests)');
  for (const [key, { buckets, count }] of series) {
    for (let i = 1; i < buckets.length; i++) {
      assert.ok(buckets[i][0] > buckets[i - 1][0], `${key}: buckets out of order`);
      assert.ok(buckets[i][1] >= buckets[i - 1][1], `${key}: buckets not cumulative`);
    }
    assert.equal(buckets.at(-1)[0], Infinity, `${key}: no +Inf bucket`);
    assert.equal(buckets.at(-1)[1], count, `${key}: +Inf bucket differs from _count`);
  }
});

test('counters move by exactly the requests made', async () => {
  const { api } = stack;
  const health = { method: 'GET', route: '/health', status: '200' };
  const me401 = { method: 'GET', route: '/api/v1/auth/me', status: '401' };
  const register201 = { method: 'POST', route: '/api/v1/auth/register', status: '201' };

  const before = await scrape();
  for (let i = 0; i < 3; i++) assertStatus(await api.get('/health'), 200);
  assertStatus(await api.get('/api/v1/auth/me'), 401);
  assertStatus(await api.post('/api/v1/auth/register', { json: newAccount('metrics') }), 201);
  const after = await scrape();

  const moved = (name, labels) => valueOf(after, name, labels) - valueOf(before, name, labels);
  assert.equal(moved('generia_http_requests_total', health), 3, '/health requests counted');
  assert.equal(moved('generia_http_requests_total', me401), 1, 'the refused /me counted with its status');
  assert.equal(moved('generia_http_requests_total', register201), 1, 'register counted');
  assert.equal(moved('generia_http_request_duration_seconds_count', { method: 'GET', route: '/health' }), 3,
    '/health latency observations');
  const rpcNames = after.samples.filter((s) => s.name === 'generia_rpc_server_calls_total')
    .map((s) => `${s.labels.service}/${s.labels.method}/${s.labels.code}`);
  const register = after.samples.find((s) => s.name === 'generia_rpc_server_calls_total' &&
    /auth/i.test(s.labels.service) && s.labels.method === 'Register' && s.labels.code === 'OK');
  assert.ok(register, `no gRPC Register call counted; series: ${rpcNames.join(' ')}`);
  assert.equal(moved('generia_rpc_server_calls_total', { ...register.labels }), 1,
    'one Register call over gRPC');
});
