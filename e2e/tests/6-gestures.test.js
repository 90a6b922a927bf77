// 6. With JavaScript on, the other gestures vote without leaving the page: a click on a
//    candidate's Vote button, and Enter on a focused candidate. Exactly one vote each.
'use strict';

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const L = require('../lib');

const S = L.suite('6-gestures');
const { server, viewers } = S;

describe('voting gestures with JavaScript on', () => {
  for (const transport of ['ws', 'longpoll']) {
    it(`${transport}: the Vote button and the Enter key vote in place, once each`, { timeout: 60000 }, async () => {
      const v = await L.openViewer(S.browser, server, `/index?transport=${transport}`, { name: `gestures-${transport}` });
      viewers.push(v);
      await L.waitConnected(v, transport);
      const url = v.page.url();
      const loads = v.loads;

      let t = await server.tally();
      await v.page.locator(`#user_${S.uids[0]} form button`).click();
      t = await server.waitTotal(t.total + 1, L.WAIT.vote, 'after a click on the Vote button');

      await v.page.locator(`#user_${S.uids[1 % S.uids.length]}`).focus();
      await v.page.keyboard.press('Enter');
      t = await server.waitTotal(t.total + 1, L.WAIT.vote, 'after Enter on a focused candidate');

      await L.waitForTally(v, server, { transport });
      assert.equal(v.page.url(), url, 'the page did not navigate');
      assert.equal(v.loads, loads, 'the page did not reload');
      assert.ok(!v.responses.some((r) => r.status === 303), 'no form was posted the no-JS way');
      L.checkViewers(assert, viewers);
    });
  }
});
