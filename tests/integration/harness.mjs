// harness.mjs - real servers for the integration tests.
//
// Every test file gets its own private world: a PostgreSQL cluster (initdb into a temp folder,
// unix socket only, fsync off), a Redis (unix socket only, no persistence) and the real
// generia-node built by meson (path from $GENERIA_NODE), with its gateway on a free TCP port and
// its data folder in the same temp folder.  Nothing is mocked: the tests speak HTTP to the
// gateway and gRPC to the services exactly as a client would.
//
// Failures are loud on purpose: a missing binary, a server that does not come up, a node that
// does not stop on SIGTERM all throw, with the server's own log attached, so a broken build can
// never look like a passing (or skipped) test.
//
// As root, PostgreSQL runs as the "postgres" system user (initdb refuses root): its folders are
// chowned to it and every temp folder is made traversable (0755).  Everything started here is
// registered for cleanup, and a last-resort 'exit' hook kills whatever a crashed test left.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const IS_ROOT = process.getuid() === 0;
const KEEP_TEMP = process.env.GENERIA_TEST_KEEP === '1';

// ---------------------------------------------------------------------------------------------
// Small utilities

export function nodeBinary () {
  const bin = process.env.GENERIA_NODE;
  if (!bin) {
    throw new Error('GENERIA_NODE is not set: it must name the generia-node executable ' +
                    '(meson test sets it; by hand: GENERIA_NODE=_build/node/generia-node)');
  }
  try {
    fs.accessSync(bin, fs.constants.X_OK);
  } catch (err) {
    throw new Error(`GENERIA_NODE=${bin} is not an executable file: ${err.message}`);
  }
  return path.resolve(bin);
}

// A free TCP port on 127.0.0.1: bind port 0, read the port, close.
export function freePort () {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// True when something accepts TCP connections on host:port.
export function tcpAccepts (host, port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
  });
}

// A temp folder other users can traverse (PostgreSQL runs as "postgres" when we are root).
// Removed by removeDir(), or at exit if a test crashed first.
export async function makeTempDir (prefix = 'gn-') {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
  await fsp.chmod(dir, 0o755);
  liveTempDirs.add(dir);
  return dir;
}

export async function removeDir (dir) {
  liveTempDirs.delete(dir);
  if (KEEP_TEMP) {
    console.error(`# GENERIA_TEST_KEEP=1: kept ${dir}`);
    return;
  }
  await fsp.rm(dir, { recursive: true, force: true });
}

function run (cmd, args, { asPostgres = false, env, allowFail = false } = {}) {
  const argv = asPostgres && IS_ROOT ? ['runuser', '-u', 'postgres', '--', cmd, ...args] : [cmd, ...args];
  const result = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', env: env ?? process.env });
  if (result.error) throw new Error(`${argv.join(' ')}: ${result.error.message}`);
  if (result.status !== 0 && !allowFail) {
    throw new Error(`${argv.join(' ')} exited with ${result.status}:\n${result.stdout}${result.stderr}`);
  }
  return result;
}

function waitForExit (child, ms) {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), ms);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
}

// What must not outlive the test process even if a test crashes before its after() hook.
const liveChildren = new Set();
const livePostgresDirs = new Set();
const liveTempDirs = new Set();
process.on('exit', () => {
  for (const child of liveChildren) {
    try { child.kill('SIGKILL'); } catch {}
  }
  for (const dir of livePostgresDirs) {
    run(postgresBin('pg_ctl'), ['-D', dir, '-m', 'immediate', '-w', 'stop'],
        { asPostgres: true, allowFail: true });
  }
  if (!KEEP_TEMP) {
    for (const dir of liveTempDirs) fs.rmSync(dir, { recursive: true, force: true });
  }
});

// Keeps the last bytes a child wrote to stdout/stderr for error messages.
class OutputTail {
  constructor (limit = 64 * 1024) {
    this.limit = limit;
    this.text = '';
  }

