// Pricing (issue 16 item 5): rate plans with a week grid editor (7 days × 48 half hours,
// paint a rate by clicking or dragging a rectangle), date overrides, zones and device
// assignment, member groups, packages. On the ops API /ops/pricing/* (docs/pricing.md);
// reads for every operator, changes for admins (the audit log records each one, with the
// optional reason sent in the body). Money is integer fen: prices typed in 元 go through
// yuanToFen (string handling, no floats).
import { api, h, clear, $, fen, yuanToFen, initPage, showError, showOk, table, formDialog } from './common.js';

const DAYS = ['周一', '周二', '周三', '周四', '周五', '周六', '周日'];
const SLOTS = 48;
const PALETTE = 10; // .rc0 … .rc9 in console.css

let admin = false;
let plans = [];
let zones = [];
let devices = [];
// The plan being edited: its id, the saved grid and the one on screen.
let current = null;
let week = [];
let dirty = false;

function slotTime(i) {
  const m = i * 30;
  const hh = Math.floor(m / 60), mm = m % 60;
  return (hh < 10 ? '0' : '') + hh + ':' + (mm ? '30' : '00');
}

function planName(id) {
  if (id === null || id === undefined) return '—';
  const p = plans.find(function (x) { return x.id === id; });
  return p ? p.name : '#' + id;
}
function zoneName(id) {
  if (id === null || id === undefined) return '—';
  const z = zones.find(function (x) { return x.id === id; });
  return z ? z.name : '#' + id;
}
function planOptions() {
  return [['', '（无）']].concat(plans.map(function (p) { return [String(p.id), p.name]; }));
}
function zoneOptions() {
  return [['', '（无）']].concat(zones.map(function (z) { return [String(z.id), z.name]; }));
}
function idOrNull(v) { return v === '' || v === undefined ? null : parseInt(v, 10); }
function withReason(body, v) {
  if (v.reason && v.reason.trim()) body.reason = v.reason.trim();
  return body;
}
const REASON = { name: 'reason', label: '原因（记入审计日志，可选）', maxlength: 200 };

/** A non-negative integer typed by a person, or null. */
function intOf(s, max) {
  const t = String(s).trim();
  if (!/^\d{1,9}$/.test(t)) return null;
  const n = parseInt(t, 10);
  return n <= max ? n : null;
}

// ---- plans ----------------------------------------------------------------------

async function loadPlans() {
  const r = await api('/ops/pricing/plans');
  plans = r.data || [];
  clear($('#plans')).appendChild(table([
    { title: '名称', get: function (p) { return p.name; } },
    { title: '最低消费', num: true, get: function (p) { return fen(p.min_charge); } },
    { title: '使用者', get: function (p) {
      const u = p.used_by || {};
      return '区域 ' + (u.zones || 0) + ' · 分组 ' + (u.groups || 0) + ' · 机位 ' + (u.devices || 0);
    } },
    { title: '特殊日期', num: true, get: function (p) { return String(Object.keys(p.overrides || {}).length); } },
    { title: '操作', get: function (p) {
      return h('div', { class: 'row' },
        h('button', { type: 'button', class: 'small', text: admin ? '编辑' : '查看', 'aria-label': (admin ? '编辑 ' : '查看 ') + p.name,
          on: { click: function () { openPlan(p.id).catch(showError); } } }),
        admin ? h('button', { type: 'button', class: 'small danger', text: '删除', 'aria-label': '删除 ' + p.name,
          on: { click: function () { deletePlan(p); } } }) : null);
    } },
  ], plans, '还没有价格方案'));
}

