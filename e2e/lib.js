// livevote end-to-end helpers: the real release server, Debian's Chromium through
// playwright-core, and the checks every test makes (no request leaves 127.0.0.1, no console
// errors, no uncaught page errors).
//
// The page's DOM contract these tests rely on (www/index.template + www/vote.js):
//   <li id="user_ID">NAME<span>COUNT</span>…<form method="post"><button>Vote</button></form></li>
//   #status[data-transport=ws|sse|longpoll|poll][data-connected=true|false], #version, #presence
//   a double-click on a candidate's name votes; /index?transport=ws|sse|longpoll|poll forces one;
//   /index alone is `auto` (ws → sse → longpoll → poll).
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const os = require('node:os');
const { chromium } = require('playwright-core');

const ROOT = path.resolve(__dirname, '..');
const BIN = process.env.LIVEVOTE_BIN || path.join(ROOT, 'target', 'release', 'livevote');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SCREENSHOTS = path.join(__dirname, 'screenshots');

// Bounded waits. Generous: they only bound a failure, a passing run never waits them out.
const WAIT = {
  connect: 15000, // a page shows data-connected=true
  converge: 10000, // pages show the server's tally after the last vote
  vote: 8000, // the server has counted a vote cast in a page
  reconnect: 35000, // after a restart (backoff caps near 10 s, plus jitter)
  disconnect: 15000, // a page notices the server went away
};

// [label, page query, the transport #status must show]: each forced transport, and the default
// page (`auto`), which needs no fallback here, so it must land on the ladder's first rung, ws.
const CASES = [
  ['ws', '?transport=ws', 'ws'],
  ['sse', '?transport=sse', 'sse'],
  ['longpoll', '?transport=longpoll', 'longpoll'],
  ['poll', '?transport=poll', 'poll'],
  ['auto', '', 'ws'],
];

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ------------------------------------------------------------------------------- the server

// Every server this process started, so that a crash or a signal cannot leave one behind.
const live = new Set();
function killAll() {
  for (const child of live) {
    try { process.kill(child.pid, 'SIGKILL'); } catch (_) { /* already gone */ }
  }
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => { killAll(); process.exit(130); });
}

class Server {
  // `base`: the server's --base-path (passed by the test among its args), which url() puts
  // before every path; `accessLog`: without --quiet, the access log collects in `log`.
  constructor({ base = '', accessLog = false } = {}) {
    this.port = 0; // chosen by the OS on the first start, kept for every restart
    this.child = null;
    this.log = '';
    this.basePath = base;
    this.accessLog = accessLog;
  }

  get origin() { return `http://127.0.0.1:${this.port}`; }
  url(p = '/') { return this.origin + this.basePath + p; }

