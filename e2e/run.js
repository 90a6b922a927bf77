#!/usr/bin/env node
// Runs the browser tests (tests/*.test.js, one file at a time: each starts its own server and
// browser) with node's test runner, passes its TAP output through, then prints one plain line:
//   e2e: N passed, M failed
// Exits non-zero when any test failed, when the runner failed, or when no test ran.
// Usage: node run.js [tests/FILE.test.js …]
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const dir = __dirname;
let files = process.argv.slice(2);
if (files.length === 0) {
  files = fs.readdirSync(path.join(dir, 'tests'))
    .filter((f) => f.endsWith('.test.js'))
    .sort()
    .map((f) => path.join('tests', f));
}

const OVERALL_MS = Number(process.env.E2E_TIMEOUT_MS || 6 * 60 * 1000);

const child = spawn(process.execPath, [
  '--test',
  '--test-reporter=tap',
  '--test-concurrency=1',
  '--test-timeout=150000',
  ...files,
], { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] });

let out = '';
child.stdout.setEncoding('utf8');
child.stdout.on('data', (chunk) => { out += chunk; process.stdout.write(chunk); });

const killer = setTimeout(() => {
  process.stderr.write(`e2e: the run passed ${OVERALL_MS} ms, stopping it\n`);
  try { process.kill(child.pid, 'SIGTERM'); } catch (_) { /* gone */ }
  setTimeout(() => { try { process.kill(child.pid, 'SIGKILL'); } catch (_) { /* gone */ } }, 5000).unref();
}, OVERALL_MS);

child.on('close', (code, signal) => {
  clearTimeout(killer);
  const last = (re) => {
    const all = [...out.matchAll(re)];
    return all.length ? Number(all[all.length - 1][1]) : null;
  };
  const pass = last(/^# pass (\d+)$/gm);
  const fail = last(/^# fail (\d+)$/gm);
  const cancelled = last(/^# cancelled (\d+)$/gm) || 0;
  const passed = pass ?? 0;
  const failed = (fail ?? 0) + cancelled;
  if (!out.endsWith('\n')) process.stdout.write('\n');
  process.stdout.write(`e2e: ${passed} passed, ${failed} failed\n`);
  const ok = code === 0 && signal === null && pass !== null && passed > 0 && failed === 0;
  process.exit(ok ? 0 : 1);
});