function addPlan() {
  formDialog({
    title: '新建价格方案',
    intro: '新方案的每个时段先用同一个费率，创建后在表格里涂色修改。',
    ok: '创建',
    fields: [
      { name: 'name', label: '名称', required: true, maxlength: 64 },
      { name: 'rate', label: '初始费率（分/分钟）', required: true, value: '60', inputmode: 'numeric', maxlength: 7 },
      { name: 'min', label: '最低消费（元，可空）', inputmode: 'decimal', maxlength: 12 },
      REASON,
    ],
    onClose: function () { loadPlans().catch(showError); },
    submit: async function (v) {
      const rate = intOf(v.rate, 1000000);
      if (rate === null) throw new Error('费率应为 0 到 1000000 的整数（分/分钟）');
      let min = 0;
      if (v.min.trim()) {
        min = yuanToFen(v.min);
        if (min === null) throw new Error('最低消费应为金额，最多两位小数，如 1.5');
      }
      const grid = [];
      for (let i = 0; i < 7 * SLOTS; i++) grid.push(rate);
      const p = await api('/ops/pricing/plans', { method: 'POST', json: withReason({ name: v.name.trim(), week: grid, min_charge: min }, v) });
      await loadPlans();
      await openPlan(p.id);
      return '已创建方案 ' + p.name;
    },
  });
}

function deletePlan(p) {
  formDialog({
    title: '删除方案 ' + p.name,
    intro: '只能删除没有区域、分组或机位使用的方案。',
    ok: '删除',
    danger: true,
    fields: [],
    onClose: function () { loadPlans().catch(showError); },
    submit: async function () {
      await api('/ops/pricing/plans/' + p.id, { method: 'DELETE' });
      if (current && current.id === p.id) { current = null; $('#editor').hidden = true; }
      return '已删除';
    },
  });
}

async function openPlan(id) {
  if (dirty && current && current.id !== id && !window.confirm('当前方案有未保存的修改，放弃吗？')) return;
  current = await api('/ops/pricing/plans/' + id);
  week = current.week.slice();
  setDirty(false);
  $('#editor').hidden = false;
  $('#editor').dataset.planId = String(current.id);
  $('#h-editor').textContent = '方案：' + current.name;
  $('#min-charge').value = fen(current.min_charge).replace('¥', '');
  $('#grid-reason').value = '';
  renderGrid();
  renderDays();
}

function setDirty(d) {
  dirty = d;
  $('#dirty').textContent = d ? '有未保存的修改' : '';
}

// Distinct rates in use → colour classes, lowest rate first.
function colourMap() {
  const rates = week.slice().sort(function (a, b) { return a - b; })
    .filter(function (r, i, a) { return i === 0 || a[i - 1] !== r; });
  const m = {};
  rates.forEach(function (r, i) { m[r] = 'rc' + (i % PALETTE); });
  return { rates: rates, cls: m };
}

function renderGrid() {
  const t = clear($('#grid'));
  const head = h('tr', {}, h('th', { scope: 'col', text: '星期' }));
  for (let hr = 0; hr < 24; hr++) head.appendChild(h('th', { scope: 'col', colspan: 2, class: 'hour', text: String(hr) }));
  t.appendChild(h('thead', {}, head));
  const tb = h('tbody');
  for (let d = 0; d < 7; d++) {
    const tr = h('tr', {}, h('th', { scope: 'row', text: DAYS[d] }));
    for (let s = 0; s < SLOTS; s++) {
      tr.appendChild(h('td', { class: 'cell', dataset: { i: String(d * SLOTS + s) } }));
    }
    tb.appendChild(tr);
  }
  t.appendChild(tb);
  paintCells();
}

function paintCells() {
  const cm = colourMap();
  const cells = $('#grid').querySelectorAll('td.cell');
  for (let k = 0; k < cells.length; k++) {
    const i = parseInt(cells[k].dataset.i, 10);
    const r = week[i];
    cells[k].className = 'cell ' + cm.cls[r];
    cells[k].dataset.rate = String(r);
    cells[k].title = DAYS[Math.floor(i / SLOTS)] + ' ' + slotTime(i % SLOTS) + '–' + slotTime(i % SLOTS + 1) + '：' + r + ' 分/分钟';
  }
  const lg = clear($('#legend'));
  lg.appendChild(h('span', { class: 'muted', text: '图例（分/分钟）：' }));
  cm.rates.forEach(function (r) {
    lg.appendChild(h('span', { class: 'legend-item' }, h('span', { class: 'swatch ' + cm.cls[r] }), String(r)));
  });
}