  // Starts target/release/livevote on 127.0.0.1 (a free port the first time, the same port
  // after that), serving the pages built into the binary (no --www).
  async start(extraArgs = []) {
    if (this.child) throw new Error('server already running');
    if (!fs.existsSync(BIN)) throw new Error(`${BIN} is missing: run \`make release\` first`);
    const deadline = Date.now() + 15000;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#spawnOnce(extraArgs);
        return this;
      } catch (err) {
        // Restarting on the same port right after a stop: the port may still be held for a
        // moment. Try again until the deadline.
        if (this.port === 0 || Date.now() > deadline) throw err;
        await sleep(250);
      }
    }
  }

  #spawnOnce(extraArgs) {
    // Memory-only unless a test asks for a journal (`--data`): each test starts from zero, and
    // a restart is a new epoch.
    const storage = extraArgs.includes('--data') ? [] : ['--memory'];
    const quiet = this.accessLog ? [] : ['--quiet'];
    const args = ['--addr', `127.0.0.1:${this.port}`, ...quiet, ...storage, ...extraArgs];
    const child = spawn(BIN, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    live.add(child);
    let stderr = '';
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        try { process.kill(child.pid, 'SIGKILL'); } catch (_) { /* gone */ }
        reject(new Error(`livevote did not say it was listening within 10 s; stderr:\n${stderr}`));
      }, 10000);
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (chunk) => {
        stderr += chunk;
        this.log += chunk;
        const m = /listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(stderr);
        if (m && !this.child) {
          clearTimeout(timer);
          this.port = Number(m[1]);
          this.child = child;
          this.#waitReady().then(resolve, reject);
        }
      });
      child.on('exit', (code, signal) => {
        live.delete(child);
        if (this.child === child) this.child = null;
        clearTimeout(timer);
        reject(new Error(`livevote exited (${code ?? signal}) before it was ready; stderr:\n${stderr}`));
      });
    });
  }

  async #waitReady() {
    const deadline = Date.now() + 10000;
    for (;;) {
      try {
        const res = await fetch(this.url('/votes'), { signal: AbortSignal.timeout(2000) });
        await res.arrayBuffer();
        if (res.ok) return;
      } catch (_) { /* not yet */ }
      if (Date.now() > deadline) throw new Error('livevote did not answer GET /votes within 10 s');
      await sleep(50);
    }
  }

  // Stops the server by its pid (SIGTERM, then SIGKILL after 5 s) and waits for it to exit.
  async stop() {
    const child = this.child;
    if (!child) return;
    this.child = null;
    if (child.exitCode !== null || child.signalCode !== null) { live.delete(child); return; }
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try { process.kill(child.pid, 'SIGTERM'); } catch (_) { /* gone */ }
    const t = setTimeout(() => { try { process.kill(child.pid, 'SIGKILL'); } catch (_) { /* gone */ } }, 5000);
    await exited;
    clearTimeout(t);
    live.delete(child);
  }

  async restart(extraArgs = []) {
    await this.stop();
    return this.start(extraArgs);
  }

  // GET /votes → { version, epoch, candidates: [{uid, name, count}], presence? }
  async votes() {
    const res = await fetch(this.url('/votes'), { cache: 'no-store', signal: AbortSignal.timeout(5000) });
    if (!res.ok) throw new Error(`GET /votes → ${res.status}`);
    return res.json();
  }

  // { uid: count } from GET /votes, plus the version and the sum of all counts.
  async tally() {
    const v = await this.votes();
    const counts = {};
    let total = 0;
    for (const c of v.candidates) { counts[String(c.uid)] = Number(c.count); total += Number(c.count); }
    return { counts, version: Number(v.version), epoch: v.epoch, total, presence: v.presence };
  }

  // POST /vote uid=… as curl -d would; returns the JSON answer. Throws unless 200.
  async vote(uid) {
    const res = await fetch(this.url('/vote'), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ uid: String(uid) }).toString(),
      signal: AbortSignal.timeout(5000),
    });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`POST /vote uid=${uid} → ${res.status} ${text}`);
    return JSON.parse(text);
  }

  // Waits until the server's total number of votes is `total` (exactly; more is a failure).
  async waitTotal(total, timeout = WAIT.vote, what = '') {
    const deadline = Date.now() + timeout;
    let t;
    for (;;) {
      t = await this.tally();
      if (t.total === total) return t;
      if (t.total > total) {
        throw new Error(`server counted ${t.total} votes, expected exactly ${total}${what ? ' ' + what : ''} (a vote counted twice?) ${JSON.stringify(t.counts)}`);
      }
      if (Date.now() > deadline) {
        throw new Error(`server counted ${t.total} votes after ${timeout} ms, expected ${total}${what ? ' ' + what : ''} ${JSON.stringify(t.counts)}`);
      }
      await sleep(50);
    }
  }
}

// ------------------------------------------------------------------------------- the cluster

// `make cluster` in its non-interactive form: scripts/cluster.sh --background DIR starts
// redis-server, three instances on `--redis` and nginx in front, waits until each answers, and
// writes DIR/url, DIR/ports (NAME=PORT lines) and DIR/pids; --stop DIR stops them by pid.
// A Cluster is used where a test takes a Server: its url() is nginx's (the one URL people
// open), vote() goes through nginx, and tally() is the tally all the instances agree on.
const CLUSTER_SCRIPT = path.join(ROOT, 'scripts', 'cluster.sh');

// Every cluster this process started, stopped even if the test process exits early.
const clusters = new Set();
process.on('exit', () => { for (const c of clusters) c.stopSync(); });

class Cluster extends Server {
  constructor() {
    super();
    this.dir = null; // the run directory (a fresh temp dir)
    this.ports = {}; // redis, nginx, livevote1…
    this.instances = []; // a Server per instance, addressed directly (not through nginx)
    this.pageUrl = null; // what the script prints for people
  }

