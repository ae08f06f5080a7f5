// Users: search, balance, ledger, sessions; adjust the balance (reason required, one
// Idempotency-Key per dialog so a retried click cannot credit twice); disable/enable.
// Pricing of a user (docs/pricing.md): the member group (set with PUT
// /ops/users/<id>/group) and the packages held with time left (granted with POST
// /ops/users/<id>/packages). Every change on this page (balance, state, group,
// packages) is for admins of every site (authz rule); everyone else sees the user
// without the buttons.
import { api, h, clear, $, fen, time, dur, initPage, showError, showOk, table, formDialog, yuanToFen, randomKey, END_REASONS } from './common.js';

const STATES = { 0: '正常', 1: '已停用', 2: '已删除' };
const KINDS = { recharge: '充值', debit: '消费', refund: '退款', adjust: '调整' };
const SOURCES = { balance: '余额购买', wechat: '微信支付', operator: '赠送' };
const REASON_OPT = { name: 'reason', label: '原因（记入审计日志，可选）', maxlength: 200 };

// May this operator change users (an admin without a site limit)?
let manage = false;

function groupLabel(g) {
  return g.name + (g.discount_pct ? '（减免 ' + g.discount_pct + '%）' : '');
}
function groupText(groups, id) {
  if (id === null || id === undefined) return '无';
  const g = groups.find(function (x) { return x.id === id; });
  return g ? groupLabel(g) : '#' + id;
}
/** Package time: whole minutes, and the odd seconds when there are any. */
function timeLeft(sec) {
  const m = Math.floor(sec / 60), s = sec % 60;
  return m + ' 分钟' + (s ? ' ' + s + ' 秒' : '');
}
function packageLabel(d) {
  return d.name + '（' + d.minutes + ' 分钟，' + d.valid_days + ' 天内有效，售价 ' + fen(d.price) + '）';
}

async function search(q) {
  const r = await api('/ops/users?q=' + encodeURIComponent(q));
  clear($('#results')).appendChild(h('div', { class: 'panel' }, table([
    { title: 'ID', get: function (u) { return String(u.id); } },
    { title: '昵称', get: function (u) { return h('a', { href: '?id=' + u.id, text: u.nick_name || '（无昵称）', dataset: { user: u.id } }); } },
    { title: '手机号', get: function (u) { return u.mobile || '—'; } },
    { title: 'openid', get: function (u) { return u.openid; } },
    { title: '余额', num: true, get: function (u) { return fen(u.balance_account); } },
    { title: '状态', get: function (u) { return STATES[u.state] || String(u.state); } },
  ], r.data, '没有找到用户')));
}