// Painting: pointerdown anchors, moving over cells previews the rectangle from the anchor,
// pointerup keeps it. A click paints one cell.
let drag = null;
function cellIndex(el) {
  const td = el && el.closest ? el.closest('td.cell') : null;
  return td ? parseInt(td.dataset.i, 10) : null;
}
function paintRect(a, b, rate) {
  week = drag.before.slice();
  const d0 = Math.min(Math.floor(a / SLOTS), Math.floor(b / SLOTS)), d1 = Math.max(Math.floor(a / SLOTS), Math.floor(b / SLOTS));
  const s0 = Math.min(a % SLOTS, b % SLOTS), s1 = Math.max(a % SLOTS, b % SLOTS);
  for (let d = d0; d <= d1; d++) for (let s = s0; s <= s1; s++) week[d * SLOTS + s] = rate;
  paintCells();
}
function setupPainting() {
  const grid = $('#grid');
  grid.addEventListener('pointerdown', function (e) {
    if (!admin || !current) return;
    const i = cellIndex(e.target);
    if (i === null) return;
    const rate = intOf($('#paint-rate').value, 1000000);
    if (rate === null) { showError(new Error('涂色费率应为 0 到 1000000 的整数（分/分钟）')); return; }
    e.preventDefault();
    if (e.target.hasPointerCapture && e.target.hasPointerCapture(e.pointerId)) e.target.releasePointerCapture(e.pointerId);
    drag = { anchor: i, rate: rate, before: week.slice() };
    paintRect(i, i, rate);
  });
  grid.addEventListener('pointerover', function (e) {
    if (!drag) return;
    const i = cellIndex(e.target);
    if (i !== null) paintRect(drag.anchor, i, drag.rate);
  });
  document.addEventListener('pointerup', function () {
    if (!drag) return;
    drag = null;
    setDirty(current.week.some(function (r, i) { return r !== week[i]; }) || minChanged());
  });
}

function minChanged() {
  const m = yuanToFen($('#min-charge').value);
  return m !== current.min_charge;
}

async function saveGrid() {
  const min = $('#min-charge').value.trim() ? yuanToFen($('#min-charge').value) : 0;
  if (min === null) { showError(new Error('最低消费应为金额，最多两位小数，如 1.5')); return; }
  const body = { week: week, min_charge: min };
  const reason = $('#grid-reason').value.trim();
  if (reason) body.reason = reason;
  $('#save-grid').disabled = true;
  try {
    await api('/ops/pricing/plans/' + current.id, { method: 'PUT', json: body });
    await openPlan(current.id);
    await loadPlans();
    showOk('已保存方案 ' + current.name);
  } finally {
    $('#save-grid').disabled = false;
  }
}

function renderDays() {
  const days = Object.keys(current.overrides || {}).sort();
  clear($('#days')).appendChild(table([
    { title: '日期', get: function (d) { return d; } },
    { title: '费率（分/分钟，按时段）', get: function (d) { return runs(current.overrides[d]); } },
    { title: '操作', get: function (d) {
      return admin ? h('button', { type: 'button', class: 'small danger', text: '移除', 'aria-label': '移除 ' + d,
        on: { click: function () { removeDay(d); } } }) : '';
    } },
  ], days, '没有特殊日期'));
}

/** 48 rates as runs: "00:00-18:00 60 · 18:00-24:00 300". */
function runs(slots) {
  const out = [];
  let start = 0;
  for (let i = 1; i <= slots.length; i++) {
    if (i === slots.length || slots[i] !== slots[start]) {
      out.push(slotTime(start) + '-' + slotTime(i) + ' ' + slots[start]);
      start = i;
    }
  }
  return out.join(' · ');
}

