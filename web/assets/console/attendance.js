// Attendance: terminals (last seen, pending and failed commands, quarantine), punches
// search and the staff roster, on the existing /ops/terminals, /ops/punches, /ops/staff.
import { api, h, clear, $, initPage, showError, table } from './common.js';

async function quarantine(sn) {
  const r = await api('/ops/terminals/' + encodeURIComponent(sn) + '/quarantine');
  clear($('#quarantine')).appendChild(table([
    { title: '序列号', get: function (q) { return q.sn; } },
    { title: '来源', get: function (q) { return q.source; } },
    { title: '原因', get: function (q) { return q.reason; } },
    { title: '原始内容', get: function (q) { return q.raw; } },
  ], r.data, sn + ' 没有隔离记录'));
}

async function terminals() {
  const r = await api('/ops/terminals');
  clear($('#terminals')).appendChild(table([
    { title: '序列号', get: function (t) { return t.sn; } },
    { title: '名称', get: function (t) { return t.name || '—'; } },
    { title: '最后通信', get: function (t) { return (t.last_seen || '从未') + (t.last_seen_via ? '（' + t.last_seen_via + '）' : ''); } },
    { title: '状况', get: function (t) { return t.silent ? h('span', { class: 'error', text: '失联' }) : '正常'; } },
    { title: '打卡数', num: true, get: function (t) { return String(t.punches); } },
    { title: '待执行命令', num: true, get: function (t) { return String(t.open_commands); } },
    { title: '失败命令', num: true, get: function (t) { return t.failed_commands ? h('span', { class: 'error', text: String(t.failed_commands) }) : '0'; } },
    { title: '隔离', num: true, get: function (t) {
      return h('button', { type: 'button', class: 'small', text: String(t.quarantined), 'aria-label': '查看 ' + t.sn + ' 的隔离记录',
        on: { click: function () { quarantine(t.sn).catch(showError); } } });
    } },
  ], r.data, '没有考勤机'));
}

async function punches() {
  const p = new URLSearchParams();
  ['sn', 'pin', 'from', 'to'].forEach(function (k) { const v = $('#p-' + k).value.trim(); if (v) p.set(k, v); });
  p.set('size', '100');
  const r = await api('/ops/punches?' + p.toString());
  clear($('#punches')).appendChild(table([
    { title: '时间（考勤机时钟）', get: function (x) { return x.time; } },
    { title: '序列号', get: function (x) { return x.sn; } },
    { title: '工号', get: function (x) { return x.pin; } },
    { title: '状态', num: true, get: function (x) { return String(x.status); } },
    { title: '验证方式', num: true, get: function (x) { return String(x.verify); } },
    { title: '来源', get: function (x) { return x.source; } },
    { title: '接收时间', get: function (x) { return x.received_at; } },
  ], r.data, '没有打卡记录'));
}

async function staff() {
  const r = await api('/ops/staff');
  clear($('#staff')).appendChild(table([
    { title: '工号', get: function (s) { return s.pin; } },
    { title: '姓名', get: function (s) { return s.name; } },
    { title: '权限', num: true, get: function (s) { return String(s.pri); } },
    { title: '卡号', get: function (s) { return s.card || '—'; } },
    { title: '考勤机', get: function (s) { return s.terminals && s.terminals.length ? s.terminals.join(', ') : '全部'; } },
  ], r.data, '没有员工'));
}

async function main() {
  await initPage('attendance');
  $('#punch-form').addEventListener('submit', function (ev) { ev.preventDefault(); punches().catch(showError); });
  await Promise.all([terminals(), punches(), staff()]);
}
main().catch(showError);
