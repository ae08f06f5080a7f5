// Shared helpers of the operator console: the API wrapper (cookie session; a 401 sends
// the operator to the sign-in page), safe DOM building (text only through textContent),
// money and time formatting, the page header and the reason dialog.
// ES2017 syntax, no optional chaining.

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

const ROLE_NAMES = { admin: '管理员', staff: '店员', viewer: '只读' };
export function roleName(r) { return ROLE_NAMES[r] || r; }

export function loginUrl() {
  const next = location.pathname + location.search;
  return '/console/login.html?next=' + encodeURIComponent(next);
}

/** fetch + JSON. Throws ApiError with a Chinese message fit for the page. */
export async function api(path, opts) {
  const o = Object.assign({ method: 'GET', headers: {}, credentials: 'same-origin' }, opts || {});
  if (o.json !== undefined) {
    o.headers = Object.assign({ 'content-type': 'application/json' }, o.headers);
    o.body = JSON.stringify(o.json);
    delete o.json;
  }
  let r;
  try {
    r = await fetch(path, o);
  } catch (e) {
    throw new ApiError(0, '网络错误，无法连接服务器');
  }
  let body = null;
  const text = await r.text();
  if (text) {
    try { body = JSON.parse(text); } catch (e) { body = null; }
  }
  if (r.status === 401 && !(opts && opts.noRedirect)) {
    location.href = loginUrl();
    throw new ApiError(401, '请先登录', body);
  }
  if (!r.ok) {
    const detail = body && body.error ? body.error : ('HTTP ' + r.status);
    let msg = detail;
    if (r.status === 403) msg = '权限不足：' + detail;
    else if (r.status === 429) msg = '操作太频繁，请稍后再试（' + detail + '）';
    else if (r.status >= 500) msg = '服务暂时不可用（' + detail + '）';
    throw new ApiError(r.status, msg, body);
  }
  return body;
}

/** Builds an element. attrs: class, text, and other attributes/properties; children: nodes or strings (as text). */
export function h(tag, attrs) {
  const el = document.createElement(tag);
  const a = attrs || {};
  Object.keys(a).forEach(function (k) {
    const v = a[k];
    if (v === undefined || v === null || v === false) return;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = String(v);
    else if (k === 'on') Object.keys(v).forEach(function (ev) { el.addEventListener(ev, v[ev]); });
    else if (k === 'dataset') Object.keys(v).forEach(function (d) { el.dataset[d] = v[d]; });
    else if (k === 'value' || k === 'checked' || k === 'selected' || k === 'disabled' || k === 'hidden') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  });
  for (let i = 2; i < arguments.length; i++) append(el, arguments[i]);
  return el;
}

function append(el, c) {
  if (c === undefined || c === null || c === false) return;
  if (Array.isArray(c)) { c.forEach(function (x) { append(el, x); }); return; }
  el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
}

export function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }
export function $(sel) { return document.querySelector(sel); }

/** Integer fen as ¥x.yy (no floating point). */
export function fen(n) {
  if (n === null || n === undefined) return '—';
  const neg = n < 0;
  const a = Math.abs(n);
  const cents = String(a % 100);
  return (neg ? '-' : '') + '¥' + Math.floor(a / 100) + '.' + (cents.length < 2 ? '0' + cents : cents);
}

/** "12.5" yuan → 1250 fen; null when not a plain amount with at most 2 decimals. */
export function yuanToFen(s) {
  const m = /^\s*(\d{1,7})(?:\.(\d{1,2}))?\s*$/.exec(String(s));
  if (!m) return null;
  const dec = (m[2] || '').length === 1 ? m[2] + '0' : (m[2] || '00');
  return parseInt(m[1], 10) * 100 + parseInt(dec, 10);
}

function pad(n) { return n < 10 ? '0' + n : String(n); }

