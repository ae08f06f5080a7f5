// One device: its state, actions, pending commands and session history.
import { api, h, clear, $, fen, time, dur, initPage, showError, table, STATUS_NAMES, END_REASONS } from './common.js';
import { ACTIONS, openAction } from './actions.js';

const code = new URLSearchParams(location.search).get('code') || '';
const CMD_NAMES = { lock: '锁定', unlock: '解锁', restart: '重启', message: '消息', update_games: '更新游戏' };

async function load() {
  const d = await api('/ops/devices/' + encodeURIComponent(code));
  const dev = d.device;
  const st = dev.online ? dev.status : 'offline';
  $('#title').textContent = '机位 ' + dev.name;
  document.title = dev.name + ' · kioskd 控制台';
  const kv = h('dl', { class: 'kv' });
  const add = function (k, v) { kv.appendChild(h('dt', { text: k })); kv.appendChild(h('dd', {}, v)); };
  add('编号', dev.device_code);
  add('状态', h('span', { class: 'badge st-' + st, id: 'device-status', text: STATUS_NAMES[st] || st }));
  add('在线', dev.online ? '在线' : '离线');
  add('最后心跳', time(dev.last_seen));
  add('位置', [dev.province, dev.city, dev.area, dev.location].filter(Boolean).join(' ') || '—');
  add('价格', fen(dev.charge_mode) + ' / 计费单位（' + (dev.billing_mode === 'postpaid' ? '后付费' : '预付费') + '）');
  add('当前价格', h('span', { id: 'price-now', text: fen(dev.price_now) + ' / 计费单位（' + (dev.plan || '统一价') + '）' }));
  add('当前会话', d.session_id ? '#' + d.session_id : '无');
  add('待确认命令', String(d.pending_commands));
  clear($('#info')).appendChild(kv);
  const acts = clear($('#actions'));
  Object.keys(ACTIONS).forEach(function (k) {
    if (k === 'end' && !d.session_id) return;
    acts.appendChild(h('button', {
      type: 'button', class: ACTIONS[k].danger ? 'danger' : null, text: ACTIONS[k].label, dataset: { action: k },
      on: { click: function () { openAction(k, dev.device_code, d.session_id, function () { load().catch(showError); }); } },
    }));
  });
  clear($('#commands')).appendChild(table([
    { title: '#', get: function (c) { return String(c.id); } },
    { title: '命令', get: function (c) { return CMD_NAMES[c.name] || c.name; } },
    { title: '内容', get: function (c) { return c.text || ''; } },
    { title: '下发时间', get: function (c) { return time(c.created_at); } },
    { title: '确认', get: function (c) { return c.acked_at ? '已确认 ' + time(c.acked_at) : '待确认'; } },
  ], d.commands, '没有命令'));
  clear($('#sessions')).appendChild(table([
    { title: '#', get: function (s) { return String(s.id); } },
    { title: '用户', get: function (s) { return h('a', { href: '/console/users.html?id=' + s.user_id, text: s.nick_name || s.mobile || ('#' + s.user_id) }); } },
    { title: '开始', get: function (s) { return time(s.started_at); } },
    { title: '结束', get: function (s) { return s.ended_at ? time(s.ended_at) : '进行中'; } },
    { title: '时长', get: function (s) { return dur((s.ended_at || Date.now()) - s.started_at); } },
    { title: '费用', num: true, get: function (s) { return fen(s.cost_money); } },
    { title: '结束原因', get: function (s) { return s.end_reason ? (END_REASONS[s.end_reason] || s.end_reason) : ''; } },
  ], d.sessions, '还没有会话'));
}

async function main() {
  await initPage('index');
  if (!code) { showError(new Error('缺少机位编号')); return; }
  await load();
  setInterval(function () { load().catch(showError); }, 10000);
}
main().catch(showError);