async function show(id) {
  const both = await Promise.all([
    api('/ops/users/' + id), api('/ops/users/' + id + '/ledger'), api('/ops/users/' + id + '/sessions'),
    api('/ops/users/' + id + '/packages'), api('/ops/pricing/groups'), api('/ops/pricing/packages'),
    api('/ops/pricing/zones'),
  ]);
  const u = both[0];
  const groups = both[4].data || [];
  const defs = both[5].data || [];
  const zones = both[6].data || [];
  $('#detail').hidden = false;
  const kv = h('dl', { class: 'kv' });
  const add = function (k, v, id2) { kv.appendChild(h('dt', { text: k })); kv.appendChild(h('dd', { id: id2 }, v)); };
  add('ID', String(u.id));
  add('昵称', u.nick_name || '—');
  add('手机号', u.mobile || '—');
  add('openid', u.openid);
  add('余额', fen(u.balance_account), 'user-balance');
  add('累计充值 / 消费', fen(u.total_account) + ' / ' + fen(u.used_account));
  add('状态', STATES[u.state] || String(u.state), 'user-state');
  add('会员组', groupText(groups, u.group_id), 'user-group');
  add('注册时间', u.ctime);
  clear($('#user-info')).appendChild(kv);
  const acts = clear($('#user-actions'));
  // Balance, state, group and packages are changed by admins of every site only (the
  // server refuses anyone else): others see the user read-only, without buttons that fail.
  if (manage) {
    acts.appendChild(h('button', { type: 'button', class: 'primary', text: '调整余额', on: { click: function () { adjust(u); } } }));
    if (u.state === 0) acts.appendChild(h('button', { type: 'button', class: 'danger', text: '停用', on: { click: function () { setState(u, 1); } } }));
    else acts.appendChild(h('button', { type: 'button', text: '启用', on: { click: function () { setState(u, 0); } } }));
    acts.appendChild(h('button', { type: 'button', text: '设置会员组', on: { click: function () { setGroup(u, groups); } } }));
  }
  showPackages(u, both[3].data || [], defs, zones);
  clear($('#ledger')).appendChild(table([
    { title: '时间', get: function (l) { return l.time; } },
    { title: '类型', get: function (l) { return KINDS[l.kind] || l.kind; } },
    { title: '金额', num: true, get: function (l) { return fen(l.amount); } },
    { title: '会话', get: function (l) { return l.session_id ? '#' + l.session_id : ''; } },
    { title: '原因', get: function (l) { return l.reason || ''; } },
    { title: '流水号', get: function (l) { return l.id; } },
  ], both[1].data.slice(0, 200), '没有账目'));
  clear($('#user-sessions')).appendChild(table([
    { title: '#', get: function (s) { return String(s.id); } },
    { title: '机位', get: function (s) { return h('a', { href: '/console/device.html?code=' + encodeURIComponent(s.device_code), text: s.device_name + '（' + s.device_code + '）' }); } },
    { title: '开始', get: function (s) { return time(s.started_at); } },
    { title: '时长', get: function (s) { return dur((s.ended_at || Date.now()) - s.started_at); } },
    { title: '费用', num: true, get: function (s) { return fen(s.cost_money); } },
    { title: '结束原因', get: function (s) { return s.ended_at ? (END_REASONS[s.end_reason] || s.end_reason) : '进行中'; } },
  ], both[2].data, '没有会话'));
}

function showPackages(u, held, defs, zones) {
  const def = function (id) { return defs.find(function (d) { return d.id === id; }); };
  const zoneName = function (id) {
    const z = zones.find(function (x) { return x.id === id; });
    return z ? z.name : '#' + id;
  };
  const acts = clear($('#package-actions'));
  if (manage) acts.appendChild(h('button', { type: 'button', class: 'primary', text: '赠送套餐', on: { click: function () { grant(u, defs); } } }));
  clear($('#user-packages')).appendChild(table([
    { title: '套餐', get: function (p) { return p.name; } },
    { title: '剩余', num: true, get: function (p) { return h('span', { dataset: { seconds: String(p.seconds_left) }, text: timeLeft(p.seconds_left) }); } },
    { title: '生效时间', get: function (p) { return time(p.valid_from); } },
    { title: '到期时间', get: function (p) { return time(p.expires_at); } },
    { title: '可用区域', get: function (p) { const d = def(p.package_id); return d ? (d.zones.length ? d.zones.map(zoneName).join('、') : '全部') : '—'; } },
    { title: '可用时段', get: function (p) { const d = def(p.package_id); return d ? (d.windows.length ? d.windows.join('、') : '全天') : '—'; } },
    { title: '来源', get: function (p) { return SOURCES[p.source] || p.source; } },
  ], held, '没有可用的套餐（用完或过期的不显示）'));
}

function setGroup(u, groups) {
  formDialog({
    title: '设置会员组：' + (u.nick_name || ('#' + u.id)),
    intro: '当前：' + groupText(groups, u.group_id) + '。之后开始的会话按新的会员组计价，进行中的会话不变。',
    ok: '保存',
    fields: [
      { name: 'group', label: '会员组', type: 'select',
        options: [['', '无（不属于任何会员组）']].concat(groups.map(function (g) { return [String(g.id), groupLabel(g)]; })),
        value: u.group_id === null || u.group_id === undefined ? '' : String(u.group_id) },
      REASON_OPT,
    ],
    onClose: function () { show(u.id).catch(showError); },
    submit: async function (v) {
      const gid = v.group === '' ? null : parseInt(v.group, 10);
      const body = { group_id: gid };
      if (v.reason.trim()) body.reason = v.reason.trim();
      await api('/ops/users/' + u.id + '/group', { method: 'PUT', json: body });
      return gid === null ? '已设为不属于任何会员组' : '已设为 ' + groupText(groups, gid);
    },
  });
}

