// 我的: balance, recharge (presets and a custom amount; sandbox or WeChat JSAPI pay,
// then the server's word), packages (held with time left and expiry; on sale, bought
// from the balance or by WeChat Pay like a recharge), and the expense, recharge and
// package histories with paging (package purchases are money; uses are time).
import {
  $, appConfig, duration, fixIosKeyboard, get, inWeChat, maskMobile, me, messageFor, param,
  parseYuan, pollUntil, post, safeBack, show, signInUrl, text, wechatPay, yuan,
} from './common.js';

const SIZE = 10;
let cfg = null;
let amount = 2000;
let tab = 'expense';
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

function showUser(u) {
  text('#who', (u.nick_name || u.nike_name || '用户') + ' · ' + maskMobile(u.mobile));
  text('#balance', yuan(u.balance_account));
  text('#total', yuan(u.total_account));
  text('#used', yuan(u.used_account));
}

async function refreshUser() {
  const who = await me();
  if (who.user) showUser(who.user);
  return who;
}

function setAmount(fen) {
  amount = fen;
  text('#pay', fen ? '充值 ' + yuan(fen) : '充值');
}

/** Unix ms as local "2026-12-02 21:30". */
function when(ms) {
  const d = new Date(ms);
  const two = (n) => String(n).padStart(2, '0');
  return d.getFullYear() + '-' + two(d.getMonth() + 1) + '-' + two(d.getDate()) + ' ' +
    two(d.getHours()) + ':' + two(d.getMinutes());
}

const SOURCES = { balance: '余额购买', wechat: '微信支付', operator: '赠送' };

function item(list, title, subText, rightText) {
  const li = document.createElement('li');
  const left = document.createElement('span');
  const sub = document.createElement('span');
  const right = document.createElement('span');
  left.textContent = title;
  sub.className = 'app-muted';
  sub.textContent = subText;
  right.textContent = rightText;
  left.appendChild(sub);
  li.appendChild(left);
  li.appendChild(right);
  list.appendChild(li);
  return li;
}

function empty(list, msg) {
  const li = document.createElement('li');
  li.className = 'app-empty';
  li.textContent = msg;
  list.appendChild(li);
}

async function loadPackages() {
  const r = await get('/wechat/app/packages');
  const held = $('#held');
  const sale = $('#on-sale');
  held.textContent = '';
  sale.textContent = '';
  if (!r.success) {
    error(messageFor(r));
    return;
  }
  (r.result.held || []).forEach((p) => {
    item(held, p.name, '有效期至 ' + when(p.expires_at) + ' · ' + (SOURCES[p.source] || ''),
      '剩 ' + duration(p.seconds_left));
  });
  if (!(r.result.held || []).length) empty(held, '暂无套餐');
  r.result.on_sale.forEach((p) => {
    const li = item(sale, p.name, p.minutes + ' 分钟 · ' + p.valid_days + ' 天内有效' +
      (p.windows.length ? ' · 时段 ' + p.windows.join('、') : ''), yuan(p.price));
    const buttons = document.createElement('span');
    buttons.className = 'app-buy';
    const byBalance = document.createElement('button');
    byBalance.type = 'button';
    byBalance.className = 'app-small-btn';
    byBalance.textContent = '余额购买';
    byBalance.setAttribute('data-package', String(p.id));
    byBalance.addEventListener('click', () => buyPackage(p, 'balance', byBalance));
    const byWechat = document.createElement('button');
    byWechat.type = 'button';
    byWechat.className = 'app-small-btn';
    byWechat.textContent = '微信支付';
    byWechat.addEventListener('click', () => buyPackage(p, 'wechat', byWechat));
    buttons.appendChild(byBalance);
    buttons.appendChild(byWechat);
    li.appendChild(buttons);
  });
  if (!r.result.on_sale.length) empty(sale, '暂无在售套餐');
}

