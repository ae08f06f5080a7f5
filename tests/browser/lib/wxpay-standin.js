// A small WeChat Pay v3 stand-in for the browser tests (CommonJS, plain Node, no deps):
// JSAPI order creation, order query and close, answered with responses signed by the
// throwaway test key of tests/fixtures (the key tests/common/standin.rs uses; its public
// half is the "platform" key kioskd verifies with), plus the official account's token
// and JS-SDK ticket for wx.config. Test controls:
//   POST /_test/pay {out_trade_no}  marks the order paid and sends kioskd the payment
//                                   notification, encrypted with the APIv3 key and
//                                   signed as WeChat Pay signs it; answers kioskd's status.
//   GET  /_test/orders              the orders created so far.
// Run: node lib/wxpay-standin.js  (WXPAY_STANDIN_PORT, KIOSKD_NOTIFY_URL)
'use strict';
const http = require('node:http');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const PAY_APPID = 'wx0123456789abcdef';
const MCHID = '1900000109';
const MERCHANT_SERIAL = '0123456789ABCDEF0123456789ABCDEF01234567';
const PLATFORM_SERIAL = 'PUB_KEY_ID_TEST0000000000000000000000000001';
const APIV3 = '5OxGtgpZRdbnPrA8CrcE57xBbUtrT9vv';
const MP_SECRET = 'mpsecret';
const fixtures = path.resolve(__dirname, '../../fixtures');
const KEY_FILE = path.join(fixtures, 'wechatpay_test_key.pem');
const PUB_FILE = path.join(fixtures, 'wechatpay_test_pub.pem');

function nonce(n) {
  const a = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
  let s = '';
  for (const b of crypto.randomBytes(n)) s += a[b % a.length];
  return s;
}

function sign(key, message) {
  return crypto.sign('sha256', Buffer.from(message), key).toString('base64');
}

/** `TS\nNONCE\nBODY\n`, as responses and notifications are signed. */
function signedHeaders(key, body, ts) {
  ts = String(ts || Math.floor(Date.now() / 1000));
  const n = nonce(32);
  return {
    'Wechatpay-Timestamp': ts,
    'Wechatpay-Nonce': n,
    'Wechatpay-Signature': sign(key, `${ts}\n${n}\n${body}\n`),
    'Wechatpay-Serial': PLATFORM_SERIAL,
    'Wechatpay-Signature-Type': 'WECHATPAY2-SHA256-RSA2048',
  };
}

function encrypt(plaintext) {
  const iv = nonce(12);
  const c = crypto.createCipheriv('aes-256-gcm', Buffer.from(APIV3), Buffer.from(iv));
  c.setAAD(Buffer.from('transaction'));
  const ct = Buffer.concat([c.update(Buffer.from(plaintext)), c.final(), c.getAuthTag()]);
  return { ciphertext: ct.toString('base64'), nonce: iv };
}

function transaction(order, no, tx, state) {
  const total = (order.amount && order.amount.total) || 0;
  return {
    mchid: MCHID, appid: PAY_APPID, out_trade_no: no, transaction_id: tx,
    trade_type: 'JSAPI', trade_state: state, trade_state_desc: state === 'SUCCESS' ? '支付成功' : state,
    bank_type: 'OTHERS', attach: '', success_time: new Date().toISOString(),
    payer: { openid: (order.payer && order.payer.openid) || 'oUnknown' },
    amount: { total, payer_total: total, currency: 'CNY', payer_currency: 'CNY' },
  };
}

/** The notification body and headers for a paid order. */
function notification(key, order, no, tx) {
  const t = transaction(order, no, tx, 'SUCCESS');
  const r = encrypt(JSON.stringify(t));
  const body = JSON.stringify({
    id: 'EV-' + nonce(10), create_time: new Date().toISOString(),
    resource_type: 'encrypt-resource', event_type: 'TRANSACTION.SUCCESS', summary: '支付成功',
    resource: { original_type: 'transaction', algorithm: 'AEAD_AES_256_GCM', ciphertext: r.ciphertext, associated_data: 'transaction', nonce: r.nonce },
  });
  return { body, headers: signedHeaders(key, body) };
}