  async start() {
    if (this.dir) throw new Error('cluster already running');
    if (!fs.existsSync(BIN)) throw new Error(`${BIN} is missing: run \`make release\` first`);
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'livevote-e2e-cluster-'));
    this.dir = path.join(base, 'run');
    this.base = base;
    clusters.add(this);
    const out = await new Promise((resolve, reject) => {
      const child = spawn('bash', [CLUSTER_SCRIPT, '--background', this.dir], {
        cwd: ROOT, env: { ...process.env, LIVEVOTE_BIN: BIN }, stdio: ['ignore', 'pipe', 'pipe'],
      });
      let text = '';
      child.stdout.setEncoding('utf8').on('data', (c) => { text += c; });
      child.stderr.setEncoding('utf8').on('data', (c) => { text += c; });
      // The script bounds each component's start itself; this only bounds the whole.
      const timer = setTimeout(() => { try { process.kill(child.pid, 'SIGTERM'); } catch (_) { /* gone */ } }, 60000);
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (code === 0) resolve(text);
        else reject(new Error(`scripts/cluster.sh --background exited (${code ?? signal}):\n${text}`));
      });
    });
    this.startOutput = out;
    for (const line of fs.readFileSync(path.join(this.dir, 'ports'), 'utf8').split('\n')) {
      const m = /^(\w+)=(\d+)$/.exec(line.trim());
      if (m) this.ports[m[1]] = Number(m[2]);
    }
    this.pageUrl = fs.readFileSync(path.join(this.dir, 'url'), 'utf8').trim();
    this.port = this.ports.nginx;
    this.instances = Object.keys(this.ports).filter((k) => /^livevote\d+$/.test(k)).sort()
      .map((k) => Object.assign(new Server(), { port: this.ports[k], name: k }));
    return this;
  }

  // kill -9 of one instance (by the pid the script recorded), then wait until it is gone; from
  // then on tally() asks the instances left.
  async killInstance(name) {
    const line = fs.readFileSync(path.join(this.dir, 'pids'), 'utf8').split('\n')
      .map((l) => l.trim().split(/\s+/)).find((f) => f[0] === name);
    if (!line) throw new Error(`no ${name} in ${this.dir}/pids`);
    const pid = Number(line[1]);
    process.kill(pid, 'SIGKILL');
    // Gone: no /proc entry, or a zombie not reaped yet (the script that started it has exited).
    const gone = () => {
      try { return /^\d+ \(.*\) [ZX]/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch (_) { return true; }
    };
    const deadline = Date.now() + 5000;
    while (!gone()) {
      if (Date.now() > deadline) throw new Error(`${name} (pid ${pid}) still runs 5 s after SIGKILL`);
      await sleep(20);
    }
    this.instances = this.instances.filter((s) => s.name !== name);
  }

  // The last lines of every log in the run directory, for a failure message.
  logs(lines = 20) {
    if (!this.dir) return '';
    const files = ['redis/redis.log', 'nginx/error.log', ...Object.keys(this.ports).filter((k) => /^livevote\d+$/.test(k)).sort().map((k) => `livevote-${k.slice(8)}.log`)];
    return files.map((f) => {
      let text = '';
      try { text = fs.readFileSync(path.join(this.dir, f), 'utf8'); } catch (_) { return `--- ${f}: (none)`; }
      return `--- ${f}\n` + text.split('\n').slice(-lines).join('\n');
    }).join('\n');
  }

  // Stops everything by pid (the script's --stop) and removes the run directory.
  stopSync() {
    if (!this.dir) return;
    const { spawnSync } = require('node:child_process');
    spawnSync('bash', [CLUSTER_SCRIPT, '--stop', this.dir], { cwd: ROOT, stdio: 'ignore', timeout: 60000 });
    fs.rmSync(this.base, { recursive: true, force: true });
    this.dir = null;
    clusters.delete(this);
  }

  async stop() { this.stopSync(); }

  // The tally every instance shows, read from each directly: the instances' follower copies
  // may be a moment apart, so read until they agree (bounded).
  async tally() {
    const deadline = Date.now() + 5000;
    for (;;) {
      const all = await Promise.all(this.instances.map((s) => s.tally()));
      const same = all.every((t) => t.epoch === all[0].epoch && t.version === all[0].version && sameCounts(t.counts, all[0].counts));
      if (same) return all[0];
      if (Date.now() > deadline) {
        throw new Error(`the instances do not agree within 5 s: ${JSON.stringify(all.map((t, i) => ({ [this.instances[i].name]: { epoch: t.epoch, version: t.version, counts: t.counts } })))}`);
      }
      await sleep(50);
    }
  }
}