async function buyPackage(p, pay, button) {
  if (pay === 'wechat' && cfg.payments_mode === 'wechatpay' && !inWeChat) {
    error('请在微信中打开本页面完成支付');
    return;
  }
  button.disabled = true;
  show('#error', false);
  show('#notice', false);
  text('#package-state', '正在购买…');
  try {
    const r = await post('/wechat/app/packages/buy', { package_id: p.id, pay: pay });
    if (!r.success) {
      text('#package-state', '');
      error(r.result === -5 ? '余额不足，请先充值或使用微信支付' : messageFor(r));
      return;
    }
    if (pay === 'balance' || r.result === 'success') {
      text('#package-state', '');
      await refreshUser();
      notice('购买成功：' + p.name);
      loadPackages();
      if (tab === 'package') loadPage();
      return;
    }
    // WeChat Pay: as a recharge, the server's record is the proof.
    text('#package-state', '请在微信支付中完成付款…');
    const hint = await wechatPay(r.result);
    if (hint === 'cancel') {
      text('#package-state', '');
      error('支付已取消');
      return;
    }
    text('#package-state', '正在确认支付结果…');
    const no = r.result.out_trade_no;
    let paid = false;
    const settled = await pollUntil(async () => {
      const s = await get('/wechat/app/package-order/' + encodeURIComponent(no));
      paid = s.success && s.result.status === 'paid';
      return paid || (s.success && s.result.status === 'closed');
    }, hint === 'ok' ? 60000 : 10000);
    text('#package-state', '');
    if (paid) {
      notice('购买成功：' + p.name);
      loadPackages();
    } else if (settled) {
      error('订单已关闭，未扣款');
    } else {
      error(hint === 'ok' ? '支付结果确认中，到账后套餐会自动出现，请稍后刷新' : '支付未完成');
    }
  } finally {
    button.disabled = false;
  }
}

const PACKAGE_KINDS = { purchase: '购买套餐', use: '套餐抵扣', return: '套餐退回' };

async function loadPage() {
  if (tab === 'package') return loadPackagePage();
  const path = tab === 'expense' ? '/wechat/expense/list' : '/wechat/recharge/list';
  const r = await post(path, { page: page, size: SIZE });
  const list = $('#list');
  list.textContent = '';
  if (!r.success) {
    error(messageFor(r));
    return;
  }
  const total = r.result.total;
  const pages = Math.max(1, Math.ceil(total / SIZE));
  r.result.data.forEach((it) => {
    const li = document.createElement('li');
    const left = document.createElement('span');
    const right = document.createElement('span');
    const sub = document.createElement('span');
    sub.className = 'app-muted';
    if (tab === 'expense') {
      left.textContent = [it.city, it.area, it.location].filter(Boolean).join(' ') || '消费';
      sub.textContent = it.ctime + ' · ' + it.cost_time + ' 分钟';
      right.textContent = '-' + yuan(it.cost_money);
    } else {
      left.textContent = '充值';
      sub.textContent = it.pay_time;
      right.textContent = '+' + yuan(it.amount);
    }
    left.appendChild(sub);
    li.appendChild(left);
    li.appendChild(right);
    list.appendChild(li);
  });
  if (!r.result.data.length) {
    const li = document.createElement('li');
    li.className = 'app-empty';
    li.textContent = tab === 'expense' ? '暂无消费记录' : '暂无充值记录';
    list.appendChild(li);
  }
  text('#page-info', '第 ' + page + ' / ' + pages + ' 页，共 ' + total + ' 条');
  $('#prev').disabled = page <= 1;
  $('#next').disabled = page >= pages;
}

// Package purchases are money (the price, from the balance or by WeChat Pay); uses and
// returns are time off or back on a package, no money.
async function loadPackagePage() {
  const r = await get('/wechat/app/package-history?page=' + page + '&size=' + SIZE);
  const list = $('#list');
  list.textContent = '';
  if (!r.success) {
    error(messageFor(r));
    return;
  }
  const total = r.result.total;
  const pages = Math.max(1, Math.ceil(total / SIZE));
  r.result.data.forEach((it) => {
    const title = (PACKAGE_KINDS[it.kind] || it.kind) + ' · ' + it.name;
    if (it.kind === 'purchase') {
      item(list, title, when(it.created_at) + ' · ' + (SOURCES[it.source] || ''),
        (it.amount > 0 ? '-' + yuan(it.amount) : '赠送') + ' / +' + duration(it.seconds));
    } else {
      item(list, title, when(it.created_at), (it.seconds < 0 ? '-' : '+') + duration(Math.abs(it.seconds)));
    }
  });
  if (!r.result.data.length) empty(list, '暂无套餐记录');
  text('#page-info', '第 ' + page + ' / ' + pages + ' 页，共 ' + total + ' 条');
  $('#prev').disabled = page <= 1;
  $('#next').disabled = page >= pages;
}

function selectTab(t) {
  tab = t;
  page = 1;
  $('#tab-expense').setAttribute('aria-selected', String(t === 'expense'));
  $('#tab-recharge').setAttribute('aria-selected', String(t === 'recharge'));
  $('#tab-package').setAttribute('aria-selected', String(t === 'package'));
  loadPage();
}