function start(port, notifyUrl) {
  const key = fs.readFileSync(KEY_FILE, 'utf8');
  const orders = new Map();
  const paid = new Map();
  const closed = new Set();

  const send = (res, status, obj, signed) => {
    const body = obj === null ? '' : JSON.stringify(obj);
    const h = { 'Content-Type': 'application/json' };
    if (signed) Object.assign(h, signedHeaders(key, body));
    res.writeHead(status, h);
    res.end(body);
  };

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const url = new URL(req.url, 'http://standin');
      const p = url.pathname;
      try {
        if (p === '/healthz') return send(res, 200, { ok: true });
        if (req.method === 'POST' && p === '/v3/pay/transactions/jsapi') {
          if (!String(req.headers.authorization || '').startsWith('WECHATPAY2-SHA256-RSA2048 ')) {
            return send(res, 401, { code: 'SIGN_ERROR', message: '签名错误' }, false);
          }
          const o = JSON.parse(raw || '{}');
          orders.set(o.out_trade_no, o);
          return send(res, 200, { prepay_id: 'wx_prepay_' + o.out_trade_no }, true);
        }
        let m = /^\/v3\/pay\/transactions\/out-trade-no\/([^/]+)$/.exec(p);
        if (req.method === 'GET' && m) {
          const no = decodeURIComponent(m[1]);
          const o = orders.get(no);
          if (!o) return send(res, 404, { code: 'ORDER_NOT_EXIST', message: '订单不存在' }, true);
          const state = paid.has(no) ? 'SUCCESS' : closed.has(no) ? 'CLOSED' : 'NOTPAY';
          return send(res, 200, transaction(o, no, paid.get(no) || '', state), true);
        }
        m = /^\/v3\/pay\/transactions\/out-trade-no\/([^/]+)\/close$/.exec(p);
        if (req.method === 'POST' && m) {
          closed.add(decodeURIComponent(m[1]));
          return send(res, 204, null, true);
        }
        if (p === '/cgi-bin/token') {
          if (url.searchParams.get('secret') !== MP_SECRET) return send(res, 200, { errcode: 40001, errmsg: 'invalid credential' });
          return send(res, 200, { access_token: 'MPTOKEN1', expires_in: 7200 });
        }
        if (p === '/cgi-bin/ticket/getticket') {
          return send(res, 200, { errcode: 0, errmsg: 'ok', ticket: 'TICKET1', expires_in: 7200 });
        }
        if (p === '/_test/orders') return send(res, 200, Array.from(orders.values()));
        if (req.method === 'POST' && p === '/_test/pay') {
          const no = JSON.parse(raw || '{}').out_trade_no;
          const o = orders.get(no);
          if (!o) return send(res, 404, { error: 'no such order' });
          const tx = '4200' + Date.now() + nonce(6);
          paid.set(no, tx);
          const n = notification(key, o, no, tx);
          const r = await fetch(notifyUrl, { method: 'POST', headers: Object.assign({ 'Content-Type': 'application/json' }, n.headers), body: n.body });
          return send(res, 200, { kioskd_status: r.status, kioskd_body: await r.text() });
        }
        send(res, 404, { error: 'no such endpoint' });
      } catch (e) {
        send(res, 500, { error: String(e) });
      }
    });
  });
  server.listen(port, '127.0.0.1');
  return server;
}

module.exports = { start, notification, PAY_APPID, MCHID, MERCHANT_SERIAL, PLATFORM_SERIAL, APIV3, KEY_FILE, PUB_FILE };

if (require.main === module) {
  const port = Number(process.env.WXPAY_STANDIN_PORT || 18090);
  const notify = process.env.KIOSKD_NOTIFY_URL || 'http://127.0.0.1:18081/wechat/notify';
  start(port, notify);
  console.log(`wxpay stand-in on 127.0.0.1:${port}, notifying ${notify}`);
}
