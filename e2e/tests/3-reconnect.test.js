// 3. Reconnect and catch-up: pages on every transport (and the default page) stay open while
//    the server is stopped and started again on the same port. The server keeps its tally in
//    memory only, so the restart is a new epoch starting at zero: the pages must adopt it. Votes
//    are cast over HTTP while the pages reconnect; every page must end on exactly the server's
//    tally, connected again, on the transport it had.
'use strict';

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const L = require('../lib');

const S = L.suite('3-reconnect');
const { server, viewers } = S;
const { CASES } = L;
// More votes before than after: the new epoch's versions and counts are lower than the old
// ones, which a page that only ever takes "newer" numbers would never show.
const BEFORE_VOTES = 9;
const AFTER_VOTES = 6;

describe('server restart', () => {
  it('every page reconnects and ends on exactly the new epoch\'s tally', { timeout: 120000 }, async () => {
    for (const [label, query] of CASES) {
      viewers.push(await L.openViewer(S.browser, server, '/index' + query, { name: label }));
    }
    for (let i = 0; i < CASES.length; i++) await L.waitConnected(viewers[i], CASES[i][2]);

    // A tally that is not zero, seen by every page.
    for (let i = 0; i < BEFORE_VOTES; i++) await server.vote(S.uids[i % S.uids.length]);
    for (let i = 0; i < CASES.length; i++) await L.waitForTally(viewers[i], server, { transport: CASES[i][2] });
    const old = await server.tally();

    // Down: no votes while it is away. Every page must notice.
    await server.stop();
    await Promise.all(viewers.map((v) => L.waitDisconnected(v)));
    const port = server.port;

    // Up again on the same port: a new epoch at zero. Votes land while the pages reconnect.
    await server.start();
    assert.equal(server.port, port, 'restarted on the same port');
    const fresh = await server.tally();
    assert.notEqual(fresh.epoch, old.epoch, 'a memory-only restart is a new epoch');
    assert.equal(fresh.total, 0, 'a memory-only restart starts at zero');
    for (let i = 0; i < AFTER_VOTES; i++) {
      await server.vote(S.uids[(i * 3 + 1) % S.uids.length]);
      await L.sleep(150);
    }
    const now = await server.waitTotal(AFTER_VOTES);
    assert.ok(now.version < old.version, `test premise: new version ${now.version} < old ${old.version}`);

    for (let i = 0; i < CASES.length; i++) {
      await L.waitForTally(viewers[i], server, { transport: CASES[i][2], timeout: L.WAIT.reconnect });
    }

    // Chromium logs the connections refused/reset while the server was down: expected, and
    // only those (net::ERR_ lines about our own server).
    L.checkViewers(assert, viewers, { allowNetErrors: (e) => e.url === '' || L.isLocal(e.url) });
  });
});
