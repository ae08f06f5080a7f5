// Postpaid orders: the unpaid one first, paying it (sandbox at once, or WeChat JSAPI pay
// and then the server's word), and the block message while one is unpaid.
import {
  $, appConfig, duration, get, inWeChat, me, messageFor, pollUntil, post, show, signInUrl,
  text, wechatPay, yuan,
} from './common.js';

const SIZE = 10;
let page = 1;

function error(msg) {
  show('#notice', false);
  text('#error', msg);
  show('#error', !!msg);
}

function notice(msg) {
  show('#error', false);
  text('#notice', msg);
  show('#notice', !!msg);
}

function kv(dl, k, v) {
  const row = document.createElement('div');
  row.className = 'app-kv';
  const dt = document.createElement('dt');
  dt.textContent = k;
  const dd = document.createElement('dd');
  dd.textContent = v;
  row.appendChild(dt);
  row.appendChild(dd);
  dl.appendChild(row);
}

async function isPaid(orderId) {
  // The order may have moved to another page once paid: look at the first pages.
  for (let p = 1; p <= 5; p++) {
    const r = await get('/wechat/orders?page=' + p + '&size=100');
    if (!r.success) return false;
    const o = r.result.data.find((x) => x.orderId === orderId);
    if (o) return !!o.paid;
    if (r.result.data.length < 100) return false;
  }
  return false;
}

async function pay(o, button) {
  const cfg = await appConfig();
  if (cfg.payments_mode === 'wechatpay' && !inWeChat) {
    error('请在微信中打开本页面完成支付');
    return;
  }
  button.disabled = true;
  text(button, '正在支付…');
  try {
    const r = await post('/wechat/order/pay', { orderId: o.orderId });
    if (!r.success) {
      error(messageFor(r));
      return;
    }
    if (r.result !== 'success') {
      const hint = await wechatPay(r.result);
      if (hint === 'cancel') {
        error('支付已取消');
        return;
      }
      text(button, '正在确认支付结果…');
      const ok = await pollUntil(() => isPaid(o.orderId), hint === 'ok' ? 60000 : 10000);
      if (!ok) {
        error(hint === 'ok' ? '支付结果确认中，请稍后刷新' : '支付未完成');
        return;
      }
    }
    notice('支付成功：' + yuan(o.cost_money));
    await load();
  } finally {
    button.disabled = false;
    text(button, '支付 ' + yuan(o.cost_money));
  }
}

async function load() {
  const cfg = await appConfig();
  const r = await get('/wechat/orders?page=' + page + '&size=' + SIZE);
  const box = $('#orders');
  box.textContent = '';
  if (!r.success) {
    error(messageFor(r));
    return;
  }
  const total = r.result.total;
  const pages = Math.max(1, Math.ceil(total / SIZE));
  let unpaid = false;
  r.result.data.forEach((o) => {
    const card = document.createElement('article');
    card.className = 'app-order' + (o.paid ? '' : ' app-order_unpaid');
    card.setAttribute('aria-label', '订单 ' + o.orderId);
    const dl = document.createElement('dl');
    kv(dl, '状态', o.paid ? '已支付' : '待支付');
    kv(dl, '金额', yuan(o.cost_money));
    // cost_time counts billed units ("minutes" of billing.unit_seconds).
    kv(dl, '计费时长', duration(o.cost_time * cfg.unit_seconds));
    kv(dl, '设备', o.device_code);
    kv(dl, '开始', o.ctime);
    kv(dl, '结束', o.end_time);
    card.appendChild(dl);
    if (!o.paid) {
      unpaid = true;
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'weui-btn weui-btn_primary';
      b.textContent = '支付 ' + yuan(o.cost_money);
      b.addEventListener('click', () => pay(o, b));
      card.appendChild(b);
    }
    box.appendChild(card);
  });
  if (!r.result.data.length) {
    const p = document.createElement('p');
    p.className = 'app-empty';
    p.textContent = '暂无订单';
    box.appendChild(p);
  }
  // Unpaid orders come first, so page 1 tells whether the user is blocked.
  if (page === 1) show('#blocked', unpaid);
  text('#page-info', '第 ' + page + ' / ' + pages + ' 页');
  $('#prev').disabled = page <= 1;
  $('#next').disabled = page >= pages;
}

async function main() {
  const who = await me();
  if (who.state === 'anonymous' || who.state === 'unbound') {
    $('#orders').textContent = '';
    $('#signin').href = signInUrl('/app/orders');
    show('#signin-box');
    return;
  }
  $('#prev').addEventListener('click', () => {
    page -= 1;
    load();
  });
  $('#next').addEventListener('click', () => {
    page += 1;
    load();
  });
  load();
}

main();
