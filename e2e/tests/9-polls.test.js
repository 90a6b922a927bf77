// 9. Polls (issue 13): an admin signs in on /admin and creates a poll through its form; two
//    voters on phones (mobile viewports, touch) open /p/ID and tap Vote for different options;
//    the presenter view, in the admin's browser context (it holds the admin cookie), follows
//    both votes live, and a moved vote; the QR code in its screenshot decodes, with Debian's
//    zbarimg, to the join address it shows. And `after_close`: a voter's page shows no count
//    until the admin closes the poll, then every count, without a reload.
'use strict';

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const L = require('../lib');

const TOKEN = 'e2e-admin-token-0123456789';
const S = L.suite('9-polls', { args: ['--admin-token', TOKEN] });
const { server, viewers } = S;

// A phone: what the voters use.
const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };

// The poll as the admin API sees it (every count, hidden or not): { uid: count }.
async function adminCounts(id) {
  const res = await fetch(server.url(`/api/polls/${id}`), {
    headers: { Authorization: `Bearer ${TOKEN}` }, cache: 'no-store', signal: AbortSignal.timeout(5000),
  });
  if (res.status !== 200) throw new Error(`GET /api/polls/${id} → ${res.status}`);
  const p = await res.json();
  return Object.fromEntries(p.candidates.map((c) => [String(c.uid), Number(c.count)]));
}

// Waits until the server has counted exactly `want` ({ uid: count }) in poll `id`.
async function waitCounts(id, want, what) {
  const deadline = Date.now() + L.WAIT.vote;
  let got;
  for (;;) {
    got = await adminCounts(id);
    if (L.sameCounts(got, want)) return got;
    if (Date.now() > deadline) throw new Error(`poll ${id}: the server counts ${JSON.stringify(got)}, expected ${JSON.stringify(want)} ${what}`);
    await L.sleep(50);
  }
}

// Waits until a page shows exactly `want` as its counts.
const waitShows = (v, want, what) => L.waitForPage(v, (s) => L.sameCounts(s.counts, want), {
  timeout: L.WAIT.converge, what: `show ${JSON.stringify(want)} ${what}`,
});

const text = (v, sel) => v.page.locator(sel).textContent().then((t) => t.trim());

// The admin page: sign in with the token (typed once), wait for the poll list.
async function signIn() {
  const admin = await L.openViewer(S.browser, server, '/admin', { name: 'admin' });
  viewers.push(admin);
  await admin.page.locator('#token').fill(TOKEN);
  await admin.page.getByRole('button', { name: 'Sign in' }).click();
  await admin.page.locator('#poll-default').waitFor();
  return admin;
}

// Creates a poll through the admin page's form; waits until it is listed.
async function createPoll(admin, { id, question, options, mode, results }) {
  const p = admin.page;
  await p.locator('#question').fill(question);
  for (let i = 2; i < options.length; i++) await p.locator('#add-option').click();
  const inputs = p.locator('#options input');
  assert.equal(await inputs.count(), options.length, 'one row per option');
  for (let i = 0; i < options.length; i++) await inputs.nth(i).fill(options[i]);
  await p.locator('#poll-id').fill(id);
  await p.locator('#mode').selectOption(mode);
  await p.locator('#results').selectOption(results);
  await p.getByRole('button', { name: 'Create the poll' }).click();
  await p.locator(`#poll-${id}`).waitFor();
  return p.locator(`#poll-${id}`);
}

// Taps a voter's Vote button for `uid` (a touch tap, as on a phone).
const tapVote = (v, uid) => v.page.locator(`#user_${uid} form button`).tap();

