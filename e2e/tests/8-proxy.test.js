// 8. Behind a reverse proxy (issue 12): Debian's nginx runs the committed deploy/nginx/livevote.conf
//    (only its `listen` lines, certificate paths and upstream address replaced) with TLS, using a
//    self-signed certificate made here by `openssl req -x509`, in front of livevote started with
//    `--base-path /polls --trusted-proxy 127.0.0.1`. Through nginx over TLS: pages under /polls on
//    WebSocket, SSE and long-polling get every vote; the raw protocols answer too (an event
//    stream, a long-poll, a WebSocket handshake whose Origin must carry the https scheme); the
//    client address livevote logs is the one nginx saw (a client on 127.0.0.2), never what a
//    client claims in X-Forwarded-For or Forwarded. And deploy/caddy/Caddyfile passes
//    `caddy validate`.
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const https = require('node:https');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const tls = require('node:tls');
const L = require('../lib');

const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => fs.existsSync(p)) || 'nginx';
const CONF = path.join(L.ROOT, 'deploy', 'nginx', 'livevote.conf');
const PROXY_CONF = path.join(L.ROOT, 'deploy', 'nginx', 'livevote-proxy.conf');
const CADDYFILE = path.join(L.ROOT, 'deploy', 'caddy', 'Caddyfile');
const BASE = '/polls';

const server = new L.Server({ base: BASE, accessLog: true });
const S = { dir: null, nginx: null, tls: 0, http: 0, cert: null, browser: null, uids: null, viewers: [] };

// The proxy, as the tests address it: https://127.0.0.1:PORT/polls…
const proxy = { url: (p = '/') => `https://127.0.0.1:${S.tls}${BASE}${p}` };

// A port nobody listens on now (the OS's pick; nginx's bind is retried if it is taken meanwhile).
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

// The committed config with the test's ports, certificate and upstream; each replaced line must
// be there, so that a change to the committed file cannot leave the test running something else.
function fillIn(text, { tlsPort, httpPort, cert, key, upstream }) {
  const swaps = [
    [/^(\s*)listen 443 ssl http2;$/m, `$1listen 127.0.0.1:${tlsPort} ssl http2;`],
    [/^\s*listen \[::\]:443 ssl http2;\n/m, ''],
    [/^(\s*)listen 80;$/m, `$1listen 127.0.0.1:${httpPort};`],
    [/^\s*listen \[::\]:80;\n/m, ''],
    [/^(\s*)ssl_certificate\s+\S+;$/m, `$1ssl_certificate ${cert};`],
    [/^(\s*)ssl_certificate_key\s+\S+;$/m, `$1ssl_certificate_key ${key};`],
    [/^(\s*)server 127\.0\.0\.1:8080;$/m, `$1server ${upstream};`],
  ];
  for (const [re, to] of swaps) {
    if (!re.test(text)) throw new Error(`deploy/nginx/livevote.conf no longer has ${re}`);
    text = text.replace(re, to);
  }
  return text;
}

// nginx's main configuration: everything in the run directory (pid, logs, temp files), in the
// foreground, the deploy file included in `http { }` as /etc/nginx/conf.d/ would be.
function mainConf(dir) {
  return `daemon off;
master_process on;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log notice;
events { worker_connections 1024; }
http {
    access_log ${dir}/access.log;
    client_body_temp_path ${dir}/tmp/client_body;
    proxy_temp_path ${dir}/tmp/proxy;
    fastcgi_temp_path ${dir}/tmp/fastcgi;
    uwsgi_temp_path ${dir}/tmp/uwsgi;
    scgi_temp_path ${dir}/tmp/scgi;
    include ${dir}/livevote.conf;
}
`;
}