async function addDay(ev) {
  ev.preventDefault();
  const date = $('#day-date').value;
  const parts = $('#day-rates').value.split(/[\s,，]+/).filter(Boolean);
  const nums = parts.map(function (p) { return intOf(p, 1000000); });
  if (!/^\d{4}-\d{2}-\d{2}$/.test(date)) { showError(new Error('请选择日期')); return; }
  if ((nums.length !== 1 && nums.length !== SLOTS) || nums.some(function (n) { return n === null; })) {
    showError(new Error('费率应为 1 个或 48 个 0 到 1000000 的整数'));
    return;
  }
  const slots = nums.length === 1 ? new Array(SLOTS).fill(nums[0]) : nums;
  await api('/ops/pricing/plans/' + current.id + '/days/' + date, { method: 'PUT', json: { slots: slots } });
  current = await api('/ops/pricing/plans/' + current.id);
  renderDays();
  await loadPlans();
  showOk('已设置 ' + date);
}

function removeDay(d) {
  formDialog({
    title: '移除特殊日期 ' + d,
    ok: '移除',
    danger: true,
    fields: [],
    onClose: function () {
      api('/ops/pricing/plans/' + current.id).then(function (p) { current.overrides = p.overrides; renderDays(); }).catch(showError);
    },
    submit: async function () {
      await api('/ops/pricing/plans/' + current.id + '/days/' + d, { method: 'DELETE' });
      return '已移除';
    },
  });
}

// ---- zones and devices ------------------------------------------------------------

async function loadZones() {
  const r = await api('/ops/pricing/zones');
  zones = r.data || [];
  devices = r.devices || [];
  clear($('#zones')).appendChild(table([
    { title: '区域', get: function (z) { return z.name; } },
    { title: '价格方案', get: function (z) { return planName(z.plan_id); } },
    { title: '机位', get: function (z) {
      return z.devices.length ? z.devices.map(function (d) { return d.name + '（' + d.device_code + '）'; }).join('、') : '—';
    } },
    { title: '操作', get: function (z) {
      return admin ? h('button', { type: 'button', class: 'small', text: '设置方案', 'aria-label': '设置方案 ' + z.name,
        on: { click: function () { zonePlan(z); } } }) : '';
    } },
  ], zones, '还没有区域'));
  clear($('#devices')).appendChild(table([
    { title: '机位', get: function (d) { return d.name; } },
    { title: '编码', get: function (d) { return h('code', { text: d.device_code }); } },
    { title: '区域', get: function (d) { return zoneName(d.zone_id); } },
    { title: '自有方案', get: function (d) { return planName(d.plan_id); } },
    { title: '操作', get: function (d) {
      return admin ? h('button', { type: 'button', class: 'small', text: '分配', 'aria-label': '分配 ' + d.device_code,
        on: { click: function () { assign(d); } } }) : '';
    } },
  ], devices, '还没有机位'));
}

function addZone() {
  formDialog({
    title: '新建区域',
    ok: '创建',
    fields: [
      { name: 'name', label: '名称', required: true, maxlength: 64 },
      { name: 'plan', label: '价格方案', type: 'select', options: planOptions() },
      REASON,
    ],
    onClose: function () { loadZones().catch(showError); },
    submit: async function (v) {
      await api('/ops/pricing/zones', { method: 'POST', json: withReason({ name: v.name.trim(), plan_id: idOrNull(v.plan) }, v) });
      return '已创建区域 ' + v.name.trim();
    },
  });
}

function zonePlan(z) {
  formDialog({
    title: '区域 ' + z.name + ' 的价格方案',
    ok: '保存',
    fields: [
      { name: 'plan', label: '价格方案', type: 'select', options: planOptions(), value: z.plan_id === null ? '' : String(z.plan_id) },
      REASON,
    ],
    onClose: function () { refresh().catch(showError); },
    submit: async function (v) {
      await api('/ops/pricing/zones/' + z.id, { method: 'PUT', json: withReason({ plan_id: idOrNull(v.plan) }, v) });
      return '已保存';
    },
  });
}

