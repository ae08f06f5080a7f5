// Reports for a period (GET /ops/reports), by day, site or device, with CSV export, and
// the shift view (today so far).
import { api, h, clear, $, fen, initPage, showError, table } from './common.js';

function pct(u) { return u === null || u === undefined ? '—' : (Math.round(u * 1000) / 10) + '%'; }
function minutes(ms) { return String(Math.floor(ms / 60000)); }

function query() {
  return 'from=' + encodeURIComponent($('#from').value) + '&to=' + encodeURIComponent($('#to').value) + '&by=' + encodeURIComponent($('#by').value);
}

let shiftDay = null;

async function load() {
  const q = query();
  history.replaceState(null, '', '?' + q);
  $('#csv').href = '/ops/reports?' + q + '&format=csv';
  const r = await api('/ops/reports?' + q);
  // Empty dates mean today in the server's time zone.
  $('#from').value = r.from;
  $('#to').value = r.to;
  const q2 = query();
  history.replaceState(null, '', '?' + q2);
  $('#csv').href = '/ops/reports?' + q2 + '&format=csv';
  const serverToday = shiftDay || '';
  $('#period').textContent = (r.from === r.to ? r.from : r.from + ' 至 ' + r.to) + (r.from === serverToday && r.to === serverToday ? '（今日截至现在）' : '');
  const t = r.totals;
  const cards = clear($('#totals'));
  [['消费', fen(t.consumption), 'consumption'], ['充值', fen(t.recharges), 'recharges'], ['人工调整', fen(t.adjustments), 'adjustments'],
    ['会话数', String(t.sessions), 'sessions'], ['使用时长（分钟）', minutes(t.busy_ms), 'busy'], ['利用率', pct(t.utilisation), 'utilisation']].forEach(function (c) {
    cards.appendChild(h('div', { class: 'card', dataset: { total: c[2] } }, h('div', { class: 'label', text: c[0] }), h('div', { class: 'value', text: c[1] })));
  });
  const first = { day: '日期', site: '场地', device: '机位' }[r.by];
  const cols = [{ title: first, get: function (x) { return x.key || '（未填写）'; } }];
  if (r.by === 'device') cols.push({ title: '名称', get: function (x) { return x.name || ''; } });
  if (r.by !== 'day') cols.push({ title: '机位数', num: true, get: function (x) { return String(x.devices); } });
  cols.push(
    { title: '会话数', num: true, get: function (x) { return String(x.sessions); } },
    { title: '使用（分钟）', num: true, get: function (x) { return minutes(x.busy_ms); } },
    { title: '可用（分钟）', num: true, get: function (x) { return minutes(x.available_ms); } },
    { title: '利用率', num: true, get: function (x) { return pct(x.utilisation); } },
    { title: '消费', num: true, get: function (x) { return fen(x.consumption); } });
  if (r.by === 'day') {
    cols.push({ title: '充值', num: true, get: function (x) { return fen(x.recharges); } },
      { title: '调整', num: true, get: function (x) { return fen(x.adjustments); } });
  }
  clear($('#table')).appendChild(table(cols, r.data.concat([Object.assign({}, t, { key: '合计', name: '', devices: '' })])));
}

async function main() {
  await initPage('reports');
  const p = new URLSearchParams(location.search);
  $('#from').value = p.get('from') || '';
  $('#to').value = p.get('to') || '';
  shiftDay = (await api('/ops/reports?by=site')).from;
  $('#by').value = p.get('by') || 'day';
  $('#form').addEventListener('submit', function (ev) { ev.preventDefault(); load().catch(showError); });
  $('#shift').addEventListener('click', function () {
    $('#from').value = ''; $('#to').value = ''; $('#by').value = 'site';
    load().catch(showError);
  });
  await load();
}
main().catch(showError);
