// 2. Pages on the four transports, open at once, converge on the same tally after a burst of
//    votes from all of them and from plain HTTP POSTs (what curl -d uid=1 /vote does).
//    Also: every page's #presence shows the server's viewer count.
'use strict';

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const L = require('../lib');

const S = L.suite('2-converge');
const { server, viewers } = S;
const TRANSPORTS = ['ws', 'sse', 'longpoll', 'poll'];
const PER_PAGE = 3; // double-clicks per page
const HTTP_VOTES = 12; // POST /vote from node, concurrently with the pages' votes

describe('four transports at once', () => {
  it('converge on the same tally after a burst of votes', { timeout: 90000 }, async () => {
    for (const t of TRANSPORTS) viewers.push(await L.openViewer(S.browser, server, `/index?transport=${t}`, { name: t }));
    for (let i = 0; i < viewers.length; i++) await L.waitConnected(viewers[i], TRANSPORTS[i]);

    const before = await server.tally();
    // The burst: HTTP votes in flight while every page double-clicks.
    const expected = await L.voteBurst(server, viewers, S.uids, { httpVotes: HTTP_VOTES, perPage: PER_PAGE, before: before.total });
    await server.waitTotal(expected, L.WAIT.vote, 'after the burst');

    for (let i = 0; i < viewers.length; i++) {
      await L.waitForTally(viewers[i], server, { transport: TRANSPORTS[i] });
    }
    // All four show the same thing at the end.
    const shown = [];
    for (const v of viewers) shown.push(await L.readState(v.page));
    for (const s of shown.slice(1)) {
      assert.deepStrictEqual({ counts: s.counts, version: s.version }, { counts: shown[0].counts, version: shown[0].version });
    }
    L.checkViewers(assert, viewers);
  });

  it('every page shows the server\'s viewer count in #presence', { timeout: 60000 }, async () => {
    if (viewers.length !== TRANSPORTS.length) {
      for (const t of TRANSPORTS) {
        if (!viewers.some((v) => v.name === t)) viewers.push(await L.openViewer(S.browser, server, `/index?transport=${t}`, { name: t }));
      }
    }
    // The server counts one viewer per open page, one on each transport.
    const deadline = Date.now() + 15000;
    let p;
    for (;;) {
      p = (await server.tally()).presence;
      if (p && p.total === 4 && p.ws === 1 && p.sse === 1 && p.longpoll === 1 && p.poll === 1) break;
      if (Date.now() > deadline) assert.fail(`GET /votes presence: ${JSON.stringify(p)}, expected total 4 with 1 per transport`);
      await L.sleep(200);
    }
    for (const v of viewers) {
      await L.waitForPage(v, (s) => s.presence != null && /(^|\D)4(\D|$)/.test(s.presence), {
        timeout: 15000, what: '#presence showing 4 viewers',
      });
    }
    L.checkViewers(assert, viewers);
  });
});