// ------------------------------------------------------------------------------- the browser

const LAUNCH_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

// Debian's Chromium. playwright-core gives every launch a new, empty --user-data-dir of its
// own (a temp dir it deletes on close), so each run starts from a fresh profile.
async function launchBrowser() {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run \`make e2e\` (it installs Debian's chromium)`);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: LAUNCH_ARGS,
    timeout: 30000,
  });
}

// One page in a browser context of its own (separate cookies and sessionStorage: a separate
// viewer). Everything it requests, logs or throws is recorded.
class Viewer {
  constructor(name, context, page) {
    this.name = name;
    this.context = context;
    this.page = page;
    this.requests = []; // every URL the page asked for: HTTP(S), EventSource, WebSocket
    this.consoleErrors = []; // { text, url }
    this.pageErrors = []; // uncaught exceptions, unhandled rejections
    this.loads = 0; // load events (the polling page reloads itself)
    this.lastLoad = 0;
    this.responses = []; // { url, method, status }
  }
}

// `context`: open the page in this existing context (the same cookies: the admin's presenter
// view) instead of a new one.
async function openViewer(browser, server, pathAndQuery, { name, javaScriptEnabled = true, setup, contextOptions = {}, context: shared } = {}) {
  const context = shared || await browser.newContext({ javaScriptEnabled, viewport: { width: 1000, height: 800 }, ...contextOptions });
  const page = await context.newPage();
  const v = new Viewer(name || pathAndQuery, context, page);
  context.on('request', (r) => v.requests.push(r.url()));
  context.on('response', (r) => v.responses.push({ url: r.url(), method: r.request().method(), status: r.status() }));
  page.on('websocket', (ws) => v.requests.push(ws.url()));
  page.on('console', (m) => {
    if (m.type() === 'error') v.consoleErrors.push({ text: m.text(), url: (m.location() || {}).url || '' });
  });
  page.on('pageerror', (e) => v.pageErrors.push(String((e && e.stack) || e)));
  page.on('load', () => { v.loads++; v.lastLoad = Date.now(); });
  page.setDefaultTimeout(15000);
  if (setup) await setup(page, context);
  const res = await page.goto(server.url(pathAndQuery), { waitUntil: 'load' });
  if (!res || res.status() !== 200) {
    const body = res ? (await res.text()).slice(0, 300) : '';
    throw new Error(`${v.name}: GET ${pathAndQuery} → ${res ? res.status() : 'no response'} ${body}`);
  }
  return v;
}

// What the page shows: every candidate's count, #version, and #status's data attributes.
function readState(page) {
  return page.evaluate(() => {
    const counts = {};
    const names = {};
    for (const li of document.querySelectorAll('li[id^="user_"]')) {
      const uid = li.id.slice('user_'.length);
      const span = li.querySelector(':scope > span');
      const t = span ? span.textContent.trim() : '';
      counts[uid] = /^\d+$/.test(t) ? Number(t) : t;
      const text = [...li.childNodes].find((n) => n.nodeType === 3 && n.textContent.trim());
      names[uid] = text ? text.textContent.trim() : '';
    }
    const st = document.getElementById('status');
    const ver = document.getElementById('version');
    const pres = document.getElementById('presence');
    const vm = ver ? /(\d+)\s*$/.exec(ver.textContent.trim()) : null;
    return {
      url: location.href,
      counts,
      names,
      version: vm ? Number(vm[1]) : null,
      transport: st ? st.dataset.transport ?? null : null,
      connected: st ? st.dataset.connected ?? null : null,
      status: st ? st.textContent.trim() : null,
      presence: pres ? pres.textContent.trim().replace(/\s+/g, ' ') : null,
    };
  });
}

// Polls the page (from node, so a page that reloads itself is fine) until `pred(state)`.
// On timeout: an error that says what was awaited and what the page last showed.
async function waitForPage(v, pred, { timeout, what }) {
  const deadline = Date.now() + timeout;
  let last = null;
  let lastErr = null;
  for (;;) {
    try {
      last = await readState(v.page);
      lastErr = null;
      const ok = await pred(last);
      if (ok) return last;
    } catch (err) {
      if (err && err.fatal) throw err;
      lastErr = err; // navigation in progress (polling page reload): read again
    }
    if (Date.now() > deadline) {
      const shown = last ? JSON.stringify({ url: last.url, counts: last.counts, version: last.version, transport: last.transport, connected: last.connected, status: last.status }) : 'nothing';
      const w = typeof what === 'function' ? what() : what;
      throw new Error(`${v.name}: ${w} — not within ${timeout} ms; the page showed ${shown}${lastErr ? '; last read error: ' + lastErr.message.split('\n')[0] : ''}`);
    }
    await sleep(100);
  }
}

