// The generia-node command line: --help, --version, bad flags, and `migrate` against a private
// PostgreSQL (applied once, a second run changes nothing and still succeeds).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { makeTempDir, nodeBinary, postgresBin, removeDir, startPostgres } from './harness.mjs';

let pg;
let dir;

before(async () => {
  pg = await startPostgres();
  dir = await makeTempDir('gn-cli-');
});

after(async () => {
  if (pg) await pg.stop();
  if (dir) await removeDir(dir);
});

function generiaNode (...args) {
  const result = spawnSync(nodeBinary(), args, { encoding: 'utf8', timeout: 60000 });
  if (result.error) throw result.error;
  return result;
}

function psql (sql) {
  const result = spawnSync(postgresBin('psql'), [pg.url, '-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-c', sql], { encoding: 'utf8' });
  assert.equal(result.status, 0, `psql failed: ${result.stderr}`);
  return result.stdout.trim();
}

test('--version prints the version and exits 0', () => {
  const result = generiaNode('--version');
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stdout, /\b0\.\d+\.\d+\b/, `no version in ${JSON.stringify(result.stdout)}`);
});

test('--help names the commands, serve --help the options, both exit 0', () => {
  const top = generiaNode('--help');
  assert.equal(top.status, 0, top.stderr);
  for (const word of ['serve', 'migrate']) {
    assert.ok((top.stdout + top.stderr).includes(word), `--help does not mention ${word}:\n${top.stdout}${top.stderr}`);
  }
  const serve = generiaNode('serve', '--help');
  assert.equal(serve.status, 0, serve.stderr);
  for (const word of ['--data-dir', '--services', '--gateway-port', '--database-url', '--redis-url', '--set']) {
    assert.ok((serve.stdout + serve.stderr).includes(word), `serve --help does not mention ${word}:\n${serve.stdout}${serve.stderr}`);
  }
});

test('an unknown flag or command fails with a message', () => {
  for (const args of [['serve', '--no-such-flag'], ['no-such-command'], ['serve', '--services', 'auth,nope']]) {
    const result = generiaNode(...args, '--data-dir', path.join(dir, 'unused'));
    assert.notEqual(result.status, 0, `generia-node ${args.join(' ')} succeeded`);
    assert.ok(result.stderr.trim().length > 0, `generia-node ${args.join(' ')} failed without a message`);
  }
});

test('migrate creates the auth schema once and is idempotent', () => {
  const dataDir = path.join(dir, 'data');
  fs.mkdirSync(dataDir, { mode: 0o755 });
  const tables = "select count(*) from information_schema.tables where table_schema = 'auth'";
  assert.equal(psql(tables), '0', 'a fresh cluster has no auth schema');

  const first = generiaNode('migrate', '--data-dir', dataDir, '--database-url', pg.url);
  assert.equal(first.status, 0, `migrate failed:\n${first.stdout}${first.stderr}`);
  const created = Number(psql(tables));
  assert.ok(created > 0, 'migrate created no table in schema auth');
  const schemaBefore = psql("select string_agg(table_schema || '.' || table_name, ',' order by 1) " +
    "from information_schema.tables where table_schema not in ('pg_catalog', 'information_schema')");

  const second = generiaNode('migrate', '--data-dir', dataDir, '--database-url', pg.url);
  assert.equal(second.status, 0, `second migrate failed:\n${second.stdout}${second.stderr}`);
  const schemaAfter = psql("select string_agg(table_schema || '.' || table_name, ',' order by 1) " +
    "from information_schema.tables where table_schema not in ('pg_catalog', 'information_schema')");
  assert.equal(schemaAfter, schemaBefore, 'a second migrate changed the schema');
});
