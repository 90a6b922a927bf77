// livevote — the vote page's client. Plain ES2017, no framework, no build step.
//
// The page (www/index.template, rendered by GET /index) carries the tally in its DOM:
//   <ul id="candidates"><li id="user_ID" tabindex="0">NAME<span>COUNT</span></li>…</ul>
// and the render-time state on <body data-transport data-version data-epoch>.
//
// One object per transport (poll, longpoll, ws; sse later) implements
//   { name, label, start(ctx), vote(uid) }
// and talks to the page only through `ctx` (applyChange, applyChanges, applySnapshot,
// setStatus, notice, postVote). The page picks the transport from data-transport.
'use strict';

(() => {
  const body = document.body;
  const list = document.getElementById('candidates');
  const statusEl = document.getElementById('status');
  const versionEl = document.getElementById('version');
  const noticeEl = document.getElementById('notice');

  // ---------------------------------------------------------------- helpers

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // Reconnect delays: 1 s doubling to 10 s, each scaled by a random factor in [0.75, 1.25)
  // so that a restarted server is not hit by every client in the same instant.
  function backoff(base = 1000, cap = 10000) {
    let n = 0;
    return {
      next() {
        const d = Math.min(cap, base * 2 ** Math.min(n++, 10));
        return Math.round(d * (0.75 + Math.random() * 0.5));
      },
      reset() { n = 0; },
    };
  }

  const toInt = (v, fallback = 0) => {
    const n = Number.parseInt(v, 10);
    return Number.isFinite(n) ? n : fallback;
  };

  // True while the page is being left: aborted requests and closing sockets are then expected
  // and must not show "reconnecting" nor schedule anything.
  let leaving = false;
  window.addEventListener('pagehide', () => { leaving = true; });
  // A page restored from the back/forward cache has dead connections and a stale tally:
  // load it afresh rather than try to resume.
  window.addEventListener('pageshow', (e) => { if (e.persisted) location.reload(); });

  // ---------------------------------------------------------------- tally state

  // Versions are tracked per candidate: a count is applied only if its version is newer than
  // the one that candidate's count came from. This is the "ignore versions ≤ what the page
  // shows" rule, made exact: a POST /vote answer at version 12 must not hide the other
  // candidate's change in a long-poll delta that also says version 12.
  const state = {
    epoch: body.dataset.epoch || '',
    version: toInt(body.dataset.version),
    seen: new Map(), // uid → version its displayed count is from
  };

  const itemFor = (uid) => document.getElementById('user_' + uid);

  for (const li of list.querySelectorAll('li[id^="user_"]')) {
    state.seen.set(li.id.slice('user_'.length), state.version);
  }

  function showVersion() {
    versionEl.textContent = String(state.version);
  }

  // Build a <li> exactly like the server renders one.
  function makeItem(uid, name, count) {
    const li = document.createElement('li');
    li.id = 'user_' + uid;
    li.tabIndex = 0;
    li.append(String(name), document.createElement('span'));
    li.lastChild.textContent = String(count);
    return li;
  }

  // Set one candidate's count if `version` is newer than what it shows. Only the <span>'s text
  // changes. Returns false when the candidate is not on the page.
  function setCount(uid, count, version) {
    uid = String(uid);
    const li = itemFor(uid);
    if (!li) return false;
    if (version <= (state.seen.get(uid) ?? -Infinity)) return true;
    state.seen.set(uid, version);
    const span = li.querySelector('span');
    const text = String(count);
    if (span && span.textContent !== text) span.textContent = text;
    return true;
  }

  let reloadedForUnknown = false;
  function unknownCandidate() {
    // A candidate we have never seen and whose name we do not know (e.g. a long-poll snapshot
    // after a server restart): the server's own render is the simplest source of truth.
    if (!reloadedForUnknown && !leaving) {
      reloadedForUnknown = true;
      location.reload();
    }
  }

  const ctx = {
    // `changes`: [{uid, count}], all current as of `version`. An `epoch` different from the
    // page's means those versions are from another server run: ignore them, the transport's
    // next snapshot will bring the page up to date.
    applyChanges(changes, version, epoch) {
      version = Number(version);
      if (!Array.isArray(changes) || !Number.isFinite(version)) return;
      if (epoch != null && String(epoch) !== state.epoch) return;
      for (const c of changes) {
        if (c && c.uid != null && !setCount(c.uid, c.count, version)) unknownCandidate();
      }
      if (version > state.version) state.version = version;
      showVersion();
    },

    applyChange(uid, count, version, epoch) {
      ctx.applyChanges([{ uid, count }], version, epoch);
    },

    // The full tally. From another epoch it always wins: it replaces the list and the version.
    applySnapshot(candidates, version, epoch) {
      version = Number(version);
      if (!Array.isArray(candidates) || !Number.isFinite(version)) return;
      epoch = epoch == null ? state.epoch : String(epoch);
      const newRun = epoch !== state.epoch;
      if (newRun) {
        state.epoch = epoch;
        state.version = version;
        state.seen.clear();
        body.dataset.epoch = epoch;
        // Drop candidates the new run does not have.
        const keep = new Set(candidates.map((c) => 'user_' + c.uid));
        for (const li of list.querySelectorAll('li[id^="user_"]')) {
          if (!keep.has(li.id)) li.remove();
        }
      }
      for (const c of candidates) {
        if (!c || c.uid == null) continue;
        const uid = String(c.uid);
        if (!itemFor(uid)) {
          if (c.name == null) { unknownCandidate(); continue; }
          list.append(makeItem(uid, c.name, c.count));
          state.seen.set(uid, version);
          continue;
        }
        setCount(uid, c.count, version);
      }
      if (version > state.version) state.version = version;
      showVersion();
    },

    setStatus(text, connected) {
      const t = `${transport.label} — ${text}`;
      if (statusEl.textContent !== t) statusEl.textContent = t;
      statusEl.dataset.connected = connected ? 'true' : 'false';
    },

    // A transient line for the result of the user's own vote.
    notice(text) {
      noticeEl.textContent = text;
      clearTimeout(ctx.noticeTimer);
      ctx.noticeTimer = setTimeout(() => { noticeEl.textContent = ''; }, 4000);
    },
    noticeTimer: 0,

    pendingVotes: 0, // votes whose HTTP answer has not come yet (the poll page waits for them)

    // Cast a vote over HTTP: POST `path` with `{[field]: uid}` form-urlencoded. Retries network
    // errors and 5xx a few times only: a vote is not idempotent, and after a dropped answer a
    // retry may count twice, so it does not retry forever.
    async postVote(path, field, uid) {
      ctx.pendingVotes++;
      try {
        const bo = backoff(500, 4000);
        for (let attempt = 1; ; attempt++) {
          let res;
          try {
            res = await fetch(path, {
              method: 'POST',
              body: new URLSearchParams({ [field]: String(uid) }),
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
            if (data && data.uid != null) ctx.applyChange(data.uid, data.count, data.version, data.epoch);
            ctx.notice(`Vote counted for ${nameOf(uid)}`);
          } else if (res.status === 404) {
            ctx.notice(`Unknown candidate ${uid}`);
          } else {
            ctx.notice(`Vote failed: ${(data && data.error) || 'HTTP ' + res.status}`);
          }
          return;
        }
      } finally {
        ctx.pendingVotes--;
      }
    },

    backoff,
    sleep,
    isLeaving: () => leaving,
    get version() { return state.version; },
    get epoch() { return state.epoch; },
  };

  function nameOf(uid) {
    const li = itemFor(uid);
    return li && li.firstChild ? li.firstChild.textContent.trim() : String(uid);
  }

  // ---------------------------------------------------------------- transports

  // Polling, as in the tutorial: vote with POST /ticket, reload the whole page every 2 s.
  const poll = {
    name: 'poll',
    label: 'Polling',
    start(ctx) {
      ctx.setStatus('reloading every 2 s', true);
      restoreFocus();
      const tick = () => {
        // A reload would abort a vote in flight; wait for its answer first.
        if (ctx.pendingVotes > 0) { setTimeout(tick, 200); return; }
        rememberFocus();
        location.reload();
      };
      setTimeout(tick, 2000);
    },
    vote(uid) { return ctx.postVote('/ticket', 'nid', uid); },
  };

  // Reloading loses keyboard focus; keep it across reloads so keyboard voting stays usable.
  function rememberFocus() {
    const el = document.activeElement;
    try {
      if (el && el.parentNode === list) sessionStorage.setItem('livevote.focus', el.id);
      else sessionStorage.removeItem('livevote.focus');
    } catch (_) { /* storage disabled: focus is just not kept */ }
  }
  function restoreFocus() {
    let id = null;
    try { id = sessionStorage.getItem('livevote.focus'); } catch (_) { return; }
    const el = id && document.getElementById(id);
    if (el && el.parentNode === list) el.focus({ preventScroll: true });
  }

  // Long-polling: GET /get_new_vote?since=V&epoch=E is held by the server until news or ~10 s.
  const longpoll = {
    name: 'longpoll',
    label: 'Long-polling',
    async start(ctx) {
      // `since`/`epoch` follow the long-poll stream only (not POST /vote answers), so that no
      // change between them is skipped.
      let since = ctx.version;
      let epoch = ctx.epoch;
      const bo = ctx.backoff();
      ctx.setStatus('connecting…', false);
      for (;;) {
        if (ctx.isLeaving()) return;
        const started = Date.now();
        // The server answers within ~10 s; a request silent for much longer is stuck somewhere
        // (proxy, sleeping laptop): abort it and ask again.
        const abort = new AbortController();
        const timer = setTimeout(() => abort.abort(), 30000);
        try {
          const url = `/get_new_vote?since=${encodeURIComponent(since)}&epoch=${encodeURIComponent(epoch)}`;
          const res = await fetch(url, { cache: 'no-store', signal: abort.signal });
          if (!res.ok) {
            // A 4xx will not go away by asking the same again: forget our epoch so that the
            // server answers the next request with a full snapshot.
            if (res.status < 500) epoch = '';
            throw new Error('HTTP ' + res.status);
          }
          const msg = await res.json();
          if (!msg || typeof msg.status !== 'boolean' || !Number.isFinite(Number(msg.version))) {
            throw new Error('malformed long-poll answer');
          }
          bo.reset();
          ctx.setStatus('connected', true);
          if (msg.status) {
            const changes = Array.isArray(msg.changes) ? msg.changes : msg.data ? [msg.data] : [];
            if (msg.kind === 'snapshot') ctx.applySnapshot(changes, msg.version, msg.epoch);
            else ctx.applyChanges(changes, msg.version, msg.epoch);
            since = Number(msg.version);
            if (msg.epoch != null) epoch = String(msg.epoch);
          } else if (Date.now() - started < 1000) {
            // A "nothing new" that came back at once means the server is not holding requests
            // (overloaded, or a proxy in the way): do not spin.
            await ctx.sleep(bo.next());
          }
          // On a timeout keep the same since (and epoch): a differing epoch makes the server
          // answer the next request with a snapshot.
        } catch (err) {
          if (ctx.isLeaving()) return;
          const wait = bo.next();
          ctx.setStatus(`reconnecting in ${Math.ceil(wait / 1000)} s…`, false);
          await ctx.sleep(wait);
        } finally {
          clearTimeout(timer);
        }
      }
    },
    vote(uid) { return ctx.postVote('/vote', 'uid', uid); },
  };

  // WebSocket: ws(s)://HOST/get_new_vote; a snapshot on connect, then one message per vote.
  const ws = {
    name: 'ws',
    label: 'WebSocket',
    socket: null,
    start(ctx) {
      const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/get_new_vote';
      const bo = ctx.backoff();
      const connect = () => {
        if (ctx.isLeaving()) return;
        ctx.setStatus('connecting…', false);
        let sock;
        try {
          sock = new WebSocket(url);
        } catch (err) {
          retry();
          return;
        }
        this.socket = sock;
        sock.onopen = () => ctx.setStatus('connected', true);
        sock.onmessage = (ev) => {
          let msg;
          try { msg = JSON.parse(ev.data); } catch (_) { return; }
          if (!msg || typeof msg !== 'object') return;
          if (msg.type === 'snapshot') {
            // Reset the delay only once the server has really served us, so that a server
            // that accepts and drops at once is not hammered every second.
            bo.reset();
            ctx.applySnapshot(msg.candidates, msg.version, msg.epoch);
          } else if (msg.type === 'error') {
            ctx.notice(msg.uid != null ? `${msg.error || 'error'}: ${msg.uid}` : String(msg.error || 'error'));
          } else if (msg.uid != null) {
            // Per-vote messages carry no epoch: they belong to this connection's snapshot.
            ctx.applyChange(msg.uid, msg.count, msg.version);
          }
        };
        // onerror is always followed by onclose, which does the reconnecting.
        sock.onerror = () => {};
        sock.onclose = () => {
          if (this.socket === sock) this.socket = null;
          retry();
        };
      };
      const retry = () => {
        if (ctx.isLeaving()) return;
        const wait = bo.next();
        ctx.setStatus(`reconnecting in ${Math.ceil(wait / 1000)} s…`, false);
        setTimeout(connect, wait);
      };
      connect();
    },
    vote(uid) {
      const sock = this.socket;
      if (sock && sock.readyState === WebSocket.OPEN) {
        sock.send(String(uid));
        return Promise.resolve();
      }
      // Not connected right now: the vote still counts over HTTP, and the broadcast (or the
      // snapshot on reconnect) shows it.
      return ctx.postVote('/vote', 'uid', uid);
    },
  };

  // Server-Sent Events will plug in here: GET /events through an EventSource, e.g.
  //   const sse = { name: 'sse', label: 'Server-Sent Events',
  //     start(ctx) { const es = new EventSource('/events'); es.onmessage = (ev) => …; },
  //     vote(uid) { return ctx.postVote('/vote', 'uid', uid); } };
  // then add it to `transports` and a link in index.template.
  const transports = { poll, longpoll, ws };

  const transport = transports[body.dataset.transport] || longpoll;

  // ---------------------------------------------------------------- voting gestures

  const candidateOf = (target) => {
    const li = target instanceof Element ? target.closest('li[id^="user_"]') : null;
    return li && li.parentNode === list ? li : null;
  };

  function voteFor(li) {
    const uid = li.id.slice('user_'.length);
    // vote() handles its own errors; the catch only guarantees no unhandled rejection.
    Promise.resolve()
      .then(() => transport.vote(uid))
      .catch(() => ctx.notice('Vote failed'));
  }

  // Double-click votes, as in the tutorial.
  let lastTap = { li: null, at: 0 };
  list.addEventListener('dblclick', (e) => {
    const li = candidateOf(e.target);
    if (!li) return;
    // A double tap we already counted below may also produce a dblclick on some browsers.
    if (lastTap.li === li && performance.now() - lastTap.at < 800 && lastTap.voted) return;
    voteFor(li);
  });

  // Double tap on touch screens: not every mobile browser turns it into a dblclick.
  list.addEventListener('pointerup', (e) => {
    if (e.pointerType !== 'touch') return;
    const li = candidateOf(e.target);
    if (!li) return;
    const now = performance.now();
    if (lastTap.li === li && !lastTap.voted && now - lastTap.at < 400) {
      lastTap = { li, at: now, voted: true };
      voteFor(li);
    } else {
      lastTap = { li, at: now, voted: false };
    }
  });

  // Keyboard: Enter or Space on a focused candidate. Held keys do not repeat votes.
  list.addEventListener('keydown', (e) => {
    if (e.key !== 'Enter' && e.key !== ' ') return;
    const li = candidateOf(e.target);
    if (!li) return;
    e.preventDefault(); // Space would scroll the page
    if (!e.repeat) voteFor(li);
  });

  // ---------------------------------------------------------------- start

  for (const a of document.querySelectorAll('a[data-transport]')) {
    if (a.dataset.transport === transport.name) a.setAttribute('aria-current', 'page');
  }
  showVersion();
  // start() may be async (long-poll loop): it never rejects, but guard anyway.
  Promise.resolve()
    .then(() => transport.start(ctx))
    .catch(() => ctx.setStatus('stopped after an error; reload the page', false));
})();
