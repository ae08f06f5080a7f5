// Device and session actions: each asks for a reason, sends it, and follows the
// command until the kiosk acknowledges it.
import { api, formDialog, time, fen } from './common.js';

export const ACTIONS = {
  lock: { label: '锁定', danger: true },
  unlock: { label: '解锁' },
  restart: { label: '重启', danger: true },
  message: { label: '发消息' },
  maintain: { label: '维护', danger: true },
  end: { label: '结束会话', danger: true },
};

function maxCommandId(detail) {
  let m = 0;
  (detail.commands || []).forEach(function (c) { if (c.id > m) m = c.id; });
  return m;
}

/** Polls the device until command `match` is acknowledged (or 30 s pass). */
async function follow(code, match, setStatus, sentText) {
  const deadline = Date.now() + 30000;
  while (Date.now() < deadline) {
    let d;
    try { d = await api('/ops/devices/' + encodeURIComponent(code)); } catch (e) { setStatus(sentText + '；查询确认失败：' + e.message, 'error'); return; }
    const c = (d.commands || []).filter(match)[0];
    if (c && c.acked_at) { setStatus(sentText + '；设备已确认（' + time(c.acked_at) + '）', 'okmsg'); return; }
    if (c) setStatus(sentText + '；等待设备确认…（命令 #' + c.id + '）', 'okmsg');
    await new Promise(function (r) { setTimeout(r, 1000); });
  }
  setStatus(sentText + '；设备尚未确认：设备在线后会自动重发', 'error');
}

/** Opens the dialog for `kind` on device `code` (sessionId for `end`). */
export function openAction(kind, code, sessionId, onDone) {
  const a = ACTIONS[kind];
  const fields = [];
  if (kind === 'message') fields.push({ name: 'text', label: '消息内容（显示在机位屏幕上）', type: 'textarea', required: true, maxlength: 500 });
  fields.push({ name: 'reason', label: '原因（记入审计日志）', type: 'text', required: true, maxlength: 200 });
  formDialog({
    title: a.label + ' ' + code,
    intro: kind === 'lock' ? '锁定会结束正在进行的会话（按已用时间计费，余额退回）。' : (kind === 'end' ? '按已用时间计费，预留的余额退回。' : null),
    ok: a.label,
    danger: a.danger,
    fields: fields,
    onClose: onDone,
    submit: async function (v, setStatus) {
      if (kind === 'end') {
        const r = await api('/ops/sessions/' + sessionId + '/end', { method: 'POST', json: { reason: v.reason.trim() } });
        return '会话已结束：费用 ' + fen(r.cost_money) + '，退回 ' + fen(r.refund);
      }
      let before = 0;
      if (kind === 'lock' || kind === 'unlock') {
        before = maxCommandId(await api('/ops/devices/' + encodeURIComponent(code)));
      }
      const body = { name: kind, reason: v.reason.trim() };
      if (kind === 'message') body.text = v.text.trim();
      const r = await api('/ops/devices/' + encodeURIComponent(code) + '/command', { method: 'POST', json: body });
      if (kind === 'maintain') {
        return '已进入维护' + (r.ended_session ? '；会话 #' + r.ended_session.id + ' 已结束' : '');
      }
      let sent;
      let match;
      if (r.id !== undefined) {
        sent = r.delivered ? '已送达设备' : '设备未连接，已排队';
        match = function (c) { return c.id === r.id; };
      } else {
        sent = '已' + a.label + (r.ended_session ? '，会话 #' + r.ended_session.id + ' 已结束（费用 ' + fen(r.ended_session.cost) + '）' : '');
        match = function (c) { return c.id > before && c.name === kind; };
      }
      setTimeout(function () { follow(code, match, setStatus, sent); }, 0);
      return sent;
    },
  });
}
