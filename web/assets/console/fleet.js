// The live fleet: every device a tile coloured by status, fed by /ws/ops after an
// initial load of GET /ops/devices and GET /ops/alerts (running sessions with their
// users and deadlines). Reconnects with backoff; reloads the state on every connect and
// every 15 s (online/offline is not an event).
import { api, h, clear, $, fen, dur, initPage, showError, STATUS_NAMES } from './common.js';
import { openAction } from './actions.js';

const devices = new Map(); // code → device from /ops/devices
const sessions = new Map(); // code → {id, user_id, nick, started_at, cost, ends_at}
const tiles = new Map(); // code → {el, parts..., key}
let unitMs = 60000;
let skew = 0; // server clock − local clock
let dirty = true;

function effective(d) { return d.online ? d.status : 'offline'; }

async function load() {
  const both = await Promise.all([api('/ops/devices'), api('/ops/alerts')]);
  const list = both[0].data;
  const alerts = both[1];
  unitMs = alerts.unit_ms || unitMs;
  skew = alerts.server_time - Date.now();
  devices.clear();
  list.forEach(function (d) { devices.set(d.device_code, d); });
  sessions.clear();
  alerts.sessions.forEach(function (s) {
    sessions.set(s.device_code, {
      id: s.id, user_id: s.user_id, nick: s.nick_name || s.mobile || ('#' + s.user_id),
      started_at: s.started_at, cost: s.cost_money,
      ends_at: s.time_left_ms === null ? null : alerts.server_time + s.time_left_ms,
    });
  });
  fillFilters();
  dirty = true;
}

let refreshTimer = null;
function refreshSoon() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(function () {
    refreshTimer = null;
    load().catch(showError);
  }, 400);
}

function onEvent(ev) {
  const d = ev.data || {};
  const code = d.device_code;
  if (ev.type === 'device_status' && devices.has(code)) {
    devices.get(code).status = d.status;
  } else if (ev.type === 'session_started') {
    sessions.set(code, {
      id: d.session_id, user_id: d.user_id, nick: '#' + d.user_id, started_at: d.started_at, cost: d.cost,
      ends_at: d.minutes_left >= 1000000 ? null : d.paid_until + d.minutes_left * unitMs,
    });
    const dev = devices.get(code);
    if (dev) { dev.status = 'busy'; dev.online = true; }
    refreshSoon(); // for the user's name
  } else if (ev.type === 'billing') {
    const s = sessions.get(code);
    if (s) {
      s.cost = d.cost;
      s.ends_at = d.minutes_left >= 1000000 ? null : d.paid_until + d.minutes_left * unitMs;
    }
  } else if (ev.type === 'balance_low') {
    const s = sessions.get(code);
    if (s) s.low = true;
  } else if (ev.type === 'session_ended') {
    sessions.delete(code);
  } else {
    return;
  }
  dirty = true;
}

let backoff = 1000;
function connect() {
  const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws/ops';
  const ws = new WebSocket(url);
  ws.addEventListener('open', function () {
    backoff = 1000;
    $('#live-dot').className = 'live-dot on';
    $('#live-text').textContent = '实时连接';
    load().catch(showError);
  });
  ws.addEventListener('message', function (m) {
    let ev;
    try { ev = JSON.parse(m.data); } catch (e) { return; }
    onEvent(ev);
  });
  ws.addEventListener('close', function () {
    $('#live-dot').className = 'live-dot';
    const wait = Math.min(30000, backoff) * (0.5 + Math.random() / 2);
    $('#live-text').textContent = '连接断开，' + Math.ceil(wait / 1000) + ' 秒后重连';
    backoff = Math.min(30000, backoff * 2);
    setTimeout(connect, wait);
  });
}

const FILTERS = ['province', 'city', 'area', 'location'];
function fillFilters() {
  FILTERS.forEach(function (f) {
    const sel = $('#f-' + f);
    const cur = sel.value;
    const values = Array.from(new Set(Array.from(devices.values()).map(function (d) { return d[f] || ''; }).filter(Boolean))).sort();
    clear(sel);
    sel.appendChild(h('option', { value: '', text: '全部' }));
    values.forEach(function (v) { sel.appendChild(h('option', { value: v, text: v, selected: v === cur })); });
  });
}

