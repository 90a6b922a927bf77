'use strict';
// The node.js comparison peer of livevote's benchmarks (`make bench`): node's `http` module and
// the `ws` package, one process, one event loop, written the obvious way. It speaks the same
// subset of livevote's protocol as bench/src/bin/peer_tungstenite.rs:
//
// - GET /index: an ~860-byte HTML page with the current counts, rendered per request.
// - GET /votes: {"version":V,"epoch":"E","candidates":[{"uid","name","count"}...]}.
// - POST /vote with the form body uid=N: counts it, answers the 2 bytes `ok`.
// - GET /get_new_vote?since=V: answers at once when the version is past V, else parks the
//   response (10 s at most) until a vote; livevote's long-poll JSON
//   ({"status":true,"data":{"uid","count"},"version","from","kind","changes":[...]}, the
//   candidates changed since V; status:false on the timeout). Without `since`: the next vote.
// - /get_new_vote upgraded to a WebSocket: one {"uid":"1","count":N,"version":V} text message
//   per vote to every subscriber (no resume, no presence); a text message naming a candidate
//   is a vote.
// - /chatsocket upgraded: echo (text as text, binary as binary).
//
// Keep-alive as node's http does it (keepAliveTimeout raised to 60 s); permessage-deflate off
// (ws's server default). Usage: node server.js --addr 127.0.0.1:PORT (or PORT=N in the
// environment, on 127.0.0.1).

const http = require('http');
const { WebSocketServer } = require('ws');

const LONGPOLL_TIMEOUT_MS = 10000;

function parseAddr() {
  let addr = null;
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--addr' && i + 1 < argv.length) {
      addr = argv[++i];
    } else {
      console.error(`peer_node: unknown argument ${argv[i]}`);
      process.exit(2);
    }
  }
  if (addr === null) addr = `127.0.0.1:${process.env.PORT || 9090}`;
  const at = addr.lastIndexOf(':');
  return { host: addr.slice(0, at), port: Number(addr.slice(at + 1)) };
}

const candidates = [
  { uid: '1', name: '野味', count: 0, changed: 0 },
  { uid: '2', name: '海龙', count: 0, changed: 0 },
];
const byUid = new Map(candidates.map((c) => [c.uid, c]));
let version = 0;
let last = null; // the candidate of the last vote
const epoch = Date.now().toString(16);
const waiters = new Set(); // parked long-polls: { res, since, timer, close }
const subs = new Set(); // /get_new_vote WebSockets

function vote(uid) {
  const c = byUid.get(uid);
  if (!c) return false;
  c.count += 1;
  version += 1;
  c.changed = version;
  last = c;
  if (subs.size > 0) {
    const msg = JSON.stringify({ uid: c.uid, count: c.count, version });
    for (const ws of subs) ws.send(msg);
  }
  if (waiters.size > 0) {
    const woken = [...waiters];
    waiters.clear();
    for (const w of woken) {
      clearTimeout(w.timer);
      w.res.off('close', w.close);
      send(w.res, 200, 'application/json', longPollAnswer(w.since));
    }
  }
  return true;
}

function longPollAnswer(since) {
  if (version === since) {
    return JSON.stringify({
      status: false, data: null, version, from: since, kind: 'timeout', epoch, changes: [],
    });
  }
  const from = since > version ? 0 : since;
  return JSON.stringify({
    status: true,
    data: last ? { uid: last.uid, count: last.count } : null,
    version,
    from: since,
    kind: 'live',
    epoch,
    changes: candidates.filter((c) => c.changed > from).map((c) => ({ uid: c.uid, count: c.count })),
  });
}

function renderIndex() {
  const total = Math.max(1, candidates.reduce((n, c) => n + c.count, 0));
  const items = candidates.map((c) => `<li id="user_${c.uid}" style="--share:${(100 * c.count / total).toFixed(1)}%">${c.name} <span>${c.count}</span>`
    + `<form method="post" action="/vote"><input type="hidden" name="uid" value="${c.uid}">`
    + `<button type="submit" aria-label="Vote for ${c.name}">Vote</button></form></li>\n`).join('');
  return '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
    + '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
    + '<title>Live vote</title>\n<link rel="icon" href="data:,">\n</head>\n'
    + `<body data-version="${version}" data-epoch="${epoch}">\n<h1>Live vote</h1>\n`
    + "<p>Press a candidate's <strong>Vote</strong> button.</p>\n<ul id=\"candidates\">\n"
    + `${items}</ul>\n<footer><p>Version <strong id="version">${version}</strong></p></footer>\n</body>\n</html>\n`;
}

function renderVotes() {
  return JSON.stringify({
    version, epoch, candidates: candidates.map((c) => ({ uid: c.uid, name: c.name, count: c.count })),
  });
}

function send(res, status, type, body) {
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

const server = http.createServer((req, res) => {
  const q = req.url.indexOf('?');
  const path = q < 0 ? req.url : req.url.slice(0, q);
  if (req.method === 'GET' && path === '/index') {
    send(res, 200, 'text/html; charset=utf-8', renderIndex());
  } else if (req.method === 'GET' && path === '/votes') {
    send(res, 200, 'application/json', renderVotes());
  } else if (req.method === 'POST' && path === '/vote') {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const form = new URLSearchParams(Buffer.concat(chunks).toString('latin1'));
      if (vote(form.get('uid'))) send(res, 200, 'text/plain', 'ok');
      else send(res, 400, 'text/plain', 'unknown candidate');
    });
  } else if (req.method === 'GET' && path === '/get_new_vote') {
    const s = new URLSearchParams(q < 0 ? '' : req.url.slice(q + 1)).get('since');
    if (s !== null && s !== '' && !/^[0-9]+$/.test(s)) {
      send(res, 400, 'text/plain', "'since' must be a version number");
      return;
    }
    const since = s === null || s === '' ? version : Number(s);
    if (since !== version) {
      send(res, 200, 'application/json', longPollAnswer(since));
      return;
    }
    const w = { res, since, timer: null, close: null };
    w.timer = setTimeout(() => {
      waiters.delete(w);
      res.off('close', w.close);
      send(res, 200, 'application/json', longPollAnswer(since));
    }, LONGPOLL_TIMEOUT_MS);
    w.close = () => {
      clearTimeout(w.timer);
      waiters.delete(w);
    };
    res.on('close', w.close);
    waiters.add(w);
  } else {
    send(res, 404, 'text/plain', 'not found');
  }
});
server.keepAliveTimeout = 60000;
server.headersTimeout = 61000;

const wss = new WebSocketServer({ noServer: true, clientTracking: false, perMessageDeflate: false });

server.on('upgrade', (req, socket, head) => {
  socket.on('error', () => {});
  const q = req.url.indexOf('?');
  const path = q < 0 ? req.url : req.url.slice(0, q);
  if (path !== '/get_new_vote' && path !== '/chatsocket') {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.on('error', () => {});
    if (path === '/chatsocket') {
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      return;
    }
    subs.add(ws);
    ws.on('message', (data, isBinary) => {
      if (!isBinary) vote(data.toString().trim());
    });
    ws.on('close', () => subs.delete(ws));
  });
});

const { host, port } = parseAddr();
server.on('error', (e) => {
  console.error(`peer_node: ${e.message}`);
  process.exit(1);
});
server.listen(port, host, () => console.error(`peer_node listening on ${host}:${port}`));
process.on('SIGTERM', () => process.exit(0));