// Times show in the server's wire time zone (the one its own time strings use), once
// known (GET /ops/alerts names it); until then in the browser's.
let zoneFmt = null;
export function noteZone(tz) {
  if (!tz) return;
  try {
    zoneFmt = new Intl.DateTimeFormat('sv-SE', {
      timeZone: tz, year: 'numeric', month: '2-digit', day: '2-digit',
      hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false,
    });
    localStorage.setItem('kioskd.tz', tz);
  } catch (e) { zoneFmt = null; }
}
try { noteZone(localStorage.getItem('kioskd.tz')); } catch (e) { /* no storage */ }

/** Unix ms (or a wire string) → "YYYY-MM-DD HH:MM:SS" in the wire time zone. */
export function time(ms) {
  if (ms === null || ms === undefined || ms === '') return '—';
  if (typeof ms === 'string') return ms;
  if (zoneFmt) return zoneFmt.format(new Date(ms));
  const d = new Date(ms);
  return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' +
    pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
}

/** ms → "1小时02分" / "3分05秒". */
export function dur(ms) {
  if (ms === null || ms === undefined) return '—';
  const s = Math.max(0, Math.floor(ms / 1000));
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  if (hh > 0) return hh + '小时' + pad(mm) + '分';
  return mm + '分' + pad(ss) + '秒';
}

export function today() {
  const d = new Date();
  return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate());
}

/** A random key for Idempotency-Key headers (works on plain http too). */
export function randomKey() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return 'c-' + Array.prototype.map.call(b, function (x) { return (x < 16 ? '0' : '') + x.toString(16); }).join('');
}

export const STATUS_NAMES = { free: '空闲', busy: '使用中', lock: '锁定', maintain: '维护', offline: '离线' };
export const END_REASONS = {
  user_logout: '下机', phone_offline: '手机结束', balance_exhausted: '余额不足', heartbeat_timeout: '心跳超时',
  operator: '管理员结束', maintenance: '维护',
};

const PAGES = [
  ['index', '/console/', '机位'],
  ['sessions', '/console/sessions.html', '会话与告警'],
  ['users', '/console/users.html', '用户'],
  ['reports', '/console/reports.html', '报表'],
  ['attendance', '/console/attendance.html', '考勤'],
  ['audit', '/console/audit.html', '审计日志'],
  ['pricing', '/console/pricing.html', '价格'],
  ['operators', '/console/operators.html', '账号'],
];

let me = null;
/** The signed-in operator ({username, role, sites, via}). */
export function operator() { return me; }
export function can(action) {
  if (!me) return false;
  if (me.role === 'admin') return true;
  if (action === 'act') return me.role === 'staff';
  return false;
}

/** Builds the header, loads the operator (redirects to sign-in on 401). */
export async function initPage(active) {
  const header = h('header', { class: 'top' });
  const nav = h('nav', { 'aria-label': '主导航' });
  PAGES.forEach(function (p) {
    nav.appendChild(h('a', { href: p[1], 'aria-current': p[0] === active ? 'page' : null, text: p[2] }));
  });
  const meBox = h('div', { class: 'me' });
  header.appendChild(h('a', { class: 'brand', href: '/console/', text: 'kioskd 控制台' }));
  header.appendChild(nav);
  header.appendChild(meBox);
  document.body.insertBefore(header, document.body.firstChild);
  me = await api('/ops/me');
  if (!zoneFmt) {
    try { noteZone((await api('/ops/alerts')).time_zone); } catch (e) { /* shown in the browser's zone */ }
  }
  meBox.appendChild(h('span', { id: 'me-name', text: me.username + '（' + roleName(me.role) + '）' }));
  const out = h('button', { type: 'button', class: 'small', text: '退出登录' });
  out.addEventListener('click', async function () {
    try { await api('/ops/logout', { method: 'POST', noRedirect: true }); } catch (e) { /* signed out anyway */ }
    location.href = '/console/login.html';
  });
  meBox.appendChild(out);
  return me;
}

/**
 * A modal form. fields: [{name, label, type: 'text'|'textarea'|'select'|'number', options, required, value}].
 * submit(values, setStatus) runs on OK; it may return a string shown as the result (the
 * dialog then stays open with a Close button) or throw (the error is shown).
 */
