// A test reporter for node's runner that writes flat TAP 13 for meson: one `ok`/`not ok` line
// per test, named "suite > test", and no indented subtests (node's own tap reporter nests them,
// which meson's TAP parser reports as unknown lines).  A suite appears only when it failed by
// itself (e.g. in a hook), not merely because a test in it failed, so no failure is lost or
// counted twice.  Errors and test output become `#` comments.
//   node --test --test-reporter=./tap-flat.mjs FILE

function comment (text) {
  return String(text).split('\n').map((line) => `# ${line}`).join('\n') + '\n';
}

function describeError (error) {
  const cause = error?.cause ?? error;
  if (!cause) return 'failed';
  const lines = [cause.message ?? String(cause)];
  if (cause.stack) lines.push(...cause.stack.split('\n').filter((l) => /^\s+at /.test(l)).slice(0, 5));
  return lines.join('\n');
}

export default async function * tapFlat (source) {
  yield 'TAP version 13\n';
  const names = [];
  let count = 0;
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for await (const event of source) {
    const { type, data } = event;
    switch (type) {
      case 'test:start':
        names[data.nesting] = data.name;
        names.length = data.nesting + 1;
        break;
      case 'test:pass':
      case 'test:fail': {
        names[data.nesting] = data.name;
        const isSuite = data.details?.type === 'suite';
        const ok = type === 'test:pass';
        if (isSuite && (ok || data.details.error?.failureType === 'subtestsFailed')) break;
        // A test file itself (nesting 0 with subtests) is reported like a suite.
        const label = names.slice(0, data.nesting + 1).join(' > ').replace(/#/g, '\\#');
        count += 1;
        let directive = '';
        if (data.skip !== undefined) directive = ` # SKIP ${data.skip === true ? '' : data.skip}`;
        else if (data.todo !== undefined) directive = ` # TODO ${data.todo === true ? '' : data.todo}`;
        if (directive.includes('SKIP')) skipped += 1;
        else if (ok) passed += 1;
        else failed += 1;
        yield `${ok ? 'ok' : 'not ok'} ${count} - ${label}${directive}\n`;
        if (!ok) yield comment(describeError(data.details?.error));
        break;
      }
      case 'test:diagnostic':
        // The runner's own summary lines are replaced by ours at the end.
        if (data.nesting === 0 && /^(tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) /.test(data.message)) break;
        yield comment(data.message);
        break;
      case 'test:stdout':
      case 'test:stderr':
        yield comment(data.message.replace(/\n$/, ''));
        break;
      default:
        break;
    }
  }
  yield `1..${count}\n`;
  yield `# tests ${count}\n# pass ${passed}\n# fail ${failed}\n# skipped ${skipped}\n`;
}