const sameCounts = (a, b) => {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k]);
};

// Waits until the page shows exactly the server's tally: every count and the version.
async function waitForTally(v, server, { timeout = WAIT.converge, connected = true, transport } = {}) {
  let t = null;
  return waitForPage(v, async (s) => {
    t = await server.tally();
    return sameCounts(s.counts, t.counts) && s.version === t.version
      && (!connected || s.connected === 'true')
      && (!transport || s.transport === transport);
  }, {
    timeout,
    what: () => `show the server's tally ${t ? JSON.stringify({ counts: t.counts, version: t.version }) : ''}`
      + (connected ? ' and data-connected=true' : '') + (transport ? ` and data-transport=${transport}` : ''),
  });
}

// Waits for #status[data-connected=true] on `transport`. A page that stays connected on another
// transport (or shows none) for 3 s fails at once rather than at the timeout.
async function waitConnected(v, transport, timeout = WAIT.connect) {
  let wrongSince = 0;
  return waitForPage(v, (s) => {
    if (s.connected !== 'true') { wrongSince = 0; return false; }
    if (!transport || s.transport === transport) return true;
    if (!wrongSince) wrongSince = Date.now();
    if (Date.now() - wrongSince > 3000) {
      throw Object.assign(new Error(`${v.name}: connected on data-transport=${s.transport} (status "${s.status}"), expected ${transport}`), { fatal: true });
    }
    return false;
  }, {
    timeout,
    what: `#status[data-connected=true]${transport ? `[data-transport=${transport}]` : ''}`,
  });
}

async function waitDisconnected(v, timeout = WAIT.disconnect) {
  return waitForPage(v, (s) => s.connected === 'false', { timeout, what: '#status[data-connected=false] while the server is down' });
}

// The polling page may reload itself every couple of seconds; an input that lands while a
// reload is under way may be lost with the old document. If this page reloads itself, wait for
// a fresh load before acting.
async function settle(v) {
  if (v.loads < 2) return;
  if (Date.now() - v.lastLoad < 300) return;
  await Promise.race([v.page.waitForEvent('load', { timeout: 5000 }).catch(() => {}), sleep(5000)]);
  await v.page.waitForLoadState('load').catch(() => {});
}

// A burst of votes: `httpVotes` POSTs through `server` (a Server or a Cluster) in flight while
// every page double-clicks `perPage` times, candidates in turn. Returns the total the server
// must then show, given the total `before` it.
async function voteBurst(server, viewers, uids, { httpVotes, perPage, before }) {
  const http = Promise.all(Array.from({ length: httpVotes }, (_, i) => server.vote(uids[i % uids.length])));
  const clicks = viewers.map(async (v, i) => {
    for (let k = 0; k < perPage; k++) {
      await dblclickVote(v, uids[(i + k) % uids.length]);
      await sleep(100);
    }
  });
  await Promise.all([http, ...clicks]);
  return before + httpVotes + perPage * viewers.length;
}

// Double-click on the candidate's NAME (the text node, not the Vote button, which votes by
// itself when JavaScript is on).
async function dblclickVote(v, uid) {
  await settle(v);
  const id = 'user_' + uid;
  await v.page.locator('#' + id).scrollIntoViewIfNeeded();
  const pt = await v.page.evaluate((id) => {
    const li = document.getElementById(id);
    if (!li) return { error: `no #${id}` };
    const text = [...li.childNodes].find((n) => n.nodeType === 3 && n.textContent.trim());
    let r;
    if (text) {
      const range = document.createRange();
      range.selectNodeContents(text);
      r = range.getBoundingClientRect();
    } else {
      const b = li.getBoundingClientRect();
      r = { x: b.x + 2, y: b.y + 2, width: 4, height: 4 };
    }
    const x = r.x + Math.min(r.width / 2, 10);
    const y = r.y + r.height / 2;
    const hit = document.elementFromPoint(x, y);
    if (!hit || !li.contains(hit) || hit.closest('button, form, a, input')) {
      return { error: `the point on #${id}'s name hits ${hit ? hit.outerHTML.slice(0, 120) : 'nothing'}` };
    }
    return { x, y };
  }, id);
  if (pt.error) throw new Error(`${v.name}: cannot double-click: ${pt.error}`);
  await v.page.mouse.dblclick(pt.x, pt.y);
}

