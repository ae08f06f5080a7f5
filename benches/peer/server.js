// The minimal peer `kioskd-bench push` measures kioskd against: a plain Node `ws`
// server holding kiosk sockets in a map from device code to socket, and an HTTP
// handler per operator command that sends the frame. No actors, no database, no audit,
// no acknowledgement state. A benchmark tool only: kioskd itself never needs Node.
//
//   PORT=8090 TOKEN=t node server.js
'use strict';
const http = require('http');
const { WebSocketServer } = require('ws');

const port = Number(process.env.PORT || 8090);
const token = process.env.TOKEN || 'peer-token';
const sockets = new Map(); // device code -> socket
let seq = 0;
let id = 0;

function reply(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function readJson(req, cb) {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    try {
      cb(JSON.parse(Buffer.concat(chunks).toString('utf8')));
    } catch (e) {
      cb(null);
    }
  });
}

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/readyz') return reply(res, 200, { ok: true });
  if (req.headers.authorization !== `Bearer ${token}`) return reply(res, 401, { error: 'unauthorized' });
  const m = req.method === 'POST' && /^\/ops\/devices\/([^/]+)\/command$/.exec(req.url);
  if (m) {
    const code = decodeURIComponent(m[1]);
    return readJson(req, (b) => {
      if (!b || typeof b.name !== 'string') return reply(res, 400, { error: 'bad request' });
      const ws = sockets.get(code);
      id += 1;
      if (ws) {
        seq += 1;
        ws.send(JSON.stringify({ type: 'command', seq, data: { id, name: b.name, text: b.text } }));
      }
      reply(res, 202, { device_code: code, command: b.name, id, delivered: !!ws });
    });
  }
  if (req.method === 'POST' && req.url === '/ops/broadcast') {
    return readJson(req, (b) => {
      if (!b || typeof b.name !== 'string') return reply(res, 400, { error: 'bad request' });
      id += 1;
      seq += 1;
      // One frame, serialised once, sent to every socket.
      const frame = JSON.stringify({ type: 'command', seq, data: { id, name: b.name, text: b.text } });
      for (const ws of sockets.values()) ws.send(frame);
      reply(res, 202, { command: b.name, devices: sockets.size });
    });
  }
  reply(res, 404, { error: 'not found' });
});

const wss = new WebSocketServer({ noServer: true });
server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'http://x');
  const code = url.searchParams.get('device_code');
  if (url.pathname !== '/ws/kiosk' || !code) return socket.destroy();
  wss.handleUpgrade(req, socket, head, (ws) => {
    sockets.set(code, ws);
    ws.on('message', () => {}); // hello, acks: nothing to keep
    ws.on('close', () => {
      if (sockets.get(code) === ws) sockets.delete(code);
    });
  });
});
server.listen(port, '127.0.0.1');