  push (chunk) {
    this.text += chunk.toString('utf8');
    if (this.text.length > this.limit) this.text = this.text.slice(-this.limit);
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP client: node:http rather than fetch, so tests control every header, can send chunked or
// oversized bodies, and still read a response the server sends before it read the whole body.

// `agent`: an http.Agent to reuse connections (default: a new connection per request).
// `localAddress`: the local address to connect from (e.g. 127.0.0.2, to be another client).
export function request (baseUrl, method, urlPath, { headers = {}, body, json, chunked = false, agent = false, localAddress } = {}) {
  const url = new URL(urlPath, baseUrl);
  let payload = body;
  const sendHeaders = { ...headers };
  if (json !== undefined) {
    payload = JSON.stringify(json);
    if (!Object.keys(sendHeaders).some((h) => h.toLowerCase() === 'content-type')) {
      sendHeaders['Content-Type'] = 'application/json';
    }
  }
  if (typeof payload === 'string') payload = Buffer.from(payload, 'utf8');
  if (payload !== undefined && !chunked) sendHeaders['Content-Length'] = String(payload.length);

  return new Promise((resolve, reject) => {
    let answered = false;
    const req = http.request(url, { method, headers: sendHeaders, agent, localAddress }, (res) => {
      answered = true;
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const raw = Buffer.concat(chunks);
        const text = raw.toString('utf8');
        resolve({
          status: res.statusCode,
          socket: res.socket,
          headers: res.headers,
          body: raw,
          text,
          json () {
            try {
              return JSON.parse(text);
            } catch (err) {
              throw new Error(`response ${res.statusCode} is not JSON (${err.message}): ${text.slice(0, 300)}`);
            }
          },
        });
      });
    });
    req.setTimeout(30000, () => req.destroy(new Error(`${method} ${urlPath}: no answer in 30 s`)));
    // A server may answer 413 and close before reading the rest of a large body: once a response
    // has arrived, a write error on the request side is expected, not a failure.
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    if (payload !== undefined) {
      if (chunked) {
        const piece = 8192;
        for (let i = 0; i < payload.length; i += piece) req.write(payload.subarray(i, i + piece));
      } else {
        req.write(payload);
      }
    }
    req.end();
  });
}

// A bound client: api.post('/api/v1/auth/login', {json: ...}).
export function client (baseUrl) {
  const call = (method) => (urlPath, options) => request(baseUrl, method, urlPath, options);
  return {
    baseUrl,
    get: call('GET'),
    post: call('POST'),
    put: call('PUT'),
    delete: call('DELETE'),
    options: call('OPTIONS'),
    request: (method, urlPath, options) => request(baseUrl, method, urlPath, options),
  };
}

