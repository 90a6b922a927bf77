// 7. Many instances as one (issue 10), through `make cluster`'s own set-up: redis-server (AOF,
//    appendfsync always), three instances on `--redis`, and nginx round-robin with no stickiness
//    in front (scripts/cluster.sh --background). Pages open nginx's URL on every transport (and
//    the default page), so their requests — the page, each long-poll, each poll, each vote —
//    land on whichever instance nginx picks. They vote by double-click, together with POSTs
//    through nginx, and every page must end on the same tally, which each of the three
//    instances, asked directly, shows too. The viewer count is the total over the instances.
//    Last, one instance is killed with kill -9: its pages reconnect through nginx to the
//    others, votes go on, and every page ends on the tally the two left agree on.
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const L = require('../lib');

const cluster = new L.Cluster();
const viewers = [];
const S = { browser: null, uids: null };
const PER_PAGE = 2; // double-clicks per page
const HTTP_VOTES = 9; // POST /vote through nginx, concurrently with the pages' votes

before(async () => {
  await cluster.start();
  S.browser = await L.launchBrowser();
  S.uids = await L.candidates(cluster);
});

// Runs even when a test (or the before hook) failed: the pages, the browser, then the
// cluster, stopped by pid and its temp dir removed.
after(async () => {
  await L.closeViewers(viewers.splice(0), '7-cluster');
  if (S.browser) await S.browser.close().catch(() => {});
  await cluster.stop();
});

// A failed assertion also says what the cluster's logs ended with.
async function withLogs(fn) {
  try {
    await fn();
  } catch (err) {
    err.message += `\ncluster logs:\n${cluster.logs()}`;
    throw err;
  }
}

// How many requests for `GET /votes` an instance has logged so far (its access log on stderr).
function votesRequests(i) {
  const text = fs.readFileSync(path.join(cluster.dir, `livevote-${i + 1}.log`), 'utf8');
  return (text.match(/"GET \/votes HTTP\/1\.[01]" 200 /g) || []).length;
}

// Open WebSocket connections of one instance (the ws and auto pages), from its /metrics.
// (Not SSE: with --redis, livevote_open_connections{transport="sse"} is taken from presence,
// the total over all instances, so it does not say which instance holds the stream.)
async function liveConnections(inst) {
  const res = await fetch(inst.url('/metrics'), { signal: AbortSignal.timeout(5000) });
  const text = await res.text();
  let n = 0;
  for (const m of text.matchAll(/^livevote_open_connections\{transport="ws"\} (\d+)$/gm)) n += Number(m[1]);
  return n;
}

