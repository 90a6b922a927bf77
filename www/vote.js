// livevote — the vote page's client. Plain ES2018, no framework, no build step, nothing from
// another host.
//
// The page (www/index.template, rendered by GET /index) carries the tally in its DOM:
//   <ul id="candidates"><li id="user_ID" tabindex="0" style="--share:P%">NAME<span>COUNT</span>
//     <form method="post" action="/vote">…<button>Vote</button></form></li>…</ul>
// and the render-time state on <body data-transport data-version data-epoch
// data-presence-version data-back>.
//
// The live protocol is docs/PROTOCOL.md. One cursor (epoch, version) is kept here and sent on
// every (re)connect of every transport; the server's first answer says what happened (resume
// `snapshot`, `delta` or `live`) and is applied exactly. Counts are absolute and every count
// carries the version it is from, so applying the same news twice, or from two connections at
// once, changes nothing.
//
// Transports are plug-ins: { name, open(hooks) → conn }. A conn talks to the page only
// through `ctx` (cursor, resume, changes, snapshot, presence, postVote, notice) and reports to
// the connection manager through `hooks` (verified: the server's first message carrying the
// version has arrived; down: the connection is gone). conn.vote(uid) casts a vote through it,
// conn.close() ends it silently. Adding one = an object here, a rung in LADDER, a label.
//
// The manager runs the fallback ladder WebSocket → SSE → long-poll → polling (`auto`, the
// default) or one forced transport (`?transport=`), reconnects with jittered exponential
// backoff, and in `auto` retries the better rungs later, switching only once they are verified.
//
// Polls (docs/API.md): one page per poll, its routes under <body data-base> (`BASE` for the
// default poll, `BASE/p/ID` for others). The body also says the poll's rules and state
// (data-mode, data-results, data-state, data-hidden, data-voted), and the live messages keep
// them current: a snapshot carries `state`, `total` and, for a viewer who may not see the counts
// yet, `"hidden":true` and no count; such a viewer's live votes are `{"version","total"}`. A
// hidden page shows the total only and never makes a count up (empty <span>, no bar, no %).
// #summary repeats the server's line (total, leader or tie, "You voted for X", closed/hidden).
// With <body data-presenter> (www/present.template) the same code drives the presenter view,
// without the voting gestures.
'use strict';