function matches(d) {
  for (let i = 0; i < FILTERS.length; i++) {
    const v = $('#f-' + FILTERS[i]).value;
    if (v && d[FILTERS[i]] !== v) return false;
  }
  const st = $('#f-status').value;
  if (st && effective(d) !== st) return false;
  const t = $('#f-text').value.trim().toLowerCase();
  if (t && (d.name + ' ' + d.device_code).toLowerCase().indexOf(t) < 0) return false;
  return true;
}

function actionButtons(d, s) {
  const box = h('div', { class: 'actions' });
  const add = function (kind, label) {
    box.appendChild(h('button', {
      type: 'button', class: 'small', text: label, 'aria-label': label + ' ' + d.name,
      dataset: { action: kind },
      on: { click: function () { openAction(kind, d.device_code, s ? s.id : null, refreshSoon); } },
    }));
  };
  if (d.status === 'lock' || d.status === 'maintain') add('unlock', '解锁'); else add('lock', '锁定');
  if (s) add('end', '结束会话');
  add('message', '发消息');
  add('restart', '重启');
  if (d.status !== 'maintain') add('maintain', '维护');
  return box;
}

function tileFor(d) {
  let t = tiles.get(d.device_code);
  if (!t) {
    t = {
      badge: h('span', { class: 'badge' }),
      user: h('div'), played: h('div'), cost: h('div'), left: h('div'),
      actions: h('div'),
    };
    const link = h('a', { href: '/console/device.html?code=' + encodeURIComponent(d.device_code), text: d.name });
    t.el = h('article', { class: 'tile', dataset: { code: d.device_code }, 'aria-label': d.name },
      h('div', { class: 'row spread' }, h('span', { class: 'name' }, link), t.badge),
      h('div', { class: 'meta', text: d.device_code }),
      h('div', { class: 'meta', text: [d.province, d.city, d.area, d.location].filter(Boolean).join(' ') || '—' }),
      t.user, t.played, t.cost, t.left, t.actions);
    tiles.set(d.device_code, t);
  }
  return t;
}

function render() {
  const counts = { free: 0, busy: 0, lock: 0, maintain: 0, offline: 0 };
  const now = Date.now() + skew;
  const grid = $('#tiles');
  const shown = [];
  Array.from(devices.values()).sort(function (a, b) { return a.device_code < b.device_code ? -1 : 1; }).forEach(function (d) {
    const st = effective(d);
    counts[st] = (counts[st] || 0) + 1;
    if (!matches(d)) return;
    const t = tileFor(d);
    const s = sessions.get(d.device_code);
    t.el.className = 'tile st-' + st;
    t.el.dataset.status = st;
    t.badge.className = 'badge st-' + st;
    t.badge.textContent = STATUS_NAMES[st] || st;
    t.user.textContent = s ? '用户：' + s.nick : '';
    t.played.textContent = s ? '已用时：' + dur(now - s.started_at) : '';
    t.cost.textContent = s ? '费用：' + fen(s.cost) : '';
    t.left.textContent = s ? '剩余：' + (s.ends_at === null ? '不限（后付费）' : dur(s.ends_at - now)) + (s.low ? '（余额不足）' : '') : '';
    const key = d.status + '|' + (s ? s.id : '');
    if (t.key !== key) {
      clear(t.actions).appendChild(actionButtons(d, s));
      t.key = key;
    }
    shown.push(t.el);
  });
  // Keep the grid's children in order without rebuilding the tiles.
  shown.forEach(function (el, i) { if (grid.children[i] !== el) grid.insertBefore(el, grid.children[i] || null); });
  while (grid.children.length > shown.length) grid.removeChild(grid.lastChild);
  const c = clear($('#counts'));
  ['free', 'busy', 'lock', 'maintain', 'offline'].forEach(function (k) {
    c.appendChild(h('div', { class: 'count st-' + k, id: 'count-' + k }, STATUS_NAMES[k], h('b', { text: counts[k] })));
  });
  c.appendChild(h('div', { class: 'count', id: 'count-all' }, '合计', h('b', { text: devices.size })));
}

async function main() {
  await initPage('index');
  document.querySelectorAll('#filters select, #filters input').forEach(function (el) {
    el.addEventListener('input', function () { dirty = true; });
  });
  await load();
  render();
  connect();
  setInterval(function () { render(); dirty = false; }, 1000);
  setInterval(function () { load().catch(showError); }, 15000);
}

main().catch(showError);
