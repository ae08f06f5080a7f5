// Running sessions and on-call alerts (GET /ops/alerts), refreshed every 5 s and at
// once when /ws/ops reports a session starting or ending.
import { api, h, clear, $, fen, time, dur, initPage, showError, table } from './common.js';
import { openAction } from './actions.js';

async function load() {
  const a = await api('/ops/alerts');
  const box = clear($('#alerts'));
  if (!a.alerts.length) box.appendChild(h('p', { class: 'okmsg', id: 'no-alerts', text: '一切正常，没有告警' }));
  a.alerts.forEach(function (x) {
    box.appendChild(h('div', { class: 'alert ' + x.severity, dataset: { kind: x.kind } },
      h('strong', { text: x.severity === 'critical' ? '严重 ' : '注意 ' }),
      x.message,
      x.since ? h('span', { class: 'muted', text: '（自 ' + time(x.since) + '）' }) : null,
      x.detail ? h('div', { text: '最近错误：' + x.detail }) : null,
      x.kind === 'device_offline' ? h('div', {}, h('a', { href: '/console/device.html?code=' + encodeURIComponent(x.target), text: '查看机位' })) : null));
  });
  const now = a.server_time;
  clear($('#live')).appendChild(table([
    { title: '#', get: function (s) { return String(s.id); } },
    { title: '机位', get: function (s) { return h('a', { href: '/console/device.html?code=' + encodeURIComponent(s.device_code), text: s.device_name + '（' + s.location + '）' }); } },
    { title: '用户', get: function (s) { return h('a', { href: '/console/users.html?id=' + s.user_id, text: s.nick_name || s.mobile || ('#' + s.user_id) }); } },
    { title: '已用时', get: function (s) { return dur(now - s.started_at); } },
    { title: '费用', num: true, get: function (s) { return fen(s.cost_money); } },
    { title: '余额', num: true, get: function (s) { return fen(s.balance_account); } },
    { title: '剩余', get: function (s) { return s.time_left_ms === null ? '不限' : dur(s.time_left_ms); } },
    { title: '已付至', get: function (s) { return time(s.paid_until); } },
    { title: '心跳期限', get: function (s) { return time(s.heartbeat_deadline); } },
    { title: '状况', get: function (s) {
      const w = [];
      if (s.overdue_paid) w.push('超过已付时间');
      if (s.overdue_heartbeat) w.push('超过心跳期限');
      return w.length ? h('span', { class: 'error', text: w.join('，') }) : '正常';
    } },
    { title: '操作', get: function (s) {
      return h('button', { type: 'button', class: 'small danger', text: '结束', 'aria-label': '结束会话 ' + s.id,
        on: { click: function () { openAction('end', s.device_code, s.id, function () { load().catch(showError); }); } } });
    } },
  ], a.sessions, '没有进行中的会话'));
  $('#updated').textContent = '更新于 ' + time(Date.now());
}

function live() {
  const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws/ops');
  let t = null;
  ws.addEventListener('message', function (m) {
    let ev;
    try { ev = JSON.parse(m.data); } catch (e) { return; }
    if (ev.type === 'session_started' || ev.type === 'session_ended') {
      clearTimeout(t);
      t = setTimeout(function () { load().catch(showError); }, 300);
    }
  });
  ws.addEventListener('close', function () { setTimeout(live, 5000 + Math.random() * 5000); });
}

async function main() {
  await initPage('sessions');
  await load();
  live();
  setInterval(function () { load().catch(showError); }, 5000);
}
main().catch(showError);