// Sends a request whose body the server should refuse unread: the head, announcing `declared`
// body bytes (Content-Length; or chunked when `chunked`), then only the first `send` bytes, and
// waits for the answer without sending more.  With `expectContinue`, the head asks for
// "100 Continue" and no body byte is sent unless the server says 100.  Resolves to
// {status, headers, text, bodyBytesSent, continued, ms}; an answer that needs the rest of the
// body never comes, and the promise rejects after `timeoutMs`.
export function sendWithheldBody (baseUrl, method, urlPath, { declared, send = 0, chunked = false, expectContinue = false, headers = {}, timeoutMs = 10000 }) {
  const url = new URL(urlPath, baseUrl);
  const head = [`${method} ${url.pathname}${url.search} HTTP/1.1`, `Host: ${url.host}`];
  for (const [name, value] of Object.entries(headers)) head.push(`${name}: ${value}`);
  head.push(chunked ? 'Transfer-Encoding: chunked' : `Content-Length: ${declared}`);
  if (expectContinue) head.push('Expect: 100-continue');
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: url.hostname, port: Number(url.port) });
    let raw = Buffer.alloc(0);
    let bodyBytesSent = 0;
    let continued = false;
    let done = false;
    const timer = setTimeout(() => finish(new Error(`${method} ${urlPath}: no answer within ${timeoutMs} ms ` +
                                                    `(${bodyBytesSent} of ${declared} body bytes sent)`)), timeoutMs);
    const sendBody = () => {
      if (send <= 0) return;
      const piece = Buffer.alloc(send, 0x41);
      socket.write(chunked ? Buffer.concat([Buffer.from(`${send.toString(16)}\r\n`), piece, Buffer.from('\r\n')]) : piece);
      bodyBytesSent = send;
    };
    function finish (err, value) {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(value);
    }
    // One answer: the status line, headers and, by Content-Length, its body; a "100 Continue"
    // before it releases the withheld body.
    const parse = () => {
      for (;;) {
        const end = raw.indexOf('\r\n\r\n');
        if (end < 0) return;
        const lines = raw.subarray(0, end).toString('latin1').split('\r\n');
        const status = Number(lines[0].split(' ')[1]);
        const parsed = {};
        for (const line of lines.slice(1)) {
          const colon = line.indexOf(':');
          parsed[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
        }
        if (status === 100) {
          continued = true;
          raw = raw.subarray(end + 4);
          sendBody();
          continue;
        }
        const length = Number(parsed['content-length'] ?? 0);
        if (raw.length < end + 4 + length) return;
        const text = raw.subarray(end + 4, end + 4 + length).toString('utf8');
        finish(null, { status, headers: parsed, text, bodyBytesSent, continued, ms: Date.now() - started });
        return;
      }
    };
    socket.on('connect', () => {
      socket.write(head.join('\r\n') + '\r\n\r\n');
      if (!expectContinue) sendBody();
    });
    socket.on('data', (chunk) => {
      raw = Buffer.concat([raw, chunk]);
      parse();
    });
    // The server may close (even reset) the connection right after its answer.
    socket.on('error', (err) => { parse(); finish(err); });
    socket.on('close', () => { parse(); finish(new Error(`${method} ${urlPath}: closed without an answer`)); });
  });
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

// A PostgreSQL program (initdb, pg_ctl, psql) of the newest installed major version.
export function postgresBin (name) {
  const root = '/usr/lib/postgresql';
  let versions = [];
  try {
    versions = fs.readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  } catch {}
  for (const v of versions) {
    const candidate = path.join(root, v, 'bin', name);
    if (fs.existsSync(candidate)) return candidate;
  }
  throw new Error(`no ${name} under ${root}/*/bin: install the Debian package postgresql`);
}