describe('make cluster: three instances on one Redis behind nginx', () => {
  it('nginx spreads requests over all three, which share one tally', { timeout: 60000 }, () => withLogs(async () => {
    assert.equal(cluster.instances.length, 3, 'three instances');
    assert.equal(cluster.pageUrl, `http://127.0.0.1:${cluster.ports.nginx}/index`, 'the one URL printed');
    assert.match(cluster.startOutput, /--trusted-proxy 127\.0\.0\.1/, 'says nginx is trusted for client addresses');

    // Round-robin, no stickiness: nine requests through nginx reach every instance. The
    // access log is written by a thread of its own, so wait (bounded) for the lines.
    const before = cluster.instances.map((_, i) => votesRequests(i));
    for (let k = 0; k < 9; k++) await cluster.votes();
    const deadline = Date.now() + 5000;
    let now;
    for (;;) {
      now = cluster.instances.map((_, i) => votesRequests(i));
      if (now.every((n, i) => n > before[i])) break;
      if (Date.now() > deadline) assert.fail(`GET /votes through nginx per instance: before ${before}, after ${now}: not every instance got one`);
      await L.sleep(50);
    }

    // Votes through nginx, one after the other: every instance, asked directly, has them all.
    const start = await cluster.tally();
    for (let k = 0; k < 6; k++) await cluster.vote(S.uids[k % S.uids.length]);
    const t = await cluster.waitTotal(start.total + 6, L.WAIT.vote, 'after 6 POSTs through nginx');
    for (const inst of cluster.instances) {
      const mine = await inst.tally();
      assert.deepStrictEqual({ epoch: mine.epoch, version: mine.version, counts: mine.counts },
        { epoch: t.epoch, version: t.version, counts: t.counts }, `${inst.name} (127.0.0.1:${inst.port}) directly`);
    }
  }));

  it('pages on every transport through nginx converge on the same tally', { timeout: 120000 }, () => withLogs(async () => {
    for (const [label, query] of L.CASES) {
      viewers.push(await L.openViewer(S.browser, cluster, '/index' + query, { name: label }));
    }
    for (let i = 0; i < L.CASES.length; i++) await L.waitConnected(viewers[i], L.CASES[i][2]);

    const before = await cluster.tally();
    // The burst: POSTs through nginx in flight while every page double-clicks.
    const expected = await L.voteBurst(cluster, viewers, S.uids, { httpVotes: HTTP_VOTES, perPage: PER_PAGE, before: before.total });
    const t = await cluster.waitTotal(expected, L.WAIT.vote, 'after the burst');

    // Every page shows exactly the tally the instances agree on, still on its transport.
    for (let i = 0; i < viewers.length; i++) {
      await L.waitForTally(viewers[i], cluster, { transport: L.CASES[i][2] });
    }
    const shown = [];
    for (const v of viewers) shown.push(await L.readState(v.page));
    for (let i = 0; i < shown.length; i++) {
      assert.deepStrictEqual({ counts: shown[i].counts, version: shown[i].version },
        { counts: t.counts, version: t.version }, `${viewers[i].name}'s page`);
    }
    // And each instance, asked directly (not through nginx), says the same.
    for (const inst of cluster.instances) {
      const mine = await inst.tally();
      assert.deepStrictEqual({ epoch: mine.epoch, version: mine.version, counts: mine.counts },
        { epoch: t.epoch, version: t.version, counts: t.counts }, `${inst.name} (127.0.0.1:${inst.port}) directly`);
    }
    L.checkViewers(assert, viewers);
  }));

  it('every instance and every page count the viewers of all instances once', { timeout: 60000 }, () => withLogs(async () => {
    if (viewers.length !== L.CASES.length) {
      for (const [label, query] of L.CASES) {
        if (!viewers.some((v) => v.name === label)) viewers.push(await L.openViewer(S.browser, cluster, '/index' + query, { name: label }));
      }
    }
    // Five pages: ws and auto (→ ws) on WebSocket, one each on SSE, long-polling and polling.
    // The long-poller and the poller alternate between instances and still count once.
    const want = { total: 5, ws: 2, sse: 1, longpoll: 1, poll: 1 };
    const deadline = Date.now() + 15000;
    for (;;) {
      const all = await Promise.all(cluster.instances.map((s) => s.tally()));
      const ps = all.map((t) => t.presence || {});
      const ok = ps.every((p) => Object.entries(want).every(([k, n]) => p[k] === n));
      if (ok) break;
      if (Date.now() > deadline) {
        assert.fail(`GET /votes presence per instance: ${JSON.stringify(ps)}, expected ${JSON.stringify(want)} on each`);
      }
      await L.sleep(200);
    }
    for (const v of viewers) {
      await L.waitForPage(v, (s) => s.presence != null && /(^|\D)5(\D|$)/.test(s.presence), {
        timeout: 15000, what: '#presence showing 5 viewers',
      });
    }
    L.checkViewers(assert, viewers);
  }));

  it('an instance killed with kill -9: its pages reconnect through nginx and lose nothing', { timeout: 120000 }, () => withLogs(async () => {
    if (viewers.length !== L.CASES.length) {
      for (const [label, query] of L.CASES) {
        if (!viewers.some((v) => v.name === label)) viewers.push(await L.openViewer(S.browser, cluster, '/index' + query, { name: label }));
      }
      for (let i = 0; i < L.CASES.length; i++) await L.waitConnected(viewers[i], L.CASES[i][2]);
    }
    // The instance holding the most WebSocket pages (from its own /metrics) is the one killed,
    // so that at least one page certainly loses its live connection.
    const held = await Promise.all(cluster.instances.map(liveConnections));
    const total = held.reduce((a, b) => a + b, 0);
    const victim = cluster.instances[held.indexOf(Math.max(...held))].name;
    assert.ok(Math.max(...held) >= 1, `WebSockets per instance: ${held}`);
    const before = await cluster.tally();
    await cluster.killInstance(victim);
    assert.equal(cluster.instances.length, 2, 'two instances left');
    // Its pages reconnect through nginx: the instances left hold every WebSocket page again.
    const deadline = Date.now() + L.WAIT.reconnect;
    for (;;) {
      const now = await Promise.all(cluster.instances.map(liveConnections));
      if (now.reduce((a, b) => a + b, 0) === total) break;
      if (Date.now() > deadline) assert.fail(`after killing ${victim} (${held}): the others hold ${now} WebSockets, expected ${total} in all`);
      await L.sleep(100);
    }

    // Votes through nginx while the pages that were on livevote2 reconnect: nginx sends each
    // request that livevote2 refuses to the next instance, so every one is answered 200.
    const AFTER = 6;
    for (let k = 0; k < AFTER; k++) await cluster.vote(S.uids[(k * 3 + 1) % S.uids.length]);
    // And one more double-click from every page, each counted exactly once.
    for (let i = 0; i < viewers.length; i++) {
      await L.waitConnected(viewers[i], L.CASES[i][2], L.WAIT.reconnect);
      await L.voteByDblclick(viewers[i], cluster, S.uids[i % S.uids.length]);
    }
    const t = await cluster.waitTotal(before.total + AFTER + viewers.length, L.WAIT.vote, 'after the kill');
    assert.equal(t.epoch, before.epoch, 'the same epoch: the tally lives in Redis, not in the instance');
    for (let i = 0; i < viewers.length; i++) {
      await L.waitForTally(viewers[i], cluster, { transport: L.CASES[i][2], timeout: L.WAIT.reconnect });
    }
    // Chromium may log the live connections that livevote2 took down with it (a stream cut
    // short): its own net::ERR_ lines about our 127.0.0.1 URLs, and only those, are allowed.
    L.checkViewers(assert, viewers, { allowNetErrors: (e) => e.url === '' || L.isLocal(e.url) });
  }));
});
