// The live session over /ws/user: elapsed time, cost, balance, minutes left and the
// countdown to paid_until, the low-balance warning, the end button and the summary.
// Reconnects by itself with backoff; every (re)connect starts with a snapshot.
import {
  $, appConfig, clock, duration, END_REASONS, get, me, messageFor, post, show, signInUrl,
  text, yuan,
} from './common.js';

const UNLIMITED = 1000000;
let cfg = null;
let s = null; // the running session (snapshot/session_started fields, updated by billing)
let skew = 0; // server clock - local clock, ms
let lowWarned = false;
let ended = false;
let ws = null;
let attempt = 0;
let timer = null;

function serverNow() {
  return Date.now() + skew;
}

function unitLabel() {
  return cfg.unit_seconds === 60 ? '分钟' : cfg.unit_seconds + '秒';
}

function render() {
  if (!s) return;
  const now = serverNow();
  text('#elapsed', clock(now - s.started_at));
  text('#cost', yuan(s.cost));
  text('#balance', yuan(s.balance));
  const postpaid = s.minutes_left >= UNLIMITED;
  text('#minutes-left', postpaid ? '后付费' : duration(s.minutes_left * cfg.unit_seconds));
  text('#paid-left', clock(s.paid_until - now));
  const low = !postpaid && (lowWarned || s.minutes_left <= cfg.low_balance_minutes);
  if (low) text('#low-minutes', duration(s.minutes_left * cfg.unit_seconds));
  show('#low', low);
}

function running(sess, serverTime) {
  s = {
    session_id: sess.session_id,
    device_code: sess.device_code,
    started_at: sess.started_at,
    charge_mode: sess.charge_mode,
    cost: sess.cost,
    balance: sess.balance,
    minutes_left: sess.minutes_left,
    paid_until: sess.paid_until,
  };
  if (serverTime) skew = serverTime - Date.now();
  ended = false;
  text('#device', '设备 ' + s.device_code);
  const id = s.session_id;
  get('/wechat/app/device/' + encodeURIComponent(s.device_code)).then((d) => {
    if (d.success && s && s.session_id === id) {
      text('#device', d.result.name + ' · ' + [d.result.city, d.result.location].filter(Boolean).join(' '));
    }
  });
  text('#price', '价格 ' + yuan(s.charge_mode) + ' / ' + unitLabel() + '，每' + unitLabel() + '开始时从余额预扣，结束时多扣的部分退回。');
  show('#running');
  show('#end-box');
  show('#idle', false);
  show('#ended', false);
  render();
}

async function finished(ev) {
  const last = s;
  ended = true;
  s = null;
  show('#running', false);
  show('#end-box', false);
  show('#low', false);
  const reason = END_REASONS[ev.reason] || '会话已结束';
  text('#reason', reason);
  const byUser = !ev.reason || ev.reason === 'user_logout' || ev.reason === 'phone_offline';
  $('#ended-icon').className = (byUser ? 'weui-icon-success' : 'weui-icon-warn') + ' weui-icon_msg';
  text('#sum-cost', yuan(ev.cost));
  if (last) {
    text('#sum-duration', duration((serverNow() - last.started_at) / 1000));
    const postpaid = last.minutes_left >= UNLIMITED;
    const refund = postpaid ? 0 : Math.max(0, last.cost - ev.cost);
    text('#sum-refund', yuan(refund));
    show('#sum-refund-row', !postpaid);
  } else {
    text('#sum-duration', '—');
    show('#sum-refund-row', false);
  }
  show('#order-box', !!ev.order_id);
  show('#ended');
  const who = await me();
  if (who.user) text('#sum-balance', yuan(who.user.balance_account));
  show('#sum-balance-row', !!who.user);
}

function onEvent(msg) {
  const d = msg.data || {};
  switch (msg.type) {
    case 'snapshot':
      skew = d.server_time - Date.now();
      if (d.session) running(d.session, d.server_time);
      else if (s && !ended) {
        // It ended while we were away: the summary from the expense list.
        summaryFromHistory();
      } else if (!ended) {
        show('#running', false);
        show('#end-box', false);
        show('#idle');
        text('#device', '');
      }
      break;
    case 'session_started':
      running(d, null);
      break;
    case 'billing':
      if (!s || d.session_id !== s.session_id) break;
      s.cost = d.cost;
      s.balance = d.balance;
      s.minutes_left = d.minutes_left;
      s.paid_until = d.paid_until;
      if (d.server_time) skew = d.server_time - Date.now();
      render();
      break;
    case 'balance_low':
      if (!s || d.session_id !== s.session_id) break;
      lowWarned = true;
      s.minutes_left = d.minutes_left;
      render();
      break;
    case 'session_ended':
      if (s && d.session_id !== s.session_id) break;
      finished(d);
      break;
    default:
      break;
  }
}

async function summaryFromHistory() {
  const r = await post('/wechat/expense/list', { page: 1, size: 1 });
  const it = r.success && r.result.data[0];
  finished({ reason: '', cost: it ? it.cost_money : 0 });
}

function connect() {
  const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws/user';
  try {
    ws = new WebSocket(url);
  } catch (e) {
    retry();
    return;
  }
  ws.onopen = () => {
    attempt = 0;
    text('#conn', '');
  };
  ws.onmessage = (e) => {
    let msg = null;
    try {
      msg = JSON.parse(e.data);
    } catch (err) {
      return;
    }
    if (msg && msg.type) onEvent(msg);
  };
  ws.onclose = () => {
    ws = null;
    retry();
  };
}

async function retry() {
  attempt += 1;
  text('#conn', '（连接中断，正在重连…）');
  if (attempt >= 2) {
    // Refused for a reason that retrying will not fix?
    const who = await me();
    if (who.state === 'anonymous' || who.state === 'unbound') {
      location.href = signInUrl('/app/live');
      return;
    }
  }
  const delay = Math.min(15000, 500 * Math.pow(2, attempt - 1)) * (0.75 + Math.random() * 0.5);
  setTimeout(connect, delay);
}

async function main() {
  cfg = await appConfig();
  const who = await me();
  if (who.state !== 'ok') {
    location.href = signInUrl('/app/live');
    return;
  }
  $('#end').addEventListener('click', async () => {
    const b = $('#end');
    b.disabled = true;
    text(b, '正在结束…');
    const r = await get('/windows/offline');
    b.disabled = false;
    text(b, '结束使用');
    if (!r.success) {
      text('#error', messageFor(r));
      show('#error');
      return;
    }
    show('#error', false);
    // The summary comes with session_ended; if the socket is down, ask directly.
    setTimeout(async () => {
      if (!ended && s) {
        const st = await get('/windows/online/status');
        if (!st.success && !ended) summaryFromHistory();
      }
    }, 4000);
  });
  connect();
  timer = setInterval(render, 250);
}

main();