export async function startPostgres () {
  const dir = await makeTempDir('gn-pg-');
  const dataDir = path.join(dir, 'data');
  const sockDir = path.join(dir, 'sock');
  const port = await freePort();
  const superuser = 'generia_test';
  await fsp.mkdir(dataDir, { mode: 0o700 });
  await fsp.mkdir(sockDir, { mode: 0o755 });
  if (IS_ROOT) run('chown', ['-R', 'postgres:postgres', dataDir, sockDir]);

  run(postgresBin('initdb'), ['-D', dataDir, '-U', superuser, '-A', 'trust', '-E', 'UTF8',
                              '--locale=C.UTF-8', '--no-sync'], { asPostgres: true });
  await fsp.appendFile(path.join(dataDir, 'postgresql.conf'), [
    '',
    '# generia integration tests',
    "listen_addresses = ''",
    `unix_socket_directories = '${sockDir}'`,
    `port = ${port}`,
    'fsync = off',
    'synchronous_commit = off',
    'full_page_writes = off',
    'max_connections = 100',
    '',
  ].join('\n'));
  const logFile = path.join(dir, 'postgres.log');
  if (IS_ROOT) run('chown', ['postgres:postgres', dir]);
  const started = run(postgresBin('pg_ctl'), ['-D', dataDir, '-l', logFile, '-w', '-t', '60', 'start'],
                      { asPostgres: true, allowFail: true });
  if (started.status !== 0) {
    const log = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '(no log)';
    throw new Error(`PostgreSQL did not start:\n${started.stdout}${started.stderr}\n${log}`);
  }
  livePostgresDirs.add(dataDir);

  return {
    dir,
    dataDir,
    sockDir,
    port,
    superuser,
    url: `host=${sockDir} port=${port} dbname=postgres user=${superuser}`,
    log: () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : ''),
    // Takes the server down and brings it back on the same socket (outage tests).
    halt () {
      run(postgresBin('pg_ctl'), ['-D', dataDir, '-m', 'fast', '-w', 'stop'], { asPostgres: true });
    },
    resume () {
      run(postgresBin('pg_ctl'), ['-D', dataDir, '-l', logFile, '-w', '-t', '60', 'start'], { asPostgres: true });
    },
    async stop () {
      run(postgresBin('pg_ctl'), ['-D', dataDir, '-m', 'fast', '-w', 'stop'], { asPostgres: true });
      livePostgresDirs.delete(dataDir);
      await removeDir(dir);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Redis

function redisCli (sock, ...args) {
  return run('redis-cli', ['-s', sock, ...args], { allowFail: true });
}

export async function startRedis () {
  const dir = await makeTempDir('gn-redis-');
  const sock = path.join(dir, 'redis.sock');
  const conf = path.join(dir, 'redis.conf');
  await fsp.writeFile(conf, [
    'port 0',
    `unixsocket ${sock}`,
    'unixsocketperm 700',
    'save ""',
    'appendonly no',
    'daemonize no',
    `dir ${dir}`,
    'logfile ""',
    '',
  ].join('\n'));
  const output = new OutputTail();
  const child = spawn('redis-server', [conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  liveChildren.add(child);
  child.stdout.on('data', (c) => output.push(c));
  child.stderr.on('data', (c) => output.push(c));
  const spawnError = new Promise((_, reject) => child.once('error', reject));
  spawnError.catch(() => {});

  const deadline = Date.now() + 10000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}:\n${output.text}`);
    const ping = redisCli(sock, 'ping');
    if (ping.status === 0 && ping.stdout.trim() === 'PONG') break;
    if (Date.now() > deadline) throw new Error(`redis-server did not answer PING in 10 s:\n${output.text}`);
    await Promise.race([sleep(50), spawnError]);
  }

  return {
    dir,
    sock,
    url: `unix:${sock}`,
    pid: child.pid,
    async stop () {
      redisCli(sock, 'shutdown', 'nosave');
      const exited = await waitForExit(child, 10000);
      liveChildren.delete(child);
      if (!exited) {
        child.kill('SIGKILL');
        throw new Error(`redis-server did not exit after SHUTDOWN NOSAVE:\n${output.text}`);
      }
      await removeDir(dir);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// generia-node

// Starts `generia-node serve` and waits until GET /ready answers 200.
//   dataDir      the node's data folder (created if missing)
//   databaseUrl  libpq DSN, or undefined for the embedded PostgreSQL
//   redisUrl     "unix:/path", or undefined for the embedded Redis
//   env          extra environment (e.g. GENERIA_RPC_AUTH_ADDRESS)
//   args         extra command-line arguments
//   readyTimeoutMs
//   isReady      async (baseUrl) => bool, for a node without a gateway (default: GET /ready is 200)
export async function startNode ({ dataDir, databaseUrl, redisUrl, env = {}, args = [], readyTimeoutMs = 60000, isReady } = {}) {
  const bin = nodeBinary();
  await fsp.mkdir(dataDir, { recursive: true, mode: 0o755 });
  await fsp.chmod(dataDir, 0o755);
  const port = await freePort();
  const argv = ['serve', '--data-dir', dataDir, '--gateway-port', String(port)];
  if (databaseUrl) argv.push('--database-url', databaseUrl);
  if (redisUrl) argv.push('--redis-url', redisUrl);
  // Tests sign in and write far more often than a person: generous rate limits (still
  // enforced, so the admission path runs), unless the test sets any ratelimit.* key itself.
  if (!args.some((arg) => String(arg).startsWith('ratelimit.'))) {
    for (const setting of ['auth_burst=100000', 'auth_per_minute=6000000', 'write_burst=100000', 'write_per_minute=6000000']) {
      argv.push('--set', `ratelimit.${setting}`);
    }
  }
  argv.push(...args);

  const output = new OutputTail();
  const child = spawn(bin, argv, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  liveChildren.add(child);
  // The whole log also goes next to the data folder, kept with GENERIA_TEST_KEEP=1.
  const logFile = fs.createWriteStream(path.join(path.dirname(dataDir), 'generia-node.log'), { flags: 'a' });
  for (const stream of [child.stdout, child.stderr]) {
    stream.on('data', (c) => {
      output.push(c);
      logFile.write(c);
    });
  }
  child.once('close', () => logFile.end());
  let spawnFailure = null;
  child.once('error', (err) => { spawnFailure = err; });

  const baseUrl = `http://127.0.0.1:${port}`;
  const describe = () => `${bin} ${argv.join(' ')}`;
  const deadline = Date.now() + readyTimeoutMs;
  let lastProblem = 'no answer yet';
  for (;;) {
    if (spawnFailure) throw new Error(`cannot start ${describe()}: ${spawnFailure.message}`);
    if (child.exitCode !== null || child.signalCode !== null) {
      liveChildren.delete(child);
      throw new Error(`generia-node exited (code ${child.exitCode}, signal ${child.signalCode}) ` +
                      `before it was ready.\ncommand: ${describe()}\n--- its output ---\n${output.text}`);
    }
    try {
      if (isReady) {
        if (await isReady(baseUrl)) break;
        lastProblem = 'isReady() is false';
      } else {
        const res = await request(baseUrl, 'GET', '/ready');
        if (res.status === 200) break;
        lastProblem = `GET /ready answered ${res.status}: ${res.text.slice(0, 200)}`;
      }
    } catch (err) {
      lastProblem = err.message;
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      await waitForExit(child, 5000);
      liveChildren.delete(child);
      throw new Error(`generia-node was not ready within ${readyTimeoutMs / 1000} s (${lastProblem}).\n` +
                      `command: ${describe()}\n--- its output ---\n${output.text}`);
    }
    await sleep(100);
  }

  return {
    baseUrl,
    port,
    dataDir,
    pid: child.pid,
    process: child,
    output: () => output.text,
    // SIGTERM, then wait for the exit; throws if the node is still alive after timeoutMs.
    // Resolves to {code, signal}.
    async stop ({ timeoutMs = 30000 } = {}) {
      if (child.exitCode !== null || child.signalCode !== null) {
        liveChildren.delete(child);
        return { code: child.exitCode, signal: child.signalCode };
      }
      child.kill('SIGTERM');
      const exited = await waitForExit(child, timeoutMs);
      liveChildren.delete(child);
      if (!exited) {
        child.kill('SIGKILL');
        await waitForExit(child, 5000);
        throw new Error(`generia-node (pid ${child.pid}) still ran ${timeoutMs / 1000} s after SIGTERM.\n` +
                        `--- its output ---\n${output.text}`);
      }
      return exited;
    },
  };
}

// The usual world of a test file: private PostgreSQL + Redis + one node using them.
//   env, args: passed to the node (see startNode)
// Returns {baseUrl, api, node, pg, redis, dataDir, restart(opts), stop()}.
export async function startStack ({ env = {}, args = [] } = {}) {
  const dir = await makeTempDir('gn-node-');
  const cleanups = [];
  const stack = { dir, dataDir: path.join(dir, 'data') };
  try {
    stack.pg = await startPostgres();
    cleanups.push(() => stack.pg.stop());
    stack.redis = await startRedis();
    cleanups.push(() => stack.redis.stop());
    const nodeOptions = { dataDir: stack.dataDir, databaseUrl: stack.pg.url, redisUrl: stack.redis.url };
    stack.node = await startNode({ ...nodeOptions, env, args });
    stack.baseUrl = stack.node.baseUrl;
    stack.api = client(stack.baseUrl);

    // Stops the node (it must exit cleanly on SIGTERM) and starts it again on the same data
    // folder and servers; env/args replace the previous ones when given.
    stack.restart = async (options = {}) => {
      const exit = await stack.node.stop();
      if (exit.code !== 0) {
        throw new Error(`generia-node exited with code ${exit.code} signal ${exit.signal} on SIGTERM\n` +
                        stack.node.output());
      }
      stack.node = await startNode({ ...nodeOptions, env: options.env ?? env, args: options.args ?? args });
      stack.baseUrl = stack.node.baseUrl;
      stack.api = client(stack.baseUrl);
      return exit;
    };
  } catch (err) {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
    await removeDir(dir);
    throw err;
  }

  // Stops everything, always trying every step; the first failure is rethrown at the end.
  stack.stop = async () => {
    let firstError = null;
    const attempt = async (fn) => {
      try { await fn(); } catch (err) { firstError ??= err; }
    };
    await attempt(async () => {
      const exit = await stack.node.stop();
      if (exit.code !== 0) {
        throw new Error(`generia-node exited with code ${exit.code} signal ${exit.signal} on SIGTERM\n` +
                        stack.node.output());
      }
    });
    for (const cleanup of cleanups.reverse()) await attempt(cleanup);
    await attempt(() => removeDir(dir));
    if (firstError) throw firstError;
  };
  return stack;
}

// ---------------------------------------------------------------------------------------------
// Processes that belong to a data folder (embedded PostgreSQL / Redis of a node)

// Every live process whose command line, working folder or open files lie in `dir`.
// Returns [{pid, comm, why}].
export function processesUsing (dir) {
  const real = fs.realpathSync(dir);
  const inside = (p) => p === real || p.startsWith(real + '/') || p === dir || p.startsWith(dir + '/');
  const found = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const base = `/proc/${entry}`;
    try {
      const comm = fs.readFileSync(`${base}/comm`, 'utf8').trim();
      const cmdline = fs.readFileSync(`${base}/cmdline`, 'utf8').split('\0').join(' ');
      let why = null;
      if (cmdline.includes(real) || cmdline.includes(dir)) why = 'cmdline';
      if (!why) {
        try { if (inside(fs.readlinkSync(`${base}/cwd`))) why = 'cwd'; } catch {}
      }
      if (!why) {
        let fds = [];
        try { fds = fs.readdirSync(`${base}/fd`); } catch {}
        for (const fd of fds) {
          try {
            if (inside(fs.readlinkSync(`${base}/fd/${fd}`))) { why = `fd ${fd}`; break; }
          } catch {}
        }
      }
      if (why) found.push({ pid: Number(entry), comm, why, cmdline: cmdline.trim() });
    } catch {
      // the process ended while we looked at it
    }
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// Assertions shared by the test files


export const PROBLEM = { Accept: 'application/problem+json' };

export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const RFC3339_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

export function assertTimestamp (value, what) {
  assert.equal(typeof value, 'string', `${what} must be an RFC 3339 string, got ${JSON.stringify(value)}`);
  assert.match(value, RFC3339_RE, `${what} is not RFC 3339: ${value}`);
  assert.ok(!Number.isNaN(Date.parse(value)), `${what} does not parse: ${value}`);
  return Date.parse(value);
}

function describeResponse (res) {
  return `${res.status} ${res.headers['content-type'] ?? '(no content-type)'}: ${res.text.slice(0, 300)}`;
}

export function assertStatus (res, status, what = '') {
  assert.equal(res.status, status, `${what} expected ${status}, got ${describeResponse(res)}`);
}

// An error answered without asking for problem details: a short text/plain message, never JSON.
export function assertPlainError (res, status, what = '') {
  assertStatus(res, status, what);
  const type = res.headers['content-type'] ?? '';
  assert.match(type, /^text\/plain\b/, `${what} error body must be text/plain, got ${describeResponse(res)}`);
  const body = res.text.trim();
  assert.ok(body.length > 0, `${what} error body is empty`);
  assert.ok(body.length < 1000, `${what} error body is not a short message: ${body.length} bytes`);
  assert.ok(!body.startsWith('{') && !body.startsWith('['), `${what} plain error body looks like JSON: ${body}`);
}

// An error answered with Accept: application/problem+json: RFC 9457 fields and our code
// (`code`: the expected word, a list of acceptable words, or undefined for any stable word).
export function assertProblem (res, status, code, what = '') {
  assertStatus(res, status, what);
  const type = res.headers['content-type'] ?? '';
  assert.match(type, /^application\/problem\+json\b/, `${what} expected problem+json, got ${describeResponse(res)}`);
  const problem = res.json();
  assert.equal(typeof problem.type, 'string', `${what} problem.type missing: ${res.text}`);
  assert.equal(typeof problem.title, 'string', `${what} problem.title missing: ${res.text}`);
  assert.ok(problem.title.length > 0, `${what} problem.title is empty`);
  assert.equal(problem.status, status, `${what} problem.status must equal the HTTP status: ${res.text}`);
  assert.equal(typeof problem.detail, 'string', `${what} problem.detail missing: ${res.text}`);
  assert.equal(typeof problem.code, 'string', `${what} problem.code missing: ${res.text}`);
  assert.match(problem.code, /^[a-z][a-z0-9_]*$/, `${what} problem.code is not a stable word: ${problem.code}`);
  if (Array.isArray(code)) {
    assert.ok(code.includes(problem.code), `${what} problem.code ${problem.code} is not one of ${code.join(', ')}`);
  } else if (code !== undefined) {
    assert.equal(problem.code, code, `${what} problem.code: ${res.text}`);
  }
  return problem;
}

// Sends the same request twice, once plain and once asking for problem details, and checks
// both error forms.  `send(headers)` performs the request.
export async function assertErrorBothWays (send, status, code, what = '') {
  const plain = await send({});
  assertPlainError(plain, status, `${what} (plain)`);
  const problem = await send({ ...PROBLEM });
  return assertProblem(problem, status, code, `${what} (problem+json)`);
}

// A unique suffix so names never collide between tests or runs sharing a cluster.
let uniqueCounter = 0;
export function unique (prefix = 'u') {
  uniqueCounter += 1;
  return `${prefix}${process.pid.toString(36)}${uniqueCounter.toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`.slice(0, 30);
}

export function newAccount (prefix = 'user') {
  const username = unique(prefix.toLowerCase().replace(/[^a-z0-9_.]/g, '')).toLowerCase();
  return { username, email: `${username}@example.test`, password: `pw-${username}-long` };
}

// ---------------------------------------------------------------------------------------------
// SQL from the tests (psql against the stack's PostgreSQL)

// Runs one SQL statement with psql and returns its rows as arrays of strings (unaligned, no
// headers).  Tests use it to see what the services really wrote; parameters are not needed
// because every value comes from the test itself.
export function psql (conninfo, sql) {
  const result = run(postgresBin('psql'), ['-X', '-q', '-A', '-t', '-F', '\t', '-v', 'ON_ERROR_STOP=1',
                                           '-d', conninfo, '-c', sql]);
  return result.stdout.split('\n').filter((line) => line !== '').map((line) => line.split('\t'));
}

// The first column of the first row, as a number (SELECT count(*) ...).
export function psqlNumber (conninfo, sql) {
  const rows = psql(conninfo, sql);
  assert.ok(rows.length === 1, `${sql}: expected one row, got ${JSON.stringify(rows)}`);
  return Number(rows[0][0]);
}

// Every regular file below dir, as paths relative to it, sorted ([] if dir does not exist).
export function filesUnder (dir) {
  const found = [];
  const walk = (sub) => {
    let entries;
    try {
      entries = fs.readdirSync(path.join(dir, sub), { withFileTypes: true });
    } catch (err) {
      if (err.code === 'ENOENT') return;
      throw err;
    }
    for (const entry of entries) {
      const rel = sub === '' ? entry.name : `${sub}/${entry.name}`;
      if (entry.isDirectory()) walk(rel);
      else found.push(rel);
    }
  };
  walk('');
  return found.sort();
}

// ---------------------------------------------------------------------------------------------
// S3: a real SigV4-checking server (@20minutes/s3rver, in this process)

// Starts s3rver on a free port of 127.0.0.1 with the bucket created, objects kept in a temp
// folder.  s3rver checks SigV4 signatures (a wrong secret gets SignatureDoesNotMatch) with its
// built-in credentials S3RVER / S3RVER.
// s3rver accepts unsigned requests too, so every request is recorded (method, url, the
// Authorization and x-amz-content-sha256 headers, the answer's status) for tests to check that
// the node really signs.
// s3rver does not compare x-amz-content-sha256 with the body either (the signature covers only
// the header), so requests go through the front of tests/node/s3-server/front.mjs, which does
// what AWS does: a hex hash that is not the body's is refused with 400
// XAmzContentSHA256Mismatch before s3rver sees it; everything else passes unchanged.
// Returns {endpoint, bucket, dir, nodeArgs (the --set flags pointing a node at it),
//          objectKeys() (the bucket's keys, read from s3rver's folder), objectPath(key),
//          requests, halt() (the port stops accepting: S3 unreachable), resume(), stop()}.
export async function startS3 ({ bucket = 'generia' } = {}) {
  const { default: S3rver } = await import('@20minutes/s3rver');
  const { createPayloadCheckingFront } = await import('../node/s3-server/front.mjs');
  const dir = await makeTempDir('gn-s3-');
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    directory: dir,
    silent: true,
    configureBuckets: [{ name: bucket }],
  });
  const { port: s3rverPort } = await server.run();
  const requests = [];
  const front = createPayloadCheckingFront(s3rverPort, (req, res) => {
    const entry = {
      method: req.method,
      url: req.url,
      authorization: req.headers.authorization ?? null,
      contentSha256: req.headers['x-amz-content-sha256'] ?? null,
      status: null,
    };
    requests.push(entry);
    res.once('finish', () => { entry.status = res.statusCode; });
  });
  await new Promise((resolve, reject) => {
    front.once('error', reject);
    front.listen(0, '127.0.0.1', resolve);
  });
  const port = front.address().port;
  const endpoint = `http://127.0.0.1:${port}`;
  const objectSuffix = '._S3rver_object';
  return {
    endpoint,
    requests,
    port,
    bucket,
    dir,
    nodeArgs: [
      '--set', 'storage.backend=s3',
      '--set', `storage.s3_endpoint=${endpoint}`,
      '--set', `storage.s3_bucket=${bucket}`,
      '--set', 'storage.s3_access_key=S3RVER',
      '--set', 'storage.s3_secret_key=S3RVER',
    ],
    // Where s3rver keeps the bytes of an object.
    objectPath (key) {
      return path.join(dir, bucket, key + objectSuffix);
    },
    objectKeys () {
      return filesUnder(path.join(dir, bucket))
        .filter((file) => file.endsWith(objectSuffix))
        .map((file) => file.slice(0, -objectSuffix.length));
    },
    async halt () {
      const closed = new Promise((resolve) => front.close(resolve));
      front.closeAllConnections();
      await closed;
    },
    async resume () {
      await new Promise((resolve, reject) => {
        front.once('error', reject);
        front.listen(port, '127.0.0.1', resolve);
      });
    },
    async stop () {
      if (front.listening) await this.halt();
      await server.close();
      await removeDir(dir);
    },
  };
}
