// The audit log (GET /ops/audit), filterable by operator and target.
import { api, h, clear, $, time, initPage, showError, table } from './common.js';

async function load() {
  const p = new URLSearchParams();
  const op = $('#operator').value.trim();
  const tg = $('#target').value.trim();
  if (op) p.set('operator', op);
  if (tg) p.set('target', tg);
  p.set('limit', $('#limit').value);
  history.replaceState(null, '', '?' + p.toString());
  const r = await api('/ops/audit?' + p.toString());
  clear($('#log')).appendChild(table([
    { title: '时间', get: function (e) { return time(e.at); } },
    { title: '操作人', get: function (e) { return e.operator; } },
    { title: '操作', get: function (e) { return e.action; } },
    { title: '对象', get: function (e) { return e.target || ''; } },
    { title: '原因', get: function (e) { return e.reason || ''; } },
    { title: '结果', num: true, get: function (e) { return e.status < 400 ? String(e.status) : h('span', { class: 'error', text: String(e.status) }); } },
    { title: '内容', get: function (e) { return e.body ? h('code', { text: e.body.length > 160 ? e.body.slice(0, 160) + '…' : e.body }) : ''; } },
    { title: '来源', get: function (e) { return e.source || ''; } },
  ], r.data, '没有记录'));
}

async function main() {
  await initPage('audit');
  const p = new URLSearchParams(location.search);
  $('#operator').value = p.get('operator') || '';
  $('#target').value = p.get('target') || '';
  if (p.get('limit')) $('#limit').value = p.get('limit');
  $('#form').addEventListener('submit', function (ev) { ev.preventDefault(); load().catch(showError); });
  await load();
}
main().catch(showError);