function grant(u, defs) {
  // Only a package on sale can be granted (the API refuses a withdrawn one).
  const sale = defs.filter(function (d) { return d.on_sale; });
  formDialog({
    title: '赠送套餐：' + (u.nick_name || ('#' + u.id)),
    intro: sale.length ? '赠送不收费：套餐从现在起生效，时长记入该用户的套餐，原因记入审计日志。'
      : '没有在售的套餐：请先在价格页上架套餐。',
    ok: '确认赠送',
    fields: [
      { name: 'package', label: '套餐', type: 'select', options: sale.map(function (d) { return [String(d.id), packageLabel(d)]; }) },
      { name: 'reason', label: '原因（必填）', required: true, maxlength: 200 },
    ],
    onClose: function () { show(u.id).catch(showError); },
    submit: async function (v) {
      const d = sale.find(function (x) { return String(x.id) === v.package; });
      if (!d) throw new Error('没有可赠送的套餐');
      await api('/ops/users/' + u.id + '/packages', { method: 'POST', json: { package_id: d.id, reason: v.reason.trim() } });
      return '已赠送 ' + d.name + '（' + d.minutes + ' 分钟）';
    },
  });
}

function adjust(u) {
  const key = randomKey(); // one per dialog: a retry of the same adjustment is a replay
  formDialog({
    title: '调整余额：' + (u.nick_name || ('#' + u.id)),
    intro: '当前余额 ' + fen(u.balance_account) + '。每次调整都记入账目和审计日志。',
    ok: '确认调整',
    fields: [
      { name: 'dir', label: '方向', type: 'select', options: [['add', '增加'], ['sub', '扣减']] },
      { name: 'amount', label: '金额（元，最多两位小数）', required: true, inputmode: 'decimal' },
      { name: 'reason', label: '原因（必填）', required: true, maxlength: 200 },
    ],
    onClose: function () { show(u.id).catch(showError); },
    submit: async function (v) {
      const f = yuanToFen(v.amount);
      if (!f) throw new Error('金额格式不对：例如 10 或 12.50');
      const amount = v.dir === 'sub' ? -f : f;
      const r = await api('/ops/users/' + u.id + '/adjust', {
        method: 'POST', headers: { 'Idempotency-Key': key }, json: { amount: amount, reason: v.reason.trim() },
      });
      return '已调整 ' + fen(amount) + '，余额 ' + fen(r.balance_account) + (r.replayed ? '（重复提交，未再次调整）' : '');
    },
  });
}

function setState(u, state) {
  formDialog({
    title: (state === 1 ? '停用' : '启用') + '用户：' + (u.nick_name || ('#' + u.id)),
    intro: state === 1 ? '停用后该用户不能登录和开始会话。' : null,
    ok: state === 1 ? '停用' : '启用',
    danger: state === 1,
    fields: [{ name: 'reason', label: '原因（必填）', required: true }],
    onClose: function () { show(u.id).catch(showError); },
    submit: async function (v) {
      await api('/ops/users/' + u.id + '/state', { method: 'POST', json: { state: state, reason: v.reason.trim() } });
      return state === 1 ? '已停用' : '已启用';
    },
  });
}

async function main() {
  const me = await initPage('users');
  manage = me.role === 'admin' && !(me.sites && me.sites.length);
  const p = new URLSearchParams(location.search);
  $('#search').addEventListener('submit', function (ev) {
    ev.preventDefault();
    const q = $('#q').value.trim();
    if (q) search(q).catch(showError);
  });
  if (p.get('q')) { $('#q').value = p.get('q'); await search(p.get('q')); }
  if (p.get('id')) await show(p.get('id'));
  showOk('');
}
main().catch(showError);