async function recharge() {
  const custom = $('#custom').value.trim();
  let fen = amount;
  if (custom) {
    fen = parseYuan(custom);
    if (fen === null || fen <= 0) {
      error('请输入正确的金额，最多两位小数');
      return;
    }
  }
  if (fen > cfg.max_recharge_fen) {
    error('单次充值不能超过 ' + yuan(cfg.max_recharge_fen));
    return;
  }
  if (cfg.payments_mode === 'wechatpay' && !inWeChat) {
    error('请在微信中打开本页面完成充值');
    return;
  }
  const b = $('#pay');
  b.disabled = true;
  show('#error', false);
  show('#notice', false);
  text('#pay-state', '正在下单…');
  try {
    const r = await get('/wechat/recharge/' + fen);
    if (!r.success) {
      error(messageFor(r));
      text('#pay-state', '');
      return;
    }
    if (r.result === 'success') {
      // Sandbox: settled at once.
      text('#pay-state', '');
      await refreshUser();
      notice('充值成功：' + yuan(fen));
      if (tab === 'recharge') loadPage();
      return;
    }
    // WeChat Pay: the bridge's answer is a hint; the server's record is the proof.
    text('#pay-state', '请在微信支付中完成付款…');
    const hint = await wechatPay(r.result);
    if (hint === 'cancel') {
      text('#pay-state', '');
      error('支付已取消');
      return;
    }
    text('#pay-state', '正在确认支付结果…');
    const no = r.result.out_trade_no;
    let paid = false;
    const settled = await pollUntil(async () => {
      const s = await get('/wechat/app/recharge/' + encodeURIComponent(no));
      paid = s.success && s.result.status === 'paid';
      return paid || (s.success && s.result.status === 'closed');
    }, hint === 'ok' ? 60000 : 10000);
    text('#pay-state', '');
    if (paid) {
      await refreshUser();
      notice('充值成功：' + yuan(fen));
      if (tab === 'recharge') loadPage();
    } else if (settled) {
      error('订单已关闭，未扣款');
    } else {
      error(hint === 'ok' ? '支付结果确认中，到账后余额会自动更新，请稍后刷新' : '支付未完成');
    }
  } finally {
    b.disabled = false;
  }
}

async function main() {
  fixIosKeyboard();
  cfg = await appConfig();
  const who = await me();
  if (who.state !== 'ok') {
    text('#who', who.state === 'blocked' ? who.message : '未登录');
    $('#signin').href = signInUrl('/app/me');
    if (who.state === 'unbound') text('#signin', '绑定手机号');
    if (who.state !== 'blocked') show('#signin-box');
    return;
  }
  showUser(who.user);
  show('#balance-box');
  show('#recharge-box');
  show('#packages-box');
  show('#history');
  const back = safeBack(param('back'), null);
  if (back) {
    $('#back-link').href = back;
    text('#back-link', back.indexOf('/app/live') === 0 ? '返回当前会话' : '返回设备页面');
    show('#back-box');
  }
  document.querySelectorAll('.app-preset').forEach((p) => {
    p.addEventListener('click', () => {
      document.querySelectorAll('.app-preset').forEach((q) => q.setAttribute('aria-pressed', 'false'));
      p.setAttribute('aria-pressed', 'true');
      $('#custom').value = '';
      setAmount(parseInt(p.getAttribute('data-fen'), 10));
    });
  });
  $('#custom').addEventListener('input', () => {
    const v = $('#custom').value.trim();
    if (!v) {
      const sel = document.querySelector('.app-preset[aria-pressed="true"]');
      setAmount(sel ? parseInt(sel.getAttribute('data-fen'), 10) : 0);
      return;
    }
    document.querySelectorAll('.app-preset').forEach((q) => q.setAttribute('aria-pressed', 'false'));
    const fen = parseYuan(v);
    amount = fen || 0;
    text('#pay', fen ? '充值 ' + yuan(fen) : '充值');
  });
  $('#pay').addEventListener('click', recharge);
  $('#tab-expense').addEventListener('click', () => selectTab('expense'));
  $('#tab-recharge').addEventListener('click', () => selectTab('recharge'));
  $('#tab-package').addEventListener('click', () => selectTab('package'));
  $('#prev').addEventListener('click', () => {
    page -= 1;
    loadPage();
  });
  $('#next').addEventListener('click', () => {
    page += 1;
    loadPage();
  });
  if (param('recharge')) $('#recharge-box').scrollIntoView();
  loadPage();
  await loadPackages();
  if (location.hash === '#packages-box') $('#packages-box').scrollIntoView();
}

main();
