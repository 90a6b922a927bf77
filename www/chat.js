// livevote — the tutorial's chat client, talking to the echo server at ws(s)://HOST/chatsocket
// (relative to this page, so that it works under a --base-path too).
// Lines appended to #content: "connected" on open, each message received, "closed" on close.
// Received data goes in through textContent only: it is never parsed as HTML.
'use strict';

(() => {
  const url = new URL('chatsocket', location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  url.search = '';
  url.hash = '';
  const form = document.getElementById('form');
  const txt = document.getElementById('txt');
  const closeBtn = document.getElementById('close');
  const content = document.getElementById('content');

  let socket = null;
  let outbox = []; // messages typed while (re)connecting, sent on open
  let closeWanted = false; // Close pressed while still connecting: close as soon as it opens

  function line(text, isEvent) {
    // Keep the view at the bottom only if the reader was already there.
    const atBottom = content.scrollHeight - content.scrollTop - content.clientHeight < 4;
    const div = document.createElement('div');
    div.textContent = text;
    if (isEvent) div.className = 'event';
    content.appendChild(div);
    if (atBottom) content.scrollTop = content.scrollHeight;
  }

  function connect() {
    let s;
    try {
      s = new WebSocket(url);
    } catch (err) {
      line('could not connect: ' + err.message, true);
      return;
    }
    socket = s;
    s.onopen = () => {
      line('connected', true);
      if (closeWanted) { closeWanted = false; outbox = []; s.close(1000, 'bye'); return; }
      for (const m of outbox) s.send(m);
      outbox = [];
    };
    s.onmessage = (ev) => {
      if (typeof ev.data === 'string') line(ev.data, false);
      else line('[binary message, ' + (ev.data.size ?? ev.data.byteLength) + ' bytes]', true);
    };
    // An error is always followed by close, which reports it.
    s.onerror = () => {};
    s.onclose = () => {
      line('closed', true);
      if (socket === s) socket = null;
      if (outbox.length) line(`not sent: ${outbox.length} message(s)`, true);
      outbox = [];
    };
  }

  function send() {
    const msg = txt.value;
    if (msg === '') return;
    txt.value = '';
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(msg);
    } else {
      // Closed (by the button or the server): open a new connection and send once it is up.
      closeWanted = false;
      outbox.push(msg);
      if (!socket) connect();
    }
    txt.focus();
  }

  // A form submit covers both the Send button and Enter in the input.
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    send();
  });

  closeBtn.addEventListener('click', () => {
    // "closed" is appended by onclose, once the closing handshake is done.
    // Closing a socket that is still connecting makes browsers log an error: wait for open.
    if (!socket) return;
    if (socket.readyState === WebSocket.OPEN) socket.close(1000, 'bye');
    else if (socket.readyState === WebSocket.CONNECTING) closeWanted = true;
  });

  connect();
})();