// One HTTPS request through nginx (the test's certificate as the only CA); resolves with
// { status, headers, body }.
function request(p, { method = 'GET', headers = {}, body, localAddress, port = S.tls } = {}) {
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: '127.0.0.1', port, path: BASE + p, method, headers, ca: S.cert, localAddress,
      servername: undefined, timeout: 15000,
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: text }));
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${p}: no answer within 15 s`)));
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

async function startNginx() {
  const dir = S.dir;
  fs.mkdirSync(path.join(dir, 'tmp'), { recursive: true });
  fs.copyFileSync(PROXY_CONF, path.join(dir, 'livevote-proxy.conf'));
  fs.writeFileSync(path.join(dir, 'nginx.conf'), mainConf(dir));
  for (let attempt = 1; attempt <= 5; attempt++) {
    S.tls = await freePort();
    S.http = await freePort();
    fs.writeFileSync(path.join(dir, 'livevote.conf'), fillIn(fs.readFileSync(CONF, 'utf8'), {
      tlsPort: S.tls, httpPort: S.http, cert: path.join(dir, 'cert.pem'), key: path.join(dir, 'key.pem'),
      upstream: `127.0.0.1:${server.port}`,
    }));
    fs.writeFileSync(path.join(dir, 'error.log'), '');
    const child = spawn(NGINX, ['-p', `${dir}/`, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'error.log')],
      { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (c) => { stderr += c; });
    let exited = false;
    child.once('exit', () => { exited = true; });
    S.nginx = child;
    const deadline = Date.now() + 15000;
    for (;;) {
      if (exited) break;
      try {
        const r = await request('/votes');
        if (r.status === 200) return;
      } catch (_) { /* not yet */ }
      if (Date.now() > deadline) throw new Error(`nginx did not answer within 15 s:\n${stderr}\n${fs.readFileSync(path.join(dir, 'error.log'), 'utf8')}`);
      await L.sleep(50);
    }
    const log = stderr + fs.readFileSync(path.join(dir, 'error.log'), 'utf8');
    S.nginx = null;
    if (!/Address already in use/.test(log)) throw new Error(`nginx exited:\n${log}`);
  }
  throw new Error('nginx could not bind a port in 5 attempts');
}

function stopNginx() {
  const child = S.nginx;
  S.nginx = null;
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => { try { process.kill(child.pid, 'SIGKILL'); } catch (_) { /* gone */ } }, 5000);
    child.once('exit', () => { clearTimeout(t); resolve(); });
    try { process.kill(child.pid, 'SIGTERM'); } catch (_) { clearTimeout(t); resolve(); }
  });
}
process.on('exit', () => { if (S.nginx) { try { process.kill(S.nginx.pid, 'SIGKILL'); } catch (_) { /* gone */ } } });

before(async () => {
  S.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'livevote-e2e-proxy-'));
  if (process.getuid && process.getuid() === 0) fs.chmodSync(S.dir, 0o711); // nginx's workers run as nobody
  const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
    '-keyout', path.join(S.dir, 'key.pem'), '-out', path.join(S.dir, 'cert.pem'),
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { encoding: 'utf8', timeout: 30000 });
  assert.equal(made.status, 0, `openssl req -x509: ${made.stderr}`);
  fs.chmodSync(path.join(S.dir, 'key.pem'), 0o644);
  S.cert = fs.readFileSync(path.join(S.dir, 'cert.pem'));
  await server.start(['--base-path', BASE, '--trusted-proxy', '127.0.0.1', '--max-connections-per-ip', '0']);
  await startNginx();
  S.browser = await L.launchBrowser();
  S.uids = await L.candidates(server);
});

after(async () => {
  await L.closeViewers(S.viewers.splice(0), '8-proxy');
  if (S.browser) await S.browser.close().catch(() => {});
  await stopNginx();
  await server.stop();
  if (S.dir) fs.rmSync(S.dir, { recursive: true, force: true });
});

// The access-log lines livevote wrote for requests whose target contains `needle`.
function logLines(needle) {
  return server.log.split('\n').filter((l) => l.includes(needle));
}

async function waitLog(needle, what) {
  const deadline = Date.now() + 5000;
  for (;;) {
    const lines = logLines(needle);
    if (lines.length) return lines;
    if (Date.now() > deadline) assert.fail(`no access-log line for ${what} (${needle}); log:\n${server.log.slice(-3000)}`);
    await L.sleep(50);
  }
}

describe('behind nginx with TLS, under /polls', () => {
  it('pages on WebSocket, SSE and long-polling get every vote through the proxy', { timeout: 90000 }, async () => {
    const cases = [['ws', '?transport=ws', 'ws'], ['sse', '?transport=sse', 'sse'], ['longpoll', '?transport=longpoll', 'longpoll']];
    for (const [label, query] of cases) {
      S.viewers.push(await L.openViewer(S.browser, proxy, '/index' + query, { name: label, contextOptions: { ignoreHTTPSErrors: true } }));
    }
    for (let i = 0; i < cases.length; i++) await L.waitConnected(S.viewers[i], cases[i][2]);
    // Double-clicks: each page votes through nginx (fetch, or its WebSocket), with an Origin of
    // https://127.0.0.1:PORT that must match the forwarded scheme and host.
    for (let i = 0; i < S.viewers.length; i++) await L.voteByDblclick(S.viewers[i], server, S.uids[i % S.uids.length]);
    // And a vote posted through nginx by a script.
    const before = await server.tally();
    const r = await request('/vote', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `uid=${S.uids[0]}` });
    assert.equal(r.status, 200, r.body);
    await server.waitTotal(before.total + 1);
    for (let i = 0; i < S.viewers.length; i++) await L.waitForTally(S.viewers[i], server, { transport: cases[i][2] });
    // Every page asked for its URLs below the prefix, over TLS.
    for (const v of S.viewers) {
      const mine = v.requests.filter((u) => u.includes(`127.0.0.1:${S.tls}`));
      assert.ok(mine.length > 0, `${v.name}: no request through nginx`);
      const outside = mine.filter((u) => !new URL(u).pathname.startsWith(BASE + '/'));
      assert.deepStrictEqual(outside, [], `${v.name}: requests outside ${BASE}/`);
      assert.ok(mine.every((u) => /^(https|wss):/.test(u)), `${v.name}: ${mine.join(' ')}`);
    }
    L.checkViewers(assert, S.viewers);
    // The browser is on 127.0.0.1, and so livevote logs it.
    const lines = await waitLog('GET /polls/index?transport=ws', 'the WebSocket page');
    assert.ok(lines.every((l) => l.startsWith('127.0.0.1 ')), lines.join('\n'));
  });

  it('an event stream, a long-poll and a WebSocket handshake answer through nginx', { timeout: 30000 }, async () => {
    const t = await server.tally();
    // Server-Sent Events: the first event carries the cursor, unbuffered.
    const firstEvent = await new Promise((resolve, reject) => {
      const req = https.get({ host: '127.0.0.1', port: S.tls, path: `${BASE}/events`, ca: S.cert, headers: { accept: 'text/event-stream' } }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => {
          text += c;
          const m = /(^|\n)id: ([^\n]+)\n/.exec(text);
          if (m) { req.destroy(); resolve({ status: res.statusCode, type: res.headers['content-type'], id: m[2] }); }
        });
      });
      req.on('error', (e) => { if (e.code !== 'ECONNRESET') reject(e); });
      setTimeout(() => { req.destroy(); reject(new Error('no event through nginx within 10 s')); }, 10000).unref();
    });
    assert.equal(firstEvent.status, 200);
    assert.match(firstEvent.type, /^text\/event-stream/);
    assert.equal(firstEvent.id, `${t.epoch}-${t.version}`);

    // A long-poll waiting for the next vote gets it.
    // (Whether the vote lands before the long-poll waits or after, the answer is the same.)
    const waiting = request(`/get_new_vote?since=${t.version}&epoch=${t.epoch}`);
    await server.vote(S.uids[1]);
    const lp = await waiting;
    assert.equal(lp.status, 200, lp.body);
    const j = JSON.parse(lp.body);
    assert.equal(j.status, true, lp.body);
    assert.equal(j.version, t.version + 1, lp.body);

    // The WebSocket handshake through nginx: the browser's Origin is https://HOST:PORT, which is
    // the forwarded scheme and host; the same origin with http:// is another site.
    const handshake = (origin) => new Promise((resolve, reject) => {
      const sock = tls.connect({ host: '127.0.0.1', port: S.tls, ca: S.cert, ALPNProtocols: ['http/1.1'] }, () => {
        sock.write(`GET ${BASE}/get_new_vote HTTP/1.1\r\nHost: 127.0.0.1:${S.tls}\r\nUpgrade: websocket\r\n`
          + `Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n`
          + `Origin: ${origin}\r\n\r\n`);
      });
      let text = '';
      sock.setEncoding('latin1');
      sock.on('data', (c) => {
        text += c;
        const end = text.indexOf('\r\n\r\n');
        if (end >= 0) {
          const status = Number(text.split(' ')[1]);
          // After a 101, the first frame: the resume message (a text frame, unmasked).
          if (status !== 101 || text.length > end + 4 + 2) { sock.destroy(); resolve({ status, rest: text.slice(end + 4) }); }
        }
      });
      sock.on('error', reject);
      setTimeout(() => { sock.destroy(); reject(new Error(`no handshake answer for ${origin}`)); }, 10000).unref();
    });
    const ok = await handshake(`https://127.0.0.1:${S.tls}`);
    assert.equal(ok.status, 101);
    assert.equal(ok.rest.charCodeAt(0), 0x81, 'a text frame follows the handshake');
    assert.equal((await handshake(`http://127.0.0.1:${S.tls}`)).status, 403);

    // Plain HTTP is a redirect to HTTPS; outside the prefix there is nothing.
    const plain = await new Promise((resolve, reject) => {
      require('node:http').get({ host: '127.0.0.1', port: S.http, path: `${BASE}/index` }, (res) => { res.resume(); resolve(res); }).on('error', reject);
    });
    assert.equal(plain.statusCode, 301);
    assert.equal(plain.headers.location, `https://127.0.0.1${BASE}/index`);
    const outside = await new Promise((resolve, reject) => {
      https.get({ host: '127.0.0.1', port: S.tls, path: '/index', ca: S.cert }, (res) => { res.resume(); resolve(res.statusCode); }).on('error', reject);
    });
    assert.equal(outside, 404);
    // The no-JavaScript form's redirect stays below the prefix.
    const back = await request('/vote', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `uid=${S.uids[0]}&back=${encodeURIComponent(BASE + '/index?transport=poll')}` });
    assert.equal(back.status, 303, back.body);
    assert.equal(back.headers.location, `${BASE}/index?transport=poll`);
  });

  it('livevote sees the client nginx saw, not what the client claims', { timeout: 30000 }, async () => {
    // A client on 127.0.0.2 (nginx sees it there; nginx itself reaches livevote from the trusted
    // 127.0.0.1) that claims to be someone else in both forwarding headers.
    const id = `proxied-${Date.now()}`;
    const r = await request(`/votes?viewer=${id}&transport=poll`, {
      localAddress: '127.0.0.2',
      headers: { 'x-forwarded-for': '6.6.6.6', forwarded: 'for=6.6.6.7;proto=http;host=evil.example' },
    });
    assert.equal(r.status, 200, r.body);
    const lines = await waitLog(`viewer=${id}&`, 'the forged request');
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.ok(lines[0].startsWith('127.0.0.2 '), `logged as ${lines[0]}`);
  });

  it('deploy/caddy/Caddyfile passes caddy validate', { timeout: 60000 }, () => {
    const caddy = ['/usr/bin/caddy'].find((p) => fs.existsSync(p)) || 'caddy';
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'livevote-e2e-caddy-'));
    try {
      const r = spawnSync(caddy, ['validate', '--config', CADDYFILE, '--adapter', 'caddyfile'], {
        encoding: 'utf8', timeout: 50000, cwd: home,
        env: { ...process.env, HOME: home, XDG_DATA_HOME: home, XDG_CONFIG_HOME: home },
      });
      assert.equal(r.status, 0, `caddy validate: ${r.error || ''}${r.stdout}${r.stderr}`);
      assert.match(r.stdout + r.stderr, /Valid configuration/);
    } finally {
      fs.rmSync(home, { recursive: true, force: true });
    }
  });
});