// Casts one vote by double-click and waits until the server has counted exactly it.
async function voteByDblclick(v, server, uid) {
  const before = await server.tally();
  await dblclickVote(v, uid);
  return server.waitTotal(before.total + 1, WAIT.vote, `after ${v.name} double-clicked #user_${uid}`);
}

// ------------------------------------------------------------------------------- checks

const isLocal = (u) => {
  let url;
  try { url = new URL(u); } catch (_) { return false; }
  if (['data:', 'blob:', 'about:'].includes(url.protocol)) return true;
  return ['http:', 'https:', 'ws:', 'wss:'].includes(url.protocol) && url.hostname === '127.0.0.1';
};

// Messages Chromium itself logs for a failed connection (not the page's own console.error):
// tests that break the network on purpose allow these, and only these.
const NET_ERROR = /^(Failed to load resource: net::ERR_[A-Z_]+|WebSocket connection to '[^']*' failed:.*net::ERR_[A-Z_]+.*)$/;

// Every viewer: no request left 127.0.0.1, no uncaught error, no console error (except
// Chromium's own net::ERR_ lines when `allowNetErrors(entry)` says the test caused them).
function checkViewers(assert, viewers, { allowNetErrors = () => false } = {}) {
  const problems = [];
  for (const v of viewers) {
    const outside = v.requests.filter((u) => !isLocal(u));
    if (outside.length) problems.push(`${v.name}: requests that left 127.0.0.1: ${[...new Set(outside)].join(', ')}`);
    if (v.pageErrors.length) problems.push(`${v.name}: page errors: ${v.pageErrors.join(' | ')}`);
    const errs = v.consoleErrors.filter((e) => !(NET_ERROR.test(e.text) && allowNetErrors(e)));
    if (errs.length) problems.push(`${v.name}: console errors: ${errs.map((e) => `${e.text}${e.url ? ' (' + e.url + ')' : ''}`).join(' | ')}`);
    if (v.requests.length === 0) problems.push(`${v.name}: recorded no request at all (the recorder is broken)`);
  }
  assert.deepStrictEqual(problems, [], problems.join('\n'));
}

async function screenshot(v, label) {
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  const file = path.join(SCREENSHOTS, `${label}.png`.replace(/[^A-Za-z0-9._-]+/g, '_'));
  try {
    await v.page.screenshot({ path: file, fullPage: true, timeout: 5000 });
  } catch (_) { /* a page mid-navigation: no screenshot, not a failure */ }
  return file;
}

async function closeViewers(viewers, label) {
  for (const v of viewers) {
    if (label) await screenshot(v, `${label}-${v.name}`);
    await v.context.close().catch(() => {});
  }
}

// Candidates from the server, sorted by uid; the tests vote for the first two.
async function candidates(server) {
  const v = await server.votes();
  return v.candidates.map((c) => String(c.uid));
}

// The set-up every test file shares: one server and one browser for the whole file, the
// candidates' uids, and the viewers the file opened (closed, with a screenshot each, after it).
// Registers node:test's before/after hooks; returns { server, browser, uids, viewers }, with
// browser and uids filled in once the before hook has run.
// `args`: the server's extra command-line arguments (e.g. `--admin-token`).
function suite(label, { args = [] } = {}) {
  const { before, after } = require('node:test');
  const s = { server: new Server(), browser: null, uids: null, viewers: [] };
  before(async () => {
    await s.server.start(args);
    s.browser = await launchBrowser();
    s.uids = await candidates(s.server);
  });
  after(async () => {
    await closeViewers(s.viewers.splice(0), label);
    if (s.browser) await s.browser.close().catch(() => {});
    await s.server.stop();
  });
  return s;
}

module.exports = {
  ROOT, BIN, CHROMIUM, SCREENSHOTS, WAIT, LAUNCH_ARGS, CASES,
  sleep, Server, Cluster, launchBrowser, openViewer, readState, waitForPage, waitForTally,
  waitConnected, waitDisconnected, dblclickVote, voteByDblclick, voteBurst, settle,
  checkViewers, screenshot, closeViewers, candidates, suite, isLocal, NET_ERROR, sameCounts,
};