export function formDialog(opts) {
  const dlg = h('dialog', { 'aria-labelledby': 'dlg-title' });
  const form = h('form', { method: 'dialog', novalidate: true });
  form.appendChild(h('h2', { id: 'dlg-title', text: opts.title }));
  if (opts.intro) form.appendChild(h('p', { class: 'muted', text: opts.intro }));
  const inputs = {};
  (opts.fields || []).forEach(function (f) {
    let input;
    if (f.type === 'textarea') input = h('textarea', { name: f.name, required: f.required, maxlength: f.maxlength || 500 });
    else if (f.type === 'select') {
      input = h('select', { name: f.name });
      f.options.forEach(function (o) { input.appendChild(h('option', { value: o[0], text: o[1] })); });
    } else input = h('input', { name: f.name, type: f.type || 'text', required: f.required, maxlength: f.maxlength || 200, autocomplete: 'off', inputmode: f.inputmode });
    if (f.value !== undefined) input.value = f.value;
    inputs[f.name] = input;
    form.appendChild(h('label', {}, f.label, input));
  });
  const status = h('div', { class: 'status-line', role: 'status', 'aria-live': 'polite' });
  form.appendChild(status);
  const ok = h('button', { type: 'submit', class: opts.danger ? 'danger' : 'primary', text: opts.ok || '确定' });
  const cancel = h('button', { type: 'button', text: '取消' });
  form.appendChild(h('div', { class: 'buttons' }, cancel, ok));
  dlg.appendChild(form);
  document.body.appendChild(dlg);
  function setStatus(text, cls) { status.textContent = text; status.className = 'status-line ' + (cls || ''); }
  function close() { dlg.close(); dlg.remove(); if (opts.onClose) opts.onClose(); }
  cancel.addEventListener('click', close);
  dlg.addEventListener('cancel', function () { dlg.remove(); if (opts.onClose) opts.onClose(); });
  form.addEventListener('submit', async function (ev) {
    ev.preventDefault();
    const values = {};
    Object.keys(inputs).forEach(function (k) { values[k] = inputs[k].value; });
    for (let i = 0; i < (opts.fields || []).length; i++) {
      const f = opts.fields[i];
      if (f.required && !String(values[f.name]).trim()) {
        setStatus('请填写：' + f.label, 'error');
        inputs[f.name].focus();
        return;
      }
    }
    ok.disabled = true;
    setStatus('处理中…');
    try {
      const result = await opts.submit(values, setStatus);
      if (typeof result === 'string') {
        setStatus(result, 'okmsg');
        ok.hidden = true;
        cancel.textContent = '关闭';
      } else close();
    } catch (e) {
      setStatus(e.message || String(e), 'error');
      ok.disabled = false;
    }
  });
  dlg.showModal();
  const first = form.querySelector('input, textarea, select');
  if (first) first.focus();
  return { dialog: dlg, setStatus: setStatus, close: close };
}

/** Shows an error in the page's message area. */
export function showError(e) {
  const box = $('#page-msg');
  if (box) { box.textContent = e.message || String(e); box.className = 'error'; }
  else console.warn(e);
}
export function showOk(text) {
  const box = $('#page-msg');
  if (box) { box.textContent = text; box.className = 'okmsg'; }
}

/** A table from rows: cols [{title, get(row) → node|string, num}] */
export function table(cols, rows, empty) {
  const t = h('table');
  const tr = h('tr');
  cols.forEach(function (c) { tr.appendChild(h('th', { scope: 'col', class: c.num ? 'num' : null, text: c.title })); });
  t.appendChild(h('thead', {}, tr));
  const tb = h('tbody');
  if (!rows.length) {
    tb.appendChild(h('tr', {}, h('td', { colspan: cols.length, class: 'muted', text: empty || '暂无数据' })));
  }
  rows.forEach(function (r) {
    const row = h('tr');
    cols.forEach(function (c) {
      const v = c.get(r);
      row.appendChild(h('td', { class: c.num ? 'num' : null }, v === null || v === undefined ? '—' : v));
    });
    tb.appendChild(row);
  });
  t.appendChild(tb);
  return h('div', { class: 'scroll' }, t);
}
