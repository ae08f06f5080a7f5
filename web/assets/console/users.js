// Users: search, balance, ledger, sessions; adjust the balance (reason required, one
// Idempotency-Key per dialog so a retried click cannot credit twice); disable/enable.
import { api, h, clear, $, fen, time, dur, initPage, showError, showOk, table, formDialog, yuanToFen, randomKey, END_REASONS } from './common.js';

const STATES = { 0: '正常', 1: '已停用', 2: '已删除' };
const KINDS = { recharge: '充值', debit: '消费', refund: '退款', adjust: '调整' };

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
  ]);
  const u = both[0];
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
  add('注册时间', u.ctime);
  clear($('#user-info')).appendChild(kv);
  const acts = clear($('#user-actions'));
  acts.appendChild(h('button', { type: 'button', class: 'primary', text: '调整余额', on: { click: function () { adjust(u); } } }));
  if (u.state === 0) acts.appendChild(h('button', { type: 'button', class: 'danger', text: '停用', on: { click: function () { setState(u, 1); } } }));
  else acts.appendChild(h('button', { type: 'button', text: '启用', on: { click: function () { setState(u, 0); } } }));
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
  await initPage('users');
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
