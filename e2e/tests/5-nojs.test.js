// 5. Voting without JavaScript: each candidate's <form method="post"> button votes, the
//    server answers 303 See Other back to the page, which shows the new count; the page
//    also refreshes itself (like the tutorial's polling page) to show others' votes.
'use strict';

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const L = require('../lib');

const S = L.suite('5-nojs');
const { server, viewers } = S;

describe('no JavaScript', () => {
  it('the Vote button posts the form, gets 303 back to the page, which shows the new count', { timeout: 60000 }, async () => {
    await server.vote(S.uids[0]); // not all zeros
    const v = await L.openViewer(S.browser, server, '/index', { name: 'nojs', javaScriptEnabled: false });
    viewers.push(v);
    const page = v.page;
    assert.equal(await page.evaluate(() => 1).catch(() => 'disabled'), 1, 'page.evaluate still works (utility world)');
    const uid = S.uids[1 % S.uids.length];
    const form = page.locator(`#user_${uid} form`);
    assert.equal(await form.count(), 1, `#user_${uid} has one <form>`);
    assert.equal((await form.getAttribute('method') || '').toLowerCase(), 'post', 'the form posts');
    const before = await server.tally();
    const startUrl = page.url();

    await L.settle(v); // the page refreshes itself: act right after a load
    const posted = page.waitForResponse((r) => r.request().method() === 'POST', { timeout: 10000 });
    await page.locator(`#user_${uid} form button`).click();
    const res = await posted;
    assert.equal(res.status(), 303, `POST ${res.url()} answers 303 See Other`);
    const location = (await res.headerValue('location')) || '';
    await page.waitForLoadState('load');
    await server.waitTotal(before.total + 1, L.WAIT.vote, 'after the no-JS form');

    // Back on a vote page of this server, showing the new count.
    const after = await server.tally();
    assert.equal(after.counts[uid], before.counts[uid] + 1);
    const s = await L.waitForPage(v, (st) => L.sameCounts(st.counts, after.counts), {
      timeout: 5000, what: `show the new tally ${JSON.stringify(after.counts)} after the 303 (Location: ${location})`,
    });
    assert.match(new URL(s.url).pathname, /^\/index/, `the 303 leads back to the vote page (${s.url}, from ${startUrl})`);
    L.checkViewers(assert, viewers);
  });

  it('the page refreshes itself and shows a vote cast elsewhere', { timeout: 60000 }, async () => {
    let v = viewers[0];
    if (!v) {
      v = await L.openViewer(S.browser, server, '/index', { name: 'nojs', javaScriptEnabled: false });
      viewers.push(v);
    }
    await server.vote(S.uids[0]);
    const t = await server.tally();
    await L.waitForPage(v, (st) => L.sameCounts(st.counts, t.counts), {
      timeout: 15000, what: `refresh itself and show ${JSON.stringify(t.counts)}`,
    });
    L.checkViewers(assert, viewers);
  });
});
