// 4. The fallback ladder (the default page, `auto`: ws → sse → longpoll → poll) lands on
//    long-polling when WebSocket and SSE are refused, shows it, and voting still works both ways.
'use strict';

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const L = require('../lib');

const S = L.suite('4-fallback');
const { server, viewers } = S;

// Refuse the two better rungs: every WebSocket to /get_new_vote is closed at once (before any
// message), and every request to /events fails.
async function refuseWsAndSse(page) {
  await page.routeWebSocket(/\/get_new_vote/, (ws) => { ws.close(); });
  await page.route(/\/events(\?|$)/, (route) => route.abort());
}

describe('fallback ladder', () => {
  it('lands on long-polling when WebSocket and SSE are refused, and voting still works', { timeout: 90000 }, async () => {
    const fb = await L.openViewer(S.browser, server, '/index', { name: 'auto-refused', setup: refuseWsAndSse });
    viewers.push(fb);
    await L.waitConnected(fb, 'longpoll', 30000);

    // A plain WebSocket viewer next to it.
    const other = await L.openViewer(S.browser, server, '/index?transport=ws', { name: 'ws' });
    viewers.push(other);
    await L.waitConnected(other, 'ws');

    // Both ways: the long-polling page votes and the other sees it; HTTP votes reach it.
    await L.voteByDblclick(fb, server, S.uids[0]);
    await L.voteByDblclick(other, server, S.uids[1 % S.uids.length]);
    await server.vote(S.uids[0]);
    await server.waitTotal(3);
    await L.waitForTally(fb, server, { transport: 'longpoll' });
    await L.waitForTally(other, server, { transport: 'ws' });

    // It did not leave long-polling behind for a refused rung (it may retry them later).
    const s = await L.readState(fb.page);
    assert.equal(s.transport, 'longpoll');
    // It really used long-polling.
    assert.ok(fb.requests.some((u) => /\/get_new_vote\?/.test(u) || /\/get_new_vote$/.test(u)),
      'the page requested /get_new_vote over HTTP');

    // The refused /events requests are logged by Chromium as net::ERR_FAILED: expected.
    L.checkViewers(assert, viewers, { allowNetErrors: (e) => /\/events(\?|$)/.test(e.url) || /\/get_new_vote/.test(e.text) });
  });
});
