// livevote — the admin page (www/admin.html, served at BASE/admin). Plain ES2018, nothing from
// another host. The API is docs/API.md.
//
// The token is typed once and kept in sessionStorage (this tab only, gone when it closes).
// Signing in POSTs /admin with `Authorization: Bearer TOKEN`, which sets the admin cookie
// (HttpOnly, SameSite=Strict): the presenter view and its live stream need it, as a page load,
// an EventSource or a WebSocket cannot send that header. The API calls themselves send the
// header. Everything shown is built with textContent: poll questions and options come from the
// network, never from this page's own markup.
'use strict';

(() => {
  const TOKEN_KEY = 'livevote.admin-token';
  const MIN_OPTIONS = 2;
  const MAX_OPTIONS = 20;

  // This page is BASE/admin: everything else is under BASE (a static page has no data-base).
  const BASE = location.pathname.replace(/\/admin\/?$/, '');
  const at = (p) => BASE + p;
  // A poll's routes: the default poll keeps the seed's paths (/index, /present, /results.csv).
  const pollPage = (id) => (id === 'default' ? at('/index') : at('/p/' + encodeURIComponent(id)));
  const pollRoot = (id) => (id === 'default' ? BASE : at('/p/' + encodeURIComponent(id)));
  const presentPage = (id) => (id === 'default' ? at('/present') : pollRoot(id) + '/present');

  const $ = (id) => document.getElementById(id);
  const loginForm = $('login');
  const tokenInput = $('token');
  const app = $('app');
  const createForm = $('create');
  const optionsList = $('options');
  const pollsList = $('polls');
  const messageEl = $('message');
  const logoutButton = $('logout');

  const store = {
    get() { try { return sessionStorage.getItem(TOKEN_KEY); } catch (_) { return null; } },
    set(v) { try { sessionStorage.setItem(TOKEN_KEY, v); } catch (_) { /* storage off: not kept */ } },
    clear() { try { sessionStorage.removeItem(TOKEN_KEY); } catch (_) { /* nothing kept */ } },
  };
  let token = '';

  function say(text, bad = false) {
    messageEl.textContent = text;
    messageEl.classList.toggle('bad', bad);
  }

  // An element with attributes and children (strings become text nodes, never markup).
  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === 'text') e.textContent = v;
      else if (k === 'class') e.className = v;
      else e.setAttribute(k, v);
    }
    e.append(...children);
    return e;
  }

  /** One API call with the token. Returns { status, data } (data: the JSON answer, or null). */
  async function api(method, path, form) {
    const init = { method, headers: { Authorization: 'Bearer ' + token }, cache: 'no-store' };
    if (form) init.body = form; // URLSearchParams: sent form-encoded, as the API wants
    const res = await fetch(at(path), init);
    let data = null;
    if (res.status !== 204) {
      try { data = await res.json(); } catch (_) { /* not JSON */ }
    }
    if (res.status === 401) signedOut('The token was refused.');
    return { status: res.status, data };
  }

  const errorOf = (r) => (r.data && r.data.error) || `HTTP ${r.status}`;

  // ------------------------------------------------------------------ signing in

  async function signIn(t) {
    token = t;
    let res;
    try {
      res = await fetch(at('/admin'), {
        method: 'POST',
        headers: { Authorization: 'Bearer ' + t },
        cache: 'no-store',
      });
    } catch (_) {
      say('The server cannot be reached.', true);
      return;
    }
    if (!res.ok) {
      signedOut(res.status === 401 ? 'The token was refused.' : `Signing in failed: HTTP ${res.status}`);
      return;
    }
    store.set(t);
    loginForm.hidden = true;
    app.hidden = false;
    logoutButton.hidden = false;
    say('');
    await refresh();
  }

  function signedOut(why) {
    token = '';
    store.clear();
    loginForm.hidden = false;
    app.hidden = true;
    logoutButton.hidden = true;
    say(why || '', !!why);
  }

  loginForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const t = tokenInput.value.trim();
    tokenInput.value = '';
    if (t) signIn(t);
  });

  logoutButton.addEventListener('click', async () => {
    // Clears the admin cookie too (the presenter views of this browser lose their access).
    try {
      await fetch(at('/admin'), { method: 'POST', body: new URLSearchParams({ logout: '1' }) });
    } catch (_) { /* signed out here anyway */ }
    signedOut('Signed out.');
  });

  // ------------------------------------------------------------------ the create form

  function addOption(value = '') {
    if (optionsList.children.length >= MAX_OPTIONS) return;
    const n = optionsList.children.length + 1;
    const input = el('input', {
      type: 'text', name: 'option', required: '', maxlength: '100', 'aria-label': `Option ${n}`,
    });
    input.value = value;
    const remove = el('button', { type: 'button', class: 'secondary remove', text: 'Remove', 'aria-label': `Remove option ${n}` });
    const li = el('li', {}, input, remove);
    remove.addEventListener('click', () => {
      if (optionsList.children.length <= MIN_OPTIONS) return;
      li.remove();
      renumber();
    });
    optionsList.append(li);
    renumber();
    return input;
  }

  // Labels follow the order; the add and remove buttons follow the 2–20 rule.
  function renumber() {
    const rows = [...optionsList.children];
    rows.forEach((li, i) => {
      li.querySelector('input').setAttribute('aria-label', `Option ${i + 1}`);
      const b = li.querySelector('button');
      b.setAttribute('aria-label', `Remove option ${i + 1}`);
      b.disabled = rows.length <= MIN_OPTIONS;
    });
    $('add-option').disabled = rows.length >= MAX_OPTIONS;
  }

  $('add-option').addEventListener('click', () => {
    const input = addOption();
    if (input) input.focus();
  });

  createForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const form = new URLSearchParams();
    form.set('question', $('question').value.trim());
    for (const input of optionsList.querySelectorAll('input')) {
      const v = input.value.trim();
      if (v) form.append('option', v);
    }
    const id = $('poll-id').value.trim();
    if (id) form.set('id', id);
    form.set('mode', $('mode').value);
    form.set('results', $('results').value);
    let r;
    try {
      r = await api('POST', '/api/polls', form);
    } catch (_) {
      say('The server cannot be reached.', true);
      return;
    }
    if (r.status !== 201 || !r.data) {
      if (r.status !== 401) say(`The poll was not created: ${errorOf(r)}`, true);
      return;
    }
    say(`Created poll “${r.data.question}” (${r.data.id}).`);
    createForm.reset();
    resetOptions();
    await refresh();
  });

  function resetOptions() {
    optionsList.replaceChildren();
    for (let i = 0; i < MIN_OPTIONS; i++) addOption();
  }

  // ------------------------------------------------------------------ the list of polls

  async function refresh() {
    let r;
    try {
      r = await api('GET', '/api/polls');
    } catch (_) {
      say('The server cannot be reached.', true);
      return;
    }
    if (r.status !== 200 || !r.data || !Array.isArray(r.data.polls)) {
      if (r.status !== 401) say(`The polls could not be listed: ${errorOf(r)}`, true);
      return;
    }
    pollsList.replaceChildren(...r.data.polls.map(pollItem));
  }

  function pollItem(p) {
    const id = String(p.id);
    const total = Number(p.total) || 0;
    const li = el('li', { class: 'poll', id: 'poll-' + id, 'data-id': id, 'data-state': String(p.state) });
    li.append(
      el('h3', { text: String(p.question) }),
      el('p', {
        class: 'facts',
        text: `${id} · ${p.state} · ${p.mode} · results ${p.results} · ${total} vote${total === 1 ? '' : 's'}` +
          (p.voters != null ? ` · ${p.voters} voter${Number(p.voters) === 1 ? '' : 's'}` : ''),
      }),
    );
    const counts = el('ol', { class: 'counts' });
    for (const c of Array.isArray(p.candidates) ? p.candidates : []) {
      counts.append(el('li', {}, String(c.name) + ': ', el('strong', { text: String(c.count ?? '') })));
    }
    li.append(counts);

    const links = el('p', { class: 'links' },
      el('a', { href: pollPage(id), class: 'page', text: 'Vote page' }),
      el('a', { href: presentPage(id), class: 'present', text: 'Presenter view' }),
      el('a', { href: pollRoot(id) + '/results.csv', class: 'csv', text: 'CSV' }),
      el('a', { href: pollRoot(id) + '/results.json', class: 'json', text: 'JSON' }));
    li.append(links);

    const actions = el('p', { class: 'actions' });
    const action = (label, cls, run) => {
      const b = el('button', { type: 'button', class: cls, text: label });
      b.addEventListener('click', async () => {
        b.disabled = true;
        try { await run(); } finally { b.disabled = false; }
      });
      actions.append(b);
    };
    const post = (verb) => async () => {
      const r = await api('POST', `/api/polls/${encodeURIComponent(id)}/${verb}`);
      if (r.status === 200) say(`Poll ${id}: ${verb === 'reset' ? 'reset' : verb === 'open' ? 'opened' : 'closed'}.`);
      else if (r.status !== 401) say(`Poll ${id}: ${verb} failed: ${errorOf(r)}`, true);
      await refresh();
    };
    if (p.state === 'closed') action('Open', 'open', post('open'));
    else action('Close', 'close', post('close'));
    action('Reset', 'secondary reset', post('reset'));
    if (id !== 'default') {
      action('Delete', 'secondary delete', async () => {
        if (!confirm(`Delete the poll “${p.question}” and its votes?`)) return;
        const r = await api('DELETE', `/api/polls/${encodeURIComponent(id)}`);
        if (r.status === 204) say(`Poll ${id} deleted.`);
        else if (r.status !== 401) say(`Poll ${id}: delete failed: ${errorOf(r)}`, true);
        await refresh();
      });
    }
    li.append(actions);
    return li;
  }

  $('refresh').addEventListener('click', () => { refresh(); });

  // ------------------------------------------------------------------ start

  resetOptions();
  const kept = store.get();
  if (kept) signIn(kept);
})();
