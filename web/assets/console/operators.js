// Operator accounts (admins: list, add, change role/sites, disable) and "my API tokens"
// (create, revoke), on the auth contract's /ops/operators and /ops/tokens.
import { api, h, clear, $, time, initPage, showError, table, formDialog, roleName } from './common.js';

const ROLE_OPTIONS = [['viewer', '只读（查看）'], ['staff', '店员（操作机位和会话）'], ['admin', '管理员（全部）']];

function sitesOf(s) {
  return String(s || '').split(/[,，\n]/).map(function (x) { return x.trim(); }).filter(Boolean);
}

async function operators() {
  const r = await api('/ops/operators');
  const list = r.data || r;
  clear($('#operators')).appendChild(table([
    { title: '用户名', get: function (o) { return o.username; } },
    { title: '角色', get: function (o) { return roleName(o.role); } },
    { title: '场地', get: function (o) { return o.sites && o.sites.length ? o.sites.join(', ') : '全部'; } },
    { title: '状态', get: function (o) { return o.disabled ? h('span', { class: 'error', text: '已停用' }) : '正常'; } },
    { title: '操作', get: function (o) {
      return h('div', { class: 'row' },
        h('button', { type: 'button', class: 'small', text: '修改', 'aria-label': '修改 ' + o.username, on: { click: function () { edit(o); } } }),
        h('button', { type: 'button', class: 'small' + (o.disabled ? '' : ' danger'), text: o.disabled ? '启用' : '停用',
          'aria-label': (o.disabled ? '启用 ' : '停用 ') + o.username,
          on: { click: function () { toggle(o); } } }));
    } },
  ], list, '没有操作员'));
}

function addOperator() {
  formDialog({
    title: '添加操作员',
    ok: '添加',
    fields: [
      { name: 'username', label: '用户名', required: true, maxlength: 64 },
      { name: 'password', label: '初始密码', type: 'password', required: true, maxlength: 200 },
      { name: 'role', label: '角色', type: 'select', options: ROLE_OPTIONS },
      { name: 'sites', label: '场地（逗号分隔，留空为全部）', maxlength: 500 },
    ],
    onClose: function () { operators().catch(showError); },
    submit: async function (v) {
      const body = { username: v.username.trim(), password: v.password, role: v.role };
      const sites = sitesOf(v.sites);
      if (sites.length) body.sites = sites;
      await api('/ops/operators', { method: 'POST', json: body });
      return '已添加 ' + body.username;
    },
  });
}

function edit(o) {
  formDialog({
    title: '修改 ' + o.username,
    ok: '保存',
    fields: [
      { name: 'role', label: '角色', type: 'select', options: ROLE_OPTIONS, value: o.role },
      { name: 'sites', label: '场地（逗号分隔，留空为全部）', value: (o.sites || []).join(', '), maxlength: 500 },
      { name: 'password', label: '新密码（留空不改）', type: 'password', maxlength: 200 },
    ],
    onClose: function () { operators().catch(showError); },
    submit: async function (v) {
      const body = { role: v.role, sites: sitesOf(v.sites) };
      if (v.password) body.password = v.password;
      await api('/ops/operators/' + encodeURIComponent(o.username), { method: 'POST', json: body });
      return '已保存';
    },
  });
}

function toggle(o) {
  formDialog({
    title: (o.disabled ? '启用 ' : '停用 ') + o.username,
    ok: o.disabled ? '启用' : '停用',
    danger: !o.disabled,
    fields: [],
    onClose: function () { operators().catch(showError); },
    submit: async function () {
      await api('/ops/operators/' + encodeURIComponent(o.username), { method: 'POST', json: { disabled: !o.disabled } });
      return o.disabled ? '已启用' : '已停用';
    },
  });
}

async function tokens() {
  const r = await api('/ops/tokens');
  const list = r.data || r;
  clear($('#tokens')).appendChild(table([
    { title: '名称', get: function (t) { return t.name; } },
    { title: '创建时间', get: function (t) { return time(t.created_at); } },
    { title: '最近使用', get: function (t) { return time(t.last_used_at); } },
    { title: '操作', get: function (t) {
      return h('button', { type: 'button', class: 'small danger', text: '撤销', 'aria-label': '撤销令牌 ' + t.name,
        on: { click: function () { revoke(t); } } });
    } },
  ], list, '还没有令牌'));
}

function addToken() {
  formDialog({
    title: '创建 API 令牌',
    ok: '创建',
    fields: [{ name: 'name', label: '名称（用途）', required: true, maxlength: 64 }],
    onClose: function () { tokens().catch(showError); },
    submit: async function (v) {
      const r = await api('/ops/tokens', { method: 'POST', json: { name: v.name.trim() } });
      const box = clear($('#new-token'));
      box.appendChild(h('div', { class: 'alert warning' },
        h('strong', { text: '新令牌（只显示这一次，请立即复制保存）：' }),
        h('div', {}, h('code', { id: 'token-value', text: r.token }))));
      return '已创建';
    },
  });
}

function revoke(t) {
  formDialog({
    title: '撤销令牌 ' + t.name,
    intro: '撤销后使用该令牌的工具将无法访问。',
    ok: '撤销',
    danger: true,
    fields: [],
    onClose: function () { tokens().catch(showError); },
    submit: async function () {
      await api('/ops/tokens/' + encodeURIComponent(t.id), { method: 'DELETE' });
      return '已撤销';
    },
  });
}

async function main() {
  const me = await initPage('operators');
  $('#add-token').addEventListener('click', addToken);
  if (me.role === 'admin') {
    $('#ops-section').hidden = false;
    $('#add-op').addEventListener('click', addOperator);
    await operators();
  }
  await tokens();
}
main().catch(showError);