function assign(d) {
  formDialog({
    title: d ? '分配机位 ' + d.name : '分配机位',
    intro: '机位自有方案优先于区域的方案；选“（无）”即清除。',
    ok: '保存',
    fields: [
      { name: 'code', label: '机位编码', required: true, maxlength: 64, value: d ? d.device_code : '' },
      { name: 'zone', label: '区域', type: 'select', options: zoneOptions(), value: d && d.zone_id !== null ? String(d.zone_id) : '' },
      { name: 'plan', label: '自有方案', type: 'select', options: planOptions(), value: d && d.plan_id !== null ? String(d.plan_id) : '' },
      REASON,
    ],
    onClose: function () { refresh().catch(showError); },
    submit: async function (v) {
      const code = v.code.trim();
      await api('/ops/pricing/devices/' + encodeURIComponent(code), { method: 'PUT', json: withReason({ zone_id: idOrNull(v.zone), plan_id: idOrNull(v.plan) }, v) });
      return '已分配 ' + code;
    },
  });
}

// ---- groups -----------------------------------------------------------------------

async function loadGroups() {
  const r = await api('/ops/pricing/groups');
  const list = r.data || [];
  clear($('#groups')).appendChild(table([
    { title: '分组', get: function (g) { return g.name; } },
    { title: '折扣', num: true, get: function (g) { return g.discount_pct + '%'; } },
    { title: '自有方案', get: function (g) { return planName(g.plan_id); } },
    { title: '操作', get: function (g) {
      return admin ? h('button', { type: 'button', class: 'small', text: '修改', 'aria-label': '修改分组 ' + g.name,
        on: { click: function () { groupDialog(g); } } }) : '';
    } },
  ], list, '还没有会员分组'));
}

function groupDialog(g) {
  formDialog({
    title: g ? '修改分组 ' + g.name : '新建会员分组',
    intro: '折扣为减免的百分比（0–100），例如 20 表示按八折计费。',
    ok: g ? '保存' : '创建',
    fields: (g ? [] : [{ name: 'name', label: '名称', required: true, maxlength: 64 }]).concat([
      { name: 'discount', label: '折扣（%）', required: true, inputmode: 'numeric', maxlength: 3, value: g ? String(g.discount_pct) : '0' },
      { name: 'plan', label: '自有方案', type: 'select', options: planOptions(), value: g && g.plan_id !== null ? String(g.plan_id) : '' },
      REASON,
    ]),
    onClose: function () { loadGroups().catch(showError); },
    submit: async function (v) {
      const pct = intOf(v.discount, 100);
      if (pct === null) throw new Error('折扣应为 0 到 100 的整数');
      if (g) {
        await api('/ops/pricing/groups/' + g.id, { method: 'PUT', json: withReason({ discount_pct: pct, plan_id: idOrNull(v.plan) }, v) });
        return '已保存';
      }
      await api('/ops/pricing/groups', { method: 'POST', json: withReason({ name: v.name.trim(), discount_pct: pct, plan_id: idOrNull(v.plan) }, v) });
      return '已创建分组 ' + v.name.trim();
    },
  });
}

// ---- packages ---------------------------------------------------------------------

async function loadPackages() {
  const r = await api('/ops/pricing/packages');
  const list = r.data || [];
  clear($('#packages')).appendChild(table([
    { title: '套餐', get: function (p) { return p.name; } },
    { title: '时长', num: true, get: function (p) { return p.minutes + ' 分钟'; } },
    { title: '价格', num: true, get: function (p) { return h('span', { dataset: { fen: String(p.price) }, text: fen(p.price) }); } },
    { title: '有效期', num: true, get: function (p) { return p.valid_days + ' 天'; } },
    { title: '区域', get: function (p) { return p.zones.length ? p.zones.map(zoneName).join('、') : '全部'; } },
    { title: '时段', get: function (p) { return p.windows.length ? p.windows.join('、') : '全天'; } },
    { title: '状态', get: function (p) { return p.on_sale ? '在售' : h('span', { class: 'muted', text: '已下架' }); } },
    { title: '操作', get: function (p) {
      return admin ? h('button', { type: 'button', class: 'small' + (p.on_sale ? ' danger' : ''), text: p.on_sale ? '下架' : '重新上架',
        'aria-label': (p.on_sale ? '下架 ' : '重新上架 ') + p.name, on: { click: function () { toggleSale(p); } } }) : '';
    } },
  ], list, '还没有套餐'));
}