describe('polls: admin page, phones, presenter view', () => {
  it('an admin creates a poll, two phones vote, the presenter follows live, its QR code decodes to the join address', { timeout: 90000 }, async () => {
    const admin = await signIn();
    const row = await createPoll(admin, {
      id: 'drinks', question: 'Tea or coffee?', options: ['Tea', 'Coffee', 'Water'], mode: 'change', results: 'always',
    });
    assert.match(await row.locator('h3').textContent(), /Tea or coffee\?/);

    // The presenter view, opened from the admin page's link, in the admin's context.
    const href = await row.locator('a.present').getAttribute('href');
    assert.equal(href, '/p/drinks/present');
    const presenter = await L.openViewer(S.browser, server, href, { name: 'presenter', context: admin.context });
    viewers.push(presenter);
    await L.waitConnected(presenter, 'ws');

    const a = await L.openViewer(S.browser, server, '/p/drinks', { name: 'phone-A', contextOptions: PHONE });
    viewers.push(a);
    const b = await L.openViewer(S.browser, server, '/p/drinks', { name: 'phone-B', contextOptions: PHONE });
    viewers.push(b);
    for (const v of [a, b]) await L.waitConnected(v, 'ws');

    await tapVote(a, '1');
    await waitCounts('drinks', { 1: 1, 2: 0, 3: 0 }, 'after phone A tapped Tea');
    await tapVote(b, '2');
    await waitCounts('drinks', { 1: 1, 2: 1, 3: 0 }, 'after phone B tapped Coffee');

    for (const v of [presenter, a, b]) await waitShows(v, { 1: 1, 2: 1, 3: 0 }, 'after both votes');
    assert.match(await text(presenter, '#summary'), /^2 votes · tied: Tea, Coffee/);
    assert.match(await text(a, '#summary'), /You voted for Tea/);
    assert.match(await text(b, '#summary'), /You voted for Coffee/);
    assert.equal(await a.page.locator('li.mine').getAttribute('id'), 'user_1');

    // `change`: phone A moves its vote to Coffee; both counts move in one version.
    await tapVote(a, '2');
    await waitCounts('drinks', { 1: 0, 2: 2, 3: 0 }, 'after phone A moved its vote');
    for (const v of [presenter, a, b]) await waitShows(v, { 1: 0, 2: 2, 3: 0 }, 'after the moved vote');
    assert.match(await text(presenter, '#summary'), /^2 votes · leading: Coffee/);
    assert.match(await text(a, '#summary'), /You voted for Coffee/);
    assert.equal(await presenter.page.locator('#user_2').evaluate((li) => li.style.getPropertyValue('--share')), '100.0%');
    assert.equal(await presenter.page.locator('#user_2 small.pct').textContent(), '100%');

    await L.screenshot(presenter, '9-polls-presenter-live');

    // The QR code: a screenshot of it decodes to the join address the page shows, which is the
    // address the presenter used.
    const join = await text(presenter, '#join-url');
    assert.equal(join, server.url('/p/drinks'));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'livevote-e2e-qr-'));
    try {
      const png = path.join(dir, 'qr.png');
      await presenter.page.locator('#qr').screenshot({ path: png });
      const decoded = execFileSync('zbarimg', ['--raw', '-q', png], { encoding: 'utf8', timeout: 10000 }).trim();
      assert.equal(decoded, join, 'the QR code decodes to the join address');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }

    for (const v of [a, b]) assert.equal(v.loads, 1, `${v.name} did not reload`);
    L.checkViewers(assert, viewers);
  });

  it('after_close: a voter sees no count until the admin closes the poll, then every count without a reload', { timeout: 60000 }, async () => {
    const admin = viewers.find((v) => v.name === 'admin') || await signIn();
    const row = await createPoll(admin, {
      id: 'secret', question: 'Who wins?', options: ['Red', 'Blue'], mode: 'unlimited', results: 'after_close',
    });

    const v = await L.openViewer(S.browser, server, '/p/secret', { name: 'phone-secret', contextOptions: PHONE });
    viewers.push(v);
    await L.waitConnected(v, 'ws');
    const digits = () => v.page.evaluate(() => [...document.querySelectorAll('#candidates li')]
      .map((li) => (li.querySelector('span') || {}).textContent + (li.querySelector('.pct') ? '%' : '')).join('|'));

    await tapVote(v, '1');
    await waitCounts('secret', { 1: 1, 2: 0 }, 'after the tap on Red');
    // The page learns the total, and nothing else.
    await L.waitForPage(v, async () => /^1 vote · Results are hidden for now/.test(await text(v, '#summary')), {
      timeout: L.WAIT.converge, what: 'show "1 vote · Results are hidden for now"',
    });
    await L.sleep(500); // room for a count to arrive, if one wrongly did
    assert.doesNotMatch(await digits(), /[0-9%]/, 'no count while the results are hidden');

    await row.locator('button.close').click();
    await waitShows(v, { 1: 1, 2: 0 }, 'after the admin closed the poll');
    assert.match(await text(v, '#summary'), /^1 vote · leading: Red · This poll is closed/);
    assert.equal(await v.page.locator('#user_1 form button').isDisabled(), true, 'a closed poll takes no votes');
    assert.equal(v.loads, 1, 'the page did not reload');
    L.checkViewers(assert, viewers);
  });
});
