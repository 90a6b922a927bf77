// 1. For each forced transport and for the default page (auto): two viewers in separate browser
//    contexts each vote by double-click, and each sees both votes — exactly the server's tally.
'use strict';

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const L = require('../lib');

const S = L.suite('1-two-viewers');
const { server } = S;

// [label, page query, the transport #status must show], for every transport and the default page.
const { CASES } = L;

describe('two browser contexts vote and see each other\'s votes', () => {
  for (const [label, query, transport] of CASES) {
    it(`${label}: /index${query}`, { timeout: 60000 }, async () => {
      const viewers = [];
      try {
        const a = await L.openViewer(S.browser, server, '/index' + query, { name: `${label}-A` });
        viewers.push(a);
        const b = await L.openViewer(S.browser, server, '/index' + query, { name: `${label}-B` });
        viewers.push(b);
        for (const v of viewers) await L.waitConnected(v, transport);

        // Each votes once, for a different candidate, and the server counts exactly that.
        await L.voteByDblclick(a, server, S.uids[0]);
        await L.voteByDblclick(b, server, S.uids[1 % S.uids.length]);

        // Both pages end on the server's tally (counts and version), still connected.
        for (const v of viewers) await L.waitForTally(v, server, { transport });

        L.checkViewers(assert, viewers);
      } finally {
        await L.closeViewers(viewers, `1-two-viewers-${label}`);
      }
    });
  }
});