(() => {
  // ---------------------------------------------------------------- constants

  const LADDER = ['ws', 'sse', 'longpoll', 'poll'];
  /** A rung of the ladder must deliver its first versioned message this fast, or it is
   *  dropped for the next one (this catches proxies that accept and then buffer). */
  const VERIFY_DEADLINE_MS = 3000;
  /** The same deadline for the last rung and for a forced transport, which have nothing to
   *  fall back to: missing it only means close and reconnect, so it can be patient. */
  const FLOOR_DEADLINE_MS = 15000;
  /** Reconnect delays: 1 s doubling up to 10 s, each jittered by ±25 %. */
  const RECONNECT_BASE_MS = 1000;
  const RECONNECT_CAP_MS = 10000;
  /** After a working connection drops, reconnect to the same transport alone this many
   *  times before walking down the ladder again: a restarting server refuses every transport
   *  alike, which says nothing about the transport. */
  const SAME_RUNG_RETRIES = 3;
  /** A connection that stayed up this long starts the reconnect delays over at 1 s. */
  const STABLE_MS = 10000;
  /** In `auto`, the better rungs are retried after 30 s, doubling up to 5 min (jittered). */
  const UPGRADE_BASE_MS = 30000;
  const UPGRADE_CAP_MS = 300000;
  /** Polling interval (as the tutorial's page). */
  const POLL_INTERVAL_MS = 2000;
  /** A /votes request silent this long is abandoned. */
  const POLL_TIMEOUT_MS = 10000;
  /** The server answers a long-poll within ~10 s; one silent much longer is stuck somewhere
   *  (a proxy, a sleeping laptop). */
  const LONGPOLL_ABORT_MS = 45000;
  /** Count changes are announced to screen readers at most this often (merged). */
  const ANNOUNCE_EVERY_MS = 1500;
  const RUNG_KEY = 'livevote.rung';
  const VIEWER_KEY = 'livevote.viewer';

  const LABELS = { ws: 'WebSocket', sse: 'Server-Sent Events', longpoll: 'Long-polling', poll: 'Polling' };

  const body = document.body;
  // `--base-path` (the server renders it; empty at the root): every URL this page asks for is
  // below it, so the page works behind a proxy that serves it under a prefix.
  const BASE = body.dataset.base || '';
  const at = (p) => BASE + p;
  const list = document.getElementById('candidates');
  const statusEl = document.getElementById('status');
  const versionEl = document.getElementById('version');
  const presenceEl = document.getElementById('presence');
  const noticeEl = document.getElementById('notice');
  const announceEl = document.getElementById('announce');
  const summaryEl = document.getElementById('summary');
  const presenter = body.dataset.presenter === 'true';

  // ---------------------------------------------------------------- helpers

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // Exponential delays with ±25 % jitter, so that a restarted server is not hit by every
  // client in the same instant.
  function backoff(base, cap) {
    let n = 0;
    return {
      next() {
        const d = Math.min(cap, base * 2 ** Math.min(n++, 16));
        return Math.round(d * (0.75 + Math.random() * 0.5));
      },
      reset() { n = 0; },
    };
  }

  const toInt = (v, fallback = 0) => {
    const n = Number.parseInt(v, 10);
    return Number.isFinite(n) ? n : fallback;
  };

  const store = {
    get(k) { try { return sessionStorage.getItem(k); } catch (_) { return null; } },
    set(k, v) { try { sessionStorage.setItem(k, v); } catch (_) { /* storage off: not kept */ } },
  };

  // 8–64 characters of A-Z a-z 0-9 _ - (docs/PROTOCOL.md); random, kept for this tab.
  const ID_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';
  function randomToken(len) {
    const bytes = new Uint8Array(len);
    crypto.getRandomValues(bytes);
    let s = '';
    for (const b of bytes) s += ID_CHARS[b & 63];
    return s;
  }
  const viewer = (() => {
    const kept = store.get(VIEWER_KEY);
    if (kept && /^[A-Za-z0-9_-]{8,64}$/.test(kept)) return kept;
    const id = randomToken(22);
    store.set(VIEWER_KEY, id);
    return id;
  })();
  // randomUUID exists only in secure contexts (not on plain http to a LAN address).
  const newVoteId = () => (typeof crypto.randomUUID === 'function' ? crypto.randomUUID() : randomToken(32));

  // The poll this page shows: its rules from the render, its state kept current by the live
  // messages. `at` is the version `closed`/`hidden`/`total` are from, so that older news (from a
  // second connection during an upgrade) cannot undo newer. `total` is the server's while the
  // counts are hidden, else the sum of the counts shown.
  const info = {
    mode: body.dataset.mode || 'unlimited',
    results: body.dataset.results || 'always',
    closed: body.dataset.state === 'closed',
    hidden: body.dataset.hidden === 'true',
    total: toInt(summaryEl && summaryEl.dataset.total),
    voted: body.dataset.voted || '',
    at: toInt(body.dataset.version),
  };
  // A poll that counts voters (one vote each, or counts shown after one's own vote) is voted
  // over HTTP whatever the transport: only an HTTP answer can set the voter cookie a first vote
  // gets (a WebSocket vote without it is refused), and it says exactly why a vote was refused
  // (409 `already voted` names the option).
  const countsVoters = info.mode !== 'unlimited' || info.results === 'after_vote';
  // Only the default poll has the tutorial's POST /ticket (polls under /p/ID take /vote).
  const defaultPoll = !/\/p\/[^/]+$/.test(BASE);

  // True while the page is being left: aborted requests and closing sockets are then expected
  // and must not show "reconnecting" nor schedule anything.
  let leaving = false;

  // ---------------------------------------------------------------- tally state

  // `epoch`/`version` is the cursor: everything up to `version` of run `epoch` has reached the
  // page through a live stream (never advanced by a POST answer, which would skip the votes
  // between). `seen` holds, per candidate, the version its displayed count is from: a count is
  // applied only if newer. `shown` is the newest version anything on the page is from.
  const state = {
    epoch: body.dataset.epoch || '',
    version: toInt(body.dataset.version),
    shown: toInt(body.dataset.version),
    seen: new Map(),
    pv: toInt(body.dataset.presenceVersion),
  };

  const itemFor = (uid) => document.getElementById('user_' + uid);
  const items = () => list.querySelectorAll(':scope > li[id^="user_"]');
  const uidOf = (li) => li.id.slice('user_'.length);
  const countSpan = (li) => li.querySelector(':scope > span');

  for (const li of items()) state.seen.set(uidOf(li), state.version);

  function nameOf(uid) {
    const li = itemFor(uid);
    const first = li && li.firstChild;
    return first && first.nodeType === Node.TEXT_NODE ? first.textContent.trim() : String(uid);
  }

  // Build a <li> exactly like the server renders one.
  function makeItem(uid, name, count) {
    const li = document.createElement('li');
    li.id = 'user_' + uid;
    li.tabIndex = 0;
    li.style.setProperty('--share', '0%');
    const span = document.createElement('span');
    span.textContent = count == null || info.hidden ? '' : String(toInt(count));
    const form = document.createElement('form');
    form.method = 'post';
    form.action = at('/vote');
    const hidden = (n, v) => {
      const input = document.createElement('input');
      input.type = 'hidden';
      input.name = n;
      input.value = v;
      return input;
    };
    const button = document.createElement('button');
    button.type = 'submit';
    button.setAttribute('aria-label', 'Vote for ' + name);
    button.textContent = 'Vote';
    form.append(hidden('uid', uid), hidden('back', body.dataset.back || at('/index')), button);
    li.append(String(name), span, form);
    return li;
  }

  // A candidate's name is the li's first text node (and its button's label).
  function rename(li, name) {
    const first = li.firstChild;
    if (first && first.nodeType === Node.TEXT_NODE) {
      if (first.textContent === name) return;
      first.textContent = name;
    } else {
      li.prepend(name);
    }
    const button = li.querySelector('button');
    if (button) button.setAttribute('aria-label', 'Vote for ' + name);
  }

  const shownCount = (li) => Math.max(0, toInt(countSpan(li) && countSpan(li).textContent));

  // Everything derived from the counts and the poll's state, redrawn after every change: the
  // bars (each candidate's share of all votes, drawn by CSS from --share) and percentages (as
  // the server renders them: none while hidden), the voter's own option (li.mine), the Vote
  // buttons (off while the poll is closed), and #summary.
  function updateShares() {
    const lis = [...items()];
    const counts = lis.map(shownCount);
    if (!info.hidden) info.total = counts.reduce((a, b) => a + b, 0);
    const total = info.hidden ? 0 : info.total;
    lis.forEach((li, i) => {
      const pct = total ? (counts[i] * 100) / total : 0;
      const share = pct.toFixed(1) + '%';
      if (li.style.getPropertyValue('--share') !== share) li.style.setProperty('--share', share);
      let small = li.querySelector(':scope > small.pct');
      if (info.hidden) {
        if (small) small.remove();
      } else {
        if (!small) {
          small = document.createElement('small');
          small.className = 'pct';
          const span = countSpan(li);
          if (span) span.after(small); else li.append(small);
        }
        const text = pct.toFixed(0) + '%';
        if (small.textContent !== text) small.textContent = text;
      }
      li.classList.toggle('mine', uidOf(li) === info.voted);
      const button = li.querySelector('button');
      if (button) button.disabled = info.closed;
    });
    body.dataset.state = info.closed ? 'closed' : 'open';
    body.dataset.hidden = info.hidden ? 'true' : 'false';
    body.dataset.voted = info.voted;
    if (summaryEl) {
      const t = summaryText(lis, counts);
      if (summaryEl.textContent !== t) summaryEl.textContent = t;
      summaryEl.dataset.total = String(info.total);
    }
  }

  // The line under the options, word for word as the server renders it (src/app/pages.rs).
  function summaryText(lis, counts) {
    const total = info.total;
    let t = `${total} vote${total === 1 ? '' : 's'}`;
    if (!info.hidden && total > 0) {
      const top = Math.max(...counts);
      const leaders = lis.filter((_, i) => counts[i] === top).map((li) => nameOf(uidOf(li)));
      t += (leaders.length === 1 ? ' · leading: ' : ' · tied: ') + leaders.join(', ');
    }
    if (info.voted && itemFor(info.voted)) t += ` · You voted for ${nameOf(info.voted)}`;
    if (info.closed) t += ' · This poll is closed';
    else if (info.hidden) t += ' · Results are hidden for now';
    return t;
  }

  // The counts become hidden (a reopened `after_close` poll, a reset `after_vote` one) or
  // visible (the reveal). Hidden: every count is taken off the page, and forgotten, so that the
  // reveal's counts apply whatever their versions.
  function setHidden(hidden) {
    info.hidden = hidden;
    if (!hidden) return;
    state.seen.clear();
    for (const li of items()) {
      const span = countSpan(li);
      if (span) span.textContent = '';
    }
  }

  // What a message says about the poll: `hidden` (a boolean; undefined when it does not say),
  // `state`, `total`, and `full` when it is the whole tally (a snapshot). Applied only if
  // `version` is at least as new as the last such news. Counts that become visible through
  // less than the whole tally (a delta or a vote naming one option: a long-poll's first
  // answer after the viewer's own vote) leave the other counts unknown: fetch the tally.
  function pollNews(m, version) {
    if (!m || !(version >= info.at)) return;
    info.at = version;
    if (m.state === 'open' || m.state === 'closed') info.closed = m.state === 'closed';
    if (typeof m.hidden === 'boolean' && m.hidden !== info.hidden) {
      setHidden(m.hidden);
      if (!m.hidden && !m.full) fetchTally();
    }
    if (m.total != null) {
      const total = Math.max(0, toInt(m.total));
      if (info.hidden) info.total = total;
      // No vote at all (a reset forgets the voters): nor has this viewer voted.
      if (total === 0) info.voted = '';
    }
  }

  // Screen readers hear count changes, merged and at most every ANNOUNCE_EVERY_MS.
  const toAnnounce = new Map();
  let announceTimer = 0;
  let lastAnnounce = 0;
  function announce(uid, count) {
    toAnnounce.delete(uid);
    toAnnounce.set(uid, count);
    if (announceTimer) return;
    announceTimer = setTimeout(() => {
      announceTimer = 0;
      lastAnnounce = Date.now();
      const parts = [...toAnnounce].slice(-5).map(([u, c]) => `${nameOf(u)}: ${c}`);
      toAnnounce.clear();
      announceEl.textContent = parts.join(', ');
    }, Math.max(0, lastAnnounce + ANNOUNCE_EVERY_MS - Date.now()));
  }

  // Set one candidate's count if `version` is newer than what it shows. Only the <span>'s text
  // changes. Returns false when the candidate is not on the page.
  function setCount(uid, count, version) {
    uid = String(uid);
    const li = itemFor(uid);
    if (!li) return false;
    // Hidden counts are never shown (nor guessed: a count the server did not send stays out).
    if (info.hidden || count == null) return true;
    if (version <= (state.seen.has(uid) ? state.seen.get(uid) : -Infinity)) return true;
    state.seen.set(uid, version);
    const span = countSpan(li);
    const text = String(toInt(count));
    if (span && span.textContent !== text) {
      span.textContent = text;
      announce(uid, text);
    }
    return true;
  }

  let reloadedForUnknown = false;
  function unknownCandidate() {
    // A candidate we have never seen and whose name we do not know (a long-poll snapshot has
    // counts only): the server's own render is the simplest source of truth.
    if (!reloadedForUnknown && !leaving) {
      reloadedForUnknown = true;
      location.reload();
    }
  }

  function showVersion() {
    const t = String(Math.max(state.version, state.shown));
    if (versionEl.textContent !== t) versionEl.textContent = t;
  }

  function presenceText(p) {
    const n = (k) => Math.max(0, toInt(p[k]));
    const total = p.total != null ? n('total') : n('ws') + n('sse') + n('longpoll') + n('poll');
    return `${total} ${total === 1 ? 'viewer' : 'viewers'}: ${n('ws')} WebSocket, ${n('sse')} SSE, ` +
      `${n('longpoll')} long-polling, ${n('poll')} polling`;
  }

  const sameEpoch = (epoch) => epoch == null || String(epoch) === state.epoch;

  const ctx = {
    viewer,

    /** The cursor to send on a (re)connect. */
    cursor() { return { epoch: state.epoch, version: state.version }; },

    /** The presence version last seen (long-poll `pv`). */
    presenceVersion() { return state.pv; },

    /** `changes`: [{uid, count}], all current as of `version`, from a live stream. Versions
     *  from another run (epoch) are ignored: that run's snapshot brings the page up to date.
     *  `news`: what the message says about the poll (pollNews), if anything. */
    changes(changes, version, epoch, news) {
      version = Number(version);
      if (!Array.isArray(changes) || !Number.isFinite(version) || !sameEpoch(epoch)) return;
      pollNews(news, version);
      for (const c of changes) {
        if (c && c.uid != null && !setCount(c.uid, c.count, version)) unknownCandidate();
      }
      if (version > state.version) state.version = version;
      if (version > state.shown) state.shown = version;
      updateShares();
      showVersion();
    },

    /** The whole tally as of `version`. From another epoch it replaces the page's state; so
     *  does an `authoritative` one (the server answered a cursor ahead of its own: we are
     *  wrong, it is right). Otherwise each count still obeys its candidate's version, so a
     *  snapshot overtaken by newer news on another connection cannot undo it. */
    snapshot(candidates, version, epoch, authoritative = false, news = undefined) {
      version = Number(version);
      if (!Array.isArray(candidates) || !Number.isFinite(version)) return;
      epoch = epoch == null ? state.epoch : String(epoch);
      if (epoch !== state.epoch || authoritative) {
        state.epoch = epoch;
        state.version = version;
        state.shown = version;
        state.seen.clear();
        info.at = -Infinity;
        body.dataset.epoch = epoch;
        // Drop candidates the new run does not have (a hidden long-poll snapshot lists none:
        // it says nothing about them).
        if (candidates.length) {
          const keep = new Set(candidates.filter(Boolean).map((c) => 'user_' + c.uid));
          for (const li of items()) if (!keep.has(li.id)) li.remove();
        }
      }
      pollNews(news, version);
      for (const c of candidates) {
        if (!c || c.uid == null) continue;
        const uid = String(c.uid);
        const li = itemFor(uid);
        if (!li) {
          if (c.name == null) { unknownCandidate(); continue; }
          list.append(makeItem(uid, c.name, c.count));
          state.seen.set(uid, version);
          continue;
        }
        if (c.name != null) rename(li, String(c.name));
        setCount(uid, c.count, version);
      }
      // A new run may list its candidates in another order: follow it (only if it differs, as
      // moving an element loses its focus).
      const order = candidates.filter((c) => c && c.name != null).map((c) => 'user_' + c.uid);
      if (order.length && order.join() !== [...items()].map((li) => li.id).join()) {
        for (const id of order) {
          const li = document.getElementById(id);
          if (li) list.append(li);
        }
      }
      if (version > state.version) state.version = version;
      if (version > state.shown) state.shown = version;
      updateShares();
      showVersion();
    },

    /** The first message after a (re)connect (or a long-poll answer's kind), for the cursor
     *  `sent` ({epoch, version} or null) the connection was opened with. */
    resume(msg, sent) {
      const to = Number(msg.to != null ? msg.to : msg.version);
      if (msg.kind === 'snapshot') {
        const ahead = !!sent && sent.epoch === String(msg.epoch) && to < sent.version;
        ctx.snapshot(msg.candidates || msg.changes || [], to, msg.epoch, ahead, snapshotNews(msg));
      } else {
        // delta: the counts that changed (or, hidden, only the total); live: nothing was
        // missed (the cursor stands, and the message says nothing about the poll).
        const news = msg.kind === 'live' && msg.hidden == null
          ? undefined
          : { hidden: msg.hidden === true, total: msg.total, state: msg.state };
        ctx.changes(Array.isArray(msg.changes) ? msg.changes : [], to, msg.epoch, news);
      }
    },

    /** A vote this viewer may not see (`{"version","total"}`): the cursor and the total move,
     *  no count does (the message does not even say which option moved). */
    hiddenVote(total, version, epoch) {
      ctx.changes([], version, epoch, { hidden: true, total });
    },

    /** The answer to an HTTP vote: shown, but not a cursor (votes between may be missing).
     *  A moved vote (`change` mode) brings both counts in `changes`. */
    voteResult(uid, count, version, epoch, changes) {
      version = Number(version);
      if (!Number.isFinite(version) || !sameEpoch(epoch)) return;
      if (Array.isArray(changes)) {
        for (const c of changes) if (c && c.uid != null) setCount(c.uid, c.count, version);
      }
      setCount(uid, count, version);
      if (version > state.shown) state.shown = version;
      updateShares();
      showVersion();
    },

    presence(p, pv) {
      if (!p || typeof p !== 'object') return;
      if (pv != null && Number.isFinite(Number(pv))) state.pv = Number(pv);
      const t = presenceText(p);
      if (presenceEl.textContent !== t) presenceEl.textContent = t;
    },

    /** The viewer's vote stands on `uid` (polls that count voters). */
    mine(uid) {
      info.voted = String(uid);
      updateShares();
    },

    /** A vote refused with 409 (HTTP) or a WebSocket `error`: say why, plainly. */
    refused(error, uid) {
      if (error === 'poll closed') {
        info.closed = true;
        updateShares();
        ctx.notice('This poll is closed: your vote was not counted');
      } else if (error === 'already voted') {
        if (uid != null && itemFor(uid)) ctx.mine(uid);
        const on = uid != null && itemFor(uid) ? ` for ${nameOf(uid)}` : '';
        ctx.notice(`You have already voted${on}: one vote per person`);
      } else {
        ctx.notice(`Vote failed: ${error}`);
      }
    },

    /** A transient line for the result of the user's own vote. */
    notice(text) {
      noticeEl.textContent = text;
      clearTimeout(noticeTimer);
      noticeTimer = setTimeout(() => { noticeEl.textContent = ''; }, 4000);
    },

    /** Cast a vote over HTTP: POST `path` with `{[field]: uid, vote_id}` form-urlencoded.
     *  Network errors and 5xx are retried a few times with the same vote_id (so the server
     *  can tell a retry from a new vote), never forever. */
    async postVote(path, field, uid) {
      const voteId = newVoteId();
      const bo = backoff(500, 4000);
      for (let attempt = 1; ; attempt++) {
        let res;
        try {
          res = await fetch(path, {
            method: 'POST',
            body: new URLSearchParams({ [field]: String(uid), vote_id: voteId }),
            cache: 'no-store',
          });
        } catch (err) {
          if (attempt >= 3 || leaving) { ctx.notice('Vote failed: the server cannot be reached'); return; }
          await sleep(bo.next());
          continue;
        }
        if (res.status >= 500 && attempt < 3 && !leaving) { await sleep(bo.next()); continue; }
        let data = null;
        try { data = await res.json(); } catch (_) { /* not JSON: report by status */ }
        if (res.ok) {
          const moved = info.mode === 'change' && info.voted && info.voted !== String(uid);
          if (data && data.uid != null) {
            // Hidden (`"hidden":true`): no count in the answer, and none is made up.
            if (data.hidden !== true) {
              ctx.voteResult(data.uid, data.count, data.version, data.epoch, data.changes);
            }
            if (countsVoters) ctx.mine(data.uid);
          }
          ctx.notice(`${moved ? 'Vote moved to' : 'Vote counted for'} ${nameOf(uid)}`);
          // `after_vote`: this voter may see the counts now, but the page's stream may have been
          // opened before the voter cookie existed (this vote set it) and would keep them
          // hidden. Reopen it (with the cookie), and fetch the whole tally.
          if (info.hidden && data && data.uid != null && data.hidden !== true) {
            refreshStream();
            fetchTally();
          }
        } else if (res.status === 404) {
          ctx.notice(`Unknown candidate ${uid}`);
        } else if (res.status === 409 && data && data.error) {
          ctx.refused(data.error, data.uid);
        } else {
          ctx.notice(`Vote failed: ${(data && data.error) || 'HTTP ' + res.status}`);
        }
        return;
      }
    },

    nameOf,
  };
  let noticeTimer = 0;

  // What a snapshot (any transport, and /votes) says about the poll: it always says whether
  // the counts are hidden (`"hidden":true`, or no such member).
  const snapshotNews = (m) => ({ hidden: m.hidden === true, total: m.total, state: m.state, full: true });

  // The whole tally from GET /votes (with this viewer's cookies: what it may see), applied as
  // any snapshot is. One at a time; a request while one is under way asks again after it.
  let tallyFetch = null;
  let tallyAgain = false;
  function fetchTally() {
    if (tallyFetch) { tallyAgain = true; return; }
    tallyFetch = (async () => {
      try {
        const res = await fetch(at('/votes'), { cache: 'no-store' });
        if (!res.ok) return;
        const data = await res.json();
        if (data && Array.isArray(data.candidates)) {
          ctx.snapshot(data.candidates, data.version, data.epoch, false, snapshotNews(data));
        }
      } catch (_) {
        // The live connection's next snapshot brings the page up to date instead.
      } finally {
        tallyFetch = null;
        if (tallyAgain && !leaving) { tallyAgain = false; fetchTally(); }
      }
    })();
  }

  // ---------------------------------------------------------------- transports

  const openConns = new Set();

  // What every connection shares: a closed flag that silences it, the hooks to the manager.
  function baseConn(name, hooks) {
    const conn = {
      name,
      closed: false,
      isVerified: false,
      epoch: null, // the run this connection's stream belongs to (set by its resume)
      sent: null, // the cursor it was opened with
      cleanup() {},
      vote(uid) { return ctx.postVote(at('/vote'), 'uid', uid); },
      verified() {
        if (conn.closed || conn.isVerified) return;
        conn.isVerified = true;
        hooks.verified(conn);
      },
      down(why) {
        if (conn.closed) return;
        conn.close();
        hooks.down(conn, why);
      },
      close() {
        if (conn.closed) return;
        conn.closed = true;
        openConns.delete(conn);
        try { conn.cleanup(); } catch (_) { /* already gone */ }
      },
    };
    openConns.add(conn);
    return conn;
  }

  // `since=V&epoch=E` for the page's cursor (nothing when it has none: the server then
  // answers with a snapshot), plus the extra params.
  function cursorQuery(conn, extra) {
    const q = new URLSearchParams();
    const cur = ctx.cursor();
    if (cur.epoch) {
      q.set('since', String(cur.version));
      q.set('epoch', cur.epoch);
      conn.sent = cur;
    } else {
      conn.sent = null;
    }
    for (const [k, v] of Object.entries(extra || {})) q.set(k, String(v));
    return q.toString();
  }

  // WebSocket and SSE speak the same messages (docs/PROTOCOL.md): a resume first, then votes,
  // coalesced snapshots, presence and errors.
  function streamMessage(conn, msg) {
    if (!msg || typeof msg !== 'object') return;
    switch (msg.type) {
      case 'resume':
        conn.epoch = msg.epoch != null ? String(msg.epoch) : state.epoch;
        ctx.resume(msg, conn.sent);
        conn.verified();
        return;
      case 'snapshot':
        conn.epoch = msg.epoch != null ? String(msg.epoch) : state.epoch;
        ctx.snapshot(msg.candidates, msg.version, msg.epoch, false, snapshotNews(msg));
        conn.verified();
        return;
      case 'presence':
        ctx.presence(msg, msg.presence_version);
        return;
      case 'degraded':
        // The server's vote store (Redis) is unreachable: votes are refused for now, the tally
        // shown is the last known. Said once when it starts and once when it ends.
        showDegraded(msg.degraded === true, msg.message);
        return;
      case 'error':
        if (msg.error === 'poll closed') { ctx.refused(msg.error); return; }
        ctx.notice(msg.uid != null ? `${msg.error || 'error'}: ${msg.uid}` : String(msg.error || 'error'));
        return;
      case 'ack':
        // Our own vote, counted (once, even if the message was sent twice). The broadcast of
        // the vote, not this, moves the tally: it comes in order with everyone else's.
        ctx.notice(`Vote counted for ${nameOf(msg.uid)}`);
        return;
      default:
        // A vote. It carries no epoch: it belongs to the run this connection resumed in. A
        // moved vote (`change` mode) lists both counts in `changes`; a vote this viewer may
        // not see is `{"version","total"}`, with no option at all.
        if (msg.version == null || conn.epoch == null) return;
        if (msg.uid != null) {
          const changes = Array.isArray(msg.changes) ? msg.changes : [{ uid: msg.uid, count: msg.count }];
          ctx.changes(changes, msg.version, conn.epoch, { hidden: false });
        } else if (msg.total != null) {
          ctx.hiddenVote(msg.total, msg.version, conn.epoch);
        }
    }
  }

  // WebSocket: ws(s)://HOST/get_new_vote?since=V&epoch=E. Votes go up the same socket.
  const ws = {
    name: 'ws',
    open(hooks) {
      const conn = baseConn('ws', hooks);
      const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host +
        at('/get_new_vote?') + cursorQuery(conn, { viewer });
      let sock;
      try {
        sock = new WebSocket(url);
      } catch (err) {
        setTimeout(() => conn.down('cannot open a WebSocket'), 0);
        return conn;
      }
      sock.onmessage = (ev) => {
        if (conn.closed || typeof ev.data !== 'string') return;
        let msg;
        try { msg = JSON.parse(ev.data); } catch (_) { return; }
        streamMessage(conn, msg);
      };
      sock.onerror = () => {}; // always followed by onclose
      sock.onclose = () => conn.down('closed');
      conn.cleanup = () => {
        sock.onmessage = sock.onclose = sock.onerror = null;
        try { sock.close(1000); } catch (_) { /* already closed */ }
      };
      conn.vote = (uid) => {
        if (!conn.closed && sock.readyState === WebSocket.OPEN) {
          // With a vote id, as over HTTP: a vote that is sent again counts once.
          sock.send(JSON.stringify({ uid: String(uid), vote_id: newVoteId() }));
          ctx.notice(`Vote sent for ${nameOf(uid)}`);
          return Promise.resolve();
        }
        return ctx.postVote(at('/vote'), 'uid', uid);
      };
      return conn;
    },
  };

  // Server-Sent Events: GET /events?since=V&epoch=E. The EventSource's own reconnect is not
  // used: on any error it is closed and the manager opens a new one from the page's cursor, so
  // the backoff and the verification rules hold for it too.
  const sse = {
    name: 'sse',
    open(hooks) {
      const conn = baseConn('sse', hooks);
      let es;
      try {
        es = new EventSource(at('/events?') + cursorQuery(conn, { viewer }));
      } catch (err) {
        setTimeout(() => conn.down('cannot open an EventSource'), 0);
        return conn;
      }
      const onMessage = (ev) => {
        if (conn.closed || typeof ev.data !== 'string') return;
        let msg;
        try { msg = JSON.parse(ev.data); } catch (_) { return; }
        // Unnamed events carry their type in the JSON; accept `event: NAME` too.
        if (msg && typeof msg === 'object' && msg.type == null && ev.type !== 'message' && ev.type !== 'vote') {
          msg.type = ev.type;
        }
        streamMessage(conn, msg);
      };
      for (const t of ['message', 'resume', 'snapshot', 'presence', 'vote']) es.addEventListener(t, onMessage);
      es.addEventListener('error', (ev) => {
        // An `event: error` from the server is a message; anything else is the stream failing.
        if (typeof ev.data === 'string') { onMessage(ev); return; }
        conn.down('stream error');
      });
      conn.cleanup = () => es.close();
      return conn;
    },
  };

  // Long-polling: GET /get_new_vote?since=V&epoch=E&viewer=ID&pv=P, held by the server until
  // news (a vote, or changed presence) or ~10 s. The first request of a connection sends pv=0,
  // which no current presence matches, so it is answered at once: that answer verifies the rung.
  const longpoll = {
    name: 'longpoll',
    open(hooks) {
      const conn = baseConn('longpoll', hooks);
      let abort = null;
      conn.cleanup = () => { if (abort) abort.abort(); };
      const spin = backoff(500, 5000);
      const loop = async () => {
        let first = true;
        while (!conn.closed) {
          const sentPv = first ? 0 : ctx.presenceVersion();
          // hidden=1: this page shows no counts; once it may see them (its voter voted, the
          // poll closed), the server answers the whole tally at once.
          const extra = info.hidden ? { viewer, pv: sentPv, hidden: 1 } : { viewer, pv: sentPv };
          const url = at('/get_new_vote?') + cursorQuery(conn, extra);
          const sent = conn.sent;
          abort = new AbortController();
          const timer = setTimeout(() => abort.abort(), LONGPOLL_ABORT_MS);
          const started = performance.now();
          let msg;
          try {
            const res = await fetch(url, { cache: 'no-store', signal: abort.signal });
            if (!res.ok) throw new Error('HTTP ' + res.status);
            msg = await res.json();
          } catch (err) {
            conn.down(String(err));
            return;
          } finally {
            clearTimeout(timer);
          }
          if (conn.closed) return;
          if (!msg || typeof msg.status !== 'boolean' || !Number.isFinite(Number(msg.version))) {
            conn.down('malformed long-poll answer');
            return;
          }
          if (msg.presence) ctx.presence(msg.presence, msg.presence_version);
          if (msg.status) {
            const changes = Array.isArray(msg.changes) ? msg.changes : msg.data ? [msg.data] : [];
            // Every answer with news says whether it is hidden (`"hidden":true`, `total`).
            ctx.resume({
              kind: msg.kind, to: msg.version, epoch: msg.epoch, changes,
              hidden: msg.hidden === true, total: msg.total, state: msg.state,
            }, sent);
          }
          conn.verified();
          const presenceNews = msg.presence_version != null && Number(msg.presence_version) !== sentPv;
          if (!msg.status && !presenceNews && !first && performance.now() - started < 1000) {
            // "Nothing new" at once means the server is not holding requests (overloaded, or
            // a proxy in the way): do not spin.
            await sleep(spin.next());
          } else {
            spin.reset();
          }
          first = false;
        }
      };
      loop().catch(() => conn.down('long-poll loop failed'));
      return conn;
    },
  };

  // Polling: GET /votes every 2 s. `cache: 'no-cache'` makes the browser revalidate its copy
  // with If-None-Match; a 304 (nothing changed) hands back that copy, which changes nothing.
  // Votes go to POST /ticket (`nid`), as in the tutorial.
  const poll = {
    name: 'poll',
    open(hooks) {
      const conn = baseConn('poll', hooks);
      let abort = null;
      let timer = 0;
      conn.cleanup = () => {
        clearTimeout(timer);
        if (abort) abort.abort();
      };
      const tick = async () => {
        abort = new AbortController();
        const giveUp = setTimeout(() => abort.abort(), POLL_TIMEOUT_MS);
        let data = null;
        try {
          const res = await fetch(at(`/votes?viewer=${encodeURIComponent(viewer)}&transport=poll`), {
            cache: 'no-cache',
            signal: abort.signal,
          });
          if (res.status !== 304) {
            if (!res.ok) throw new Error('HTTP ' + res.status);
            data = await res.json();
            if (!data || !Array.isArray(data.candidates) || !Number.isFinite(Number(data.version))) {
              throw new Error('malformed /votes answer');
            }
          }
        } catch (err) {
          conn.down(String(err));
          return;
        } finally {
          clearTimeout(giveUp);
        }
        if (conn.closed) return;
        if (data) {
          if (data.presence) ctx.presence(data.presence, data.presence_version);
          ctx.snapshot(data.candidates, data.version, data.epoch, false, snapshotNews(data));
        }
        conn.verified();
        timer = setTimeout(run, POLL_INTERVAL_MS);
      };
      const run = () => { tick().catch(() => conn.down('poll failed')); };
      run();
      conn.vote = (uid) => (defaultPoll
        ? ctx.postVote(at('/ticket'), 'nid', uid)
        : ctx.postVote(at('/vote'), 'uid', uid));
      return conn;
    },
  };

  const transports = { ws, sse, longpoll, poll };

  // ---------------------------------------------------------------- connection manager

  const mode = LADDER.includes(body.dataset.transport) ? body.dataset.transport : 'auto';
  const auto = mode === 'auto';
  const ladder = auto ? LADDER : [mode];

  // In `auto`, start from the rung that worked last time in this tab.
  let home = auto ? Math.max(0, LADDER.indexOf(store.get(RUNG_KEY))) : 0;
  let current = null; // { conn, rung, since }
  let passGen = 0;
  let sameRungRetries = 0;
  let reconnectTimer = 0;
  let upgradeTimer = 0;
  const reconnectBo = backoff(RECONNECT_BASE_MS, RECONNECT_CAP_MS);
  const upgradeBo = backoff(UPGRADE_BASE_MS, UPGRADE_CAP_MS);

  function showDegraded(on, message) {
    const el = document.getElementById('degraded');
    if (!el) return;
    el.hidden = !on;
    el.textContent = on ? String(message || 'Votes cannot be counted right now.') : '';
    document.getElementById('status')?.setAttribute('data-degraded', on ? 'true' : 'false');
  }

  function setStatus(name, text, connected) {
    const t = `${auto ? 'Auto: ' : ''}${LABELS[name]} — ${text}`;
    if (statusEl.textContent !== t) statusEl.textContent = t;
    statusEl.dataset.transport = name;
    statusEl.dataset.connected = connected ? 'true' : 'false';
  }

  // Opens rung `rung`; resolves with the connection once verified, or null (closed) when it
  // fails or misses its deadline. A connection that goes down after it was verified is
  // reported to `dropped`.
  function attempt(rung) {
    return new Promise((resolve) => {
      const floor = !auto || rung === ladder.length - 1;
      let settled = false;
      let timer = 0;
      const settle = (conn) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(conn);
      };
      const conn = transports[ladder[rung]].open({
        verified: (c) => settle(c),
        down: (c) => { if (settled) dropped(c); else settle(null); },
      });
      timer = setTimeout(() => { conn.close(); settle(null); }, floor ? FLOOR_DEADLINE_MS : VERIFY_DEADLINE_MS);
      if (conn.closed) settle(null);
    });
  }

  // One pass down the ladder from `home`: the first rung verified becomes current. When every
  // rung fails the server (or the network) is down: wait, and start again from `home`.
  // Right after a working connection dropped, a pass tries `home` only (SAME_RUNG_RETRIES).
  async function runPass() {
    const gen = ++passGen;
    clearTimeout(reconnectTimer);
    reconnectTimer = 0;
    const last = sameRungRetries > 0 ? home : ladder.length - 1;
    if (sameRungRetries > 0) sameRungRetries--;
    for (let rung = home; rung <= last; rung++) {
      setStatus(ladder[rung], auto && rung > home ? 'trying…' : 'connecting…', false);
      let conn = await attempt(rung);
      if (conn && conn.closed) conn = null; // verified, then lost before we got here
      if (gen !== passGen || leaving || current) {
        if (conn) conn.close();
        return;
      }
      if (conn) { adopt(conn, rung); return; }
    }
    scheduleReconnect();
  }

  function adopt(conn, rung) {
    current = { conn, rung, since: Date.now() };
    sameRungRetries = 0;
    if (auto) {
      home = rung;
      store.set(RUNG_KEY, ladder[rung]);
    }
    setStatus(ladder[rung], 'connected', true);
    if (auto && rung > 0) scheduleUpgrade();
  }

  function dropped(conn) {
    if (!current || current.conn !== conn || leaving) return;
    if (Date.now() - current.since >= STABLE_MS) reconnectBo.reset();
    current = null;
    clearTimeout(upgradeTimer);
    sameRungRetries = SAME_RUNG_RETRIES;
    scheduleReconnect();
  }

  function scheduleReconnect() {
    if (leaving) return;
    clearTimeout(reconnectTimer);
    const wait = reconnectBo.next();
    setStatus(ladder[home], `reconnecting in ${Math.max(1, Math.round(wait / 1000))} s…`, false);
    reconnectTimer = setTimeout(() => {
      reconnectTimer = 0;
      runPass().catch(() => scheduleReconnect());
    }, wait);
  }

  // `auto` on a lower rung: later, try the better ones (best first), and switch only once one
  // is verified — the current connection keeps the page live until then.
  function scheduleUpgrade() {
    clearTimeout(upgradeTimer);
    upgradeTimer = setTimeout(() => { tryUpgrade().catch(() => scheduleUpgrade()); }, upgradeBo.next());
  }

  async function tryUpgrade() {
    const cur = current;
    if (!cur || leaving) return;
    for (let rung = 0; rung < cur.rung; rung++) {
      let conn = await attempt(rung);
      if (conn && conn.closed) conn = null;
      if (current !== cur || leaving) {
        if (conn) conn.close();
        return;
      }
      if (conn) {
        cur.conn.close();
        upgradeBo.reset();
        adopt(conn, rung);
        return;
      }
    }
    scheduleUpgrade();
  }

  // The page may now see counts its connection was opened without (a first vote in an
  // `after_vote` poll set the voter cookie, which a WebSocket or an event stream reads only
  // when it opens): drop the connection and open a fresh one, from the same cursor.
  function refreshStream() {
    if (leaving) return;
    const cur = current;
    if (cur) {
      current = null;
      clearTimeout(upgradeTimer);
      cur.conn.close();
    }
    runPass().catch(() => scheduleReconnect());
  }

  // Back online: do not sit out the rest of a long backoff.
  window.addEventListener('online', () => {
    if (!current && !leaving && reconnectTimer) {
      reconnectBo.reset();
      runPass().catch(() => scheduleReconnect());
    }
  });

  window.addEventListener('pagehide', () => {
    leaving = true;
    clearTimeout(reconnectTimer);
    clearTimeout(upgradeTimer);
    for (const c of [...openConns]) c.close();
  });
  // A page restored from the back/forward cache has closed connections and a stale tally:
  // load it afresh rather than try to resume.
  window.addEventListener('pageshow', (e) => { if (e.persisted) location.reload(); });

  // ---------------------------------------------------------------- voting gestures

  // Through the live connection when there is one (WebSocket: the id up the socket; polling:
  // POST /ticket; the others POST /vote), else over HTTP; always over HTTP in a poll that
  // counts voters (countsVoters). The presenter view does not vote: no gestures there.
  function voteFor(li) {
    const uid = uidOf(li);
    const conn = current && !current.conn.closed && !countsVoters ? current.conn : null;
    // vote() handles its own errors; the catch only guarantees no unhandled rejection.
    Promise.resolve()
      .then(() => (conn ? conn.vote(uid) : ctx.postVote(at('/vote'), 'uid', uid)))
      .catch(() => ctx.notice('Vote failed'));
  }

  const candidateOf = (target) => {
    const li = target instanceof Element ? target.closest('li[id^="user_"]') : null;
    return li && li.parentNode === list ? li : null;
  };
  // The Vote button (and its form) votes by itself; gestures on it are not the li's.
  const onButton = (target) => target instanceof Element && !!target.closest('form, button');

  // The voting gestures; the presenter view has none (a click on the projector is no vote).
  if (!presenter) installGestures();
  function installGestures() {
    // The no-JavaScript form: with JavaScript, vote without leaving the page.
    list.addEventListener('submit', (e) => {
      const li = candidateOf(e.target);
      if (!li) return;
      e.preventDefault();
      voteFor(li);
    });

    // Double-click votes, as in the tutorial.
    let lastTap = { li: null, at: 0, voted: false };
    list.addEventListener('dblclick', (e) => {
      const li = candidateOf(e.target);
      if (!li || onButton(e.target)) return;
      // A double tap we already counted below may also produce a dblclick on some browsers.
      if (lastTap.li === li && lastTap.voted && performance.now() - lastTap.at < 800) return;
      voteFor(li);
    });

    // Double tap on touch screens: not every mobile browser turns it into a dblclick.
    list.addEventListener('pointerup', (e) => {
      if (e.pointerType !== 'touch') return;
      const li = candidateOf(e.target);
      if (!li || onButton(e.target)) return;
      const now = performance.now();
      if (lastTap.li === li && !lastTap.voted && now - lastTap.at < 400) {
        lastTap = { li, at: now, voted: true };
        voteFor(li);
      } else {
        lastTap = { li, at: now, voted: false };
      }
    });

    // Keyboard: Enter or Space on a focused candidate (the button handles its own keys). Held
    // keys do not repeat votes.
    list.addEventListener('keydown', (e) => {
      if (e.key !== 'Enter' && e.key !== ' ') return;
      const li = candidateOf(e.target);
      if (!li || e.target !== li) return;
      e.preventDefault(); // Space would scroll the page
      if (!e.repeat) voteFor(li);
    });
  }

  // ---------------------------------------------------------------- start

  for (const a of document.querySelectorAll('a[data-transport]')) {
    if (a.dataset.transport === mode) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  updateShares();
  showVersion();
  runPass().catch(() => scheduleReconnect());
})();