function addPackage() {
  formDialog({
    title: '新建套餐',
    ok: '上架',
    fields: [
      { name: 'name', label: '名称', required: true, maxlength: 64 },
      { name: 'minutes', label: '时长（分钟）', required: true, inputmode: 'numeric', maxlength: 7 },
      { name: 'price', label: '价格（元）', required: true, inputmode: 'decimal', maxlength: 12 },
      { name: 'days', label: '有效期（天）', required: true, inputmode: 'numeric', maxlength: 5, value: '30' },
      { name: 'windows', label: '可用时段（如 22:00-08:00，逗号分隔，留空为全天）', maxlength: 200 },
      { name: 'zones', label: '可用区域（区域名称，逗号分隔，留空为全部）', maxlength: 500 },
      REASON,
    ],
    onClose: function () { loadPackages().catch(showError); },
    submit: async function (v) {
      const minutes = intOf(v.minutes, 10000000);
      if (minutes === null || minutes < 1) throw new Error('时长应为正整数（分钟）');
      const price = yuanToFen(v.price);
      if (price === null) throw new Error('价格应为金额，最多两位小数，如 30.5');
      const days = intOf(v.days, 100000);
      if (days === null || days < 1) throw new Error('有效期应为正整数（天）');
      const windows = v.windows.split(/[,，\s]+/).filter(Boolean);
      const zoneIds = [];
      const names = v.zones.split(/[,，]/).map(function (s) { return s.trim(); }).filter(Boolean);
      for (let i = 0; i < names.length; i++) {
        const z = zones.find(function (x) { return x.name === names[i]; });
        if (!z) throw new Error('没有这个区域：' + names[i]);
        zoneIds.push(z.id);
      }
      await api('/ops/pricing/packages', { method: 'POST', json: withReason({
        name: v.name.trim(), minutes: minutes, price: price, valid_days: days, windows: windows, zones: zoneIds,
      }, v) });
      return '已上架 ' + v.name.trim() + '（' + fen(price) + '）';
    },
  });
}

function toggleSale(p) {
  formDialog({
    title: (p.on_sale ? '下架 ' : '重新上架 ') + p.name,
    intro: p.on_sale ? '下架后不再出售；已购买的用户照常使用。' : null,
    ok: p.on_sale ? '下架' : '上架',
    danger: p.on_sale,
    fields: [REASON],
    onClose: function () { loadPackages().catch(showError); },
    submit: async function (v) {
      await api('/ops/pricing/packages/' + p.id, { method: 'PUT', json: withReason({ on_sale: !p.on_sale }, v) });
      return p.on_sale ? '已下架' : '已上架';
    },
  });
}

// ---- page -------------------------------------------------------------------------

async function refresh() {
  await loadPlans();
  await loadZones();
  await loadGroups();
  await loadPackages();
}

async function main() {
  const me = await initPage('pricing');
  // Pricing changes are for admins of every site (the server refuses a site-limited one).
  admin = me.role === 'admin' && !(me.sites && me.sites.length);
  document.querySelectorAll('.admin-only').forEach(function (el) { el.hidden = !admin; });
  $('#readonly-note').hidden = admin;
  $('#paint-rate').disabled = !admin;
  $('#min-charge').disabled = !admin;
  if (admin) {
    $('#add-plan').addEventListener('click', addPlan);
    $('#save-grid').addEventListener('click', function () { saveGrid().catch(showError); });
    $('#revert-grid').addEventListener('click', function () { setDirty(false); openPlan(current.id).catch(showError); });
    $('#min-charge').addEventListener('input', function () { setDirty(true); });
    $('#add-day').addEventListener('submit', function (ev) { addDay(ev).catch(showError); });
    $('#add-zone').addEventListener('click', addZone);
    $('#assign-device').addEventListener('click', function () { assign(null); });
    $('#add-group').addEventListener('click', function () { groupDialog(null); });
    $('#add-package').addEventListener('click', addPackage);
  }
  setupPainting();
  window.addEventListener('beforeunload', function (e) { if (dirty) { e.preventDefault(); e.returnValue = ''; } });
  await refresh();
}
main().catch(showError);
