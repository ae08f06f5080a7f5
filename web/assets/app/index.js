// The QR landing (/app/?device_code=<code>): the kiosk's name, location, the price in
// force now for the caller (plan, zone, member discount), status, how long the balance
// and packages last there (the server's count, the one the kiosk shows as minutes
// left), and the start button. Without a device: the home page.
import {
  $, appConfig, duration, get, me, messageFor, param, setUpScan, show, signInUrl, text,
  START_MESSAGES, yuan,
} from './common.js';

const STATUS = { free: '空闲', busy: '使用中', lock: '已锁定', maintain: '维护中' };

async function main() {
  const code = param('device_code');
  const here = location.pathname + location.search;
  const [cfg, who] = await Promise.all([appConfig(), me()]);
  show('#loading', false);
  setUpScan($('#scan'));

  if (who.state === 'ok') {
    // Already playing? Unpaid orders?
    const [st, orders] = await Promise.all([
      get('/windows/online/status'),
      get('/wechat/orders?page=1&size=1'),
    ]);
    if (st.success) show('#playing');
    if (orders.success && orders.result.data.length && !orders.result.data[0].paid) show('#unpaid');
  }

  if (!code) {
    show('#home');
    if (who.state === 'anonymous') {
      $('#signin').href = signInUrl('/app/');
      text('#signin', '登录');
      show('#signin');
    } else if (who.state === 'unbound') {
      $('#bind').href = signInUrl('/app/');
      text('#bind', '绑定手机号');
      show('#bind');
    } else if (who.state === 'ok') {
      text('#home-text', '余额 ' + yuan(who.user.balance_account) + '。请扫描设备屏幕上的二维码开始使用。');
    }
    return;
  }

  // Unlimited, as the server counts it (`minutes_left`).
  const UNLIMITED = 1000000;
  const d = await get('/wechat/app/device/' + encodeURIComponent(code));
  if (!d.success) {
    text('#device-error', messageFor(d, START_MESSAGES));
    show('#device-error');
    return;
  }
  const dev = d.result;
  document.title = dev.name + ' · 扫码上机';
  text('#title', dev.name);
  text('#subtitle', '设备编号 ' + dev.device_code);
  text('#device-name', dev.name);
  text('#device-location', [dev.province, dev.city, dev.area, dev.location].filter(Boolean).join(' ') || '—');
  const unit = cfg.unit_seconds === 60 ? '分钟' : cfg.unit_seconds + '秒';
  let price = yuan(dev.price_now) + ' / ' + unit;
  if (dev.discount_pct > 0) price += '（会员 ' + (100 - dev.discount_pct) / 10 + ' 折）';
  if (dev.min_charge > 0) price += '，最低消费 ' + yuan(dev.min_charge);
  text('#device-price', price);
  text('#device-billing', dev.billing_mode === 'postpaid' ? '后付费（结束后在手机上支付）' : '预付费（从余额扣除）');
  const st = dev.online ? dev.status : 'offline';
  const el = $('#device-status');
  text(el, dev.online ? STATUS[dev.status] || dev.status : '离线');
  el.className = 'app-status app-status_' + st;
  show('#device');

  if (who.state === 'anonymous') {
    $('#signin').href = signInUrl(here);
    show('#signin');
    return;
  }
  if (who.state === 'unbound') {
    $('#bind').href = signInUrl(here);
    show('#bind');
    return;
  }
  if (who.state === 'blocked') {
    text('#device-error', who.message);
    show('#device-error');
    return;
  }
  const bal = who.user.balance_account;
  text('#my-balance', yuan(bal));
  show('#row-balance');
  if (dev.billing_mode === 'prepaid') {
    // Units the balance and packages buy at the upcoming prices, packages first.
    const units = dev.minutes;
    text('#my-minutes', units >= UNLIMITED ? '不限' : '余额可用约 ' + duration(units * cfg.unit_seconds));
    show('#row-buys');
    const pk = dev.packages || [];
    if (pk.length) {
      text('#my-packages', pk.map((p) => p.name + ' 剩 ' + duration(p.seconds_left)).join('；') +
        (dev.package_now ? '（现在开始将先用套餐）' : '（当前时段不可用）'));
      show('#row-packages');
    }
    $('#recharge').href = '/app/me?recharge=1&back=' + encodeURIComponent(here);
    show('#recharge');
    $('#buy-package').href = '/app/me?back=' + encodeURIComponent(here) + '#packages-box';
    show('#buy-package');
  }
  const start = $('#start');
  show(start);
  if (!dev.available) {
    text('#start-error-text', dev.online ? START_MESSAGES['-9'] : '设备离线，请稍后再试或换一台设备');
    show('#start-error');
  }
  start.addEventListener('click', async () => {
    start.disabled = true;
    show('#start-error', false);
    text(start, '正在开始…');
    // Same-origin fetch: the server refuses cross-site starts.
    const r = await get('/windows/login/' + encodeURIComponent(dev.device_code) + '?from=playing');
    if (r.success) {
      location.href = '/app/live';
      return;
    }
    start.disabled = false;
    text(start, '开始使用');
    text('#start-error-text', messageFor(r, START_MESSAGES));
    const link = $('#start-error-link');
    link.hidden = true;
    if (r.result === -5) {
      link.href = '/app/me?recharge=1&back=' + encodeURIComponent(here);
      text(link, '去充值');
      link.hidden = false;
    } else if (r.result === -18) {
      link.href = '/app/orders';
      text(link, '去支付订单');
      link.hidden = false;
    } else if (r.result === -8) {
      link.href = '/app/live';
      text(link, '查看当前会话');
      link.hidden = false;
    } else if (r.result === -1) {
      link.href = signInUrl(here);
      text(link, '去登录');
      link.hidden = false;
    }
    show('#start-error');
  });
}

main();
