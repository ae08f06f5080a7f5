// The phone app against the real kioskd: QR landing → dev sign-in → bind mobile →
// recharge → start → live billing ticks → end → summary and history; balance running
// out; a postpaid order paid from the phone.
import { test, expect } from '@playwright/test';
import {
  addDevice, checkPage, kioskAlive, kioskCheck, SAME_ORIGIN, signedInUser, SMS_CODE, uniqueCode,
  uniqueId, uniqueMobile, watchConsole,
} from '../lib/phone';

const BASE = `http://127.0.0.1:${Number(process.env.KIOSKD_BROWSER_PORT || 18080)}`;

test('QR landing, sign-in, bind, recharge, play, end, history', async ({ page, request }) => {
  const consoleErrors = watchConsole(page);
  const code = uniqueCode();
  await addDevice(request, BASE, code, { name: 'VR 体验机 A1', charge_mode: 5 });
  const kiosk = kioskAlive(request, BASE, code);
  try {
    // The WeChat camera opens the QR code's URL: a plain GET lands on the app.
    await page.goto(`/windows/login/${code}`);
    await expect(page).toHaveURL(new RegExp(`/app/\\?device_code=${code}`));
    await expect(page.locator('#device-name')).toHaveText('VR 体验机 A1');
    await expect(page.locator('#device-price')).toContainText('¥0.05');
    await expect(page.locator('#device-location')).toContainText('世纪大道');
    await expect(page.locator('#device-status')).toHaveText('空闲');
    await checkPage(page, 'phone-landing-anonymous');

    // Sign in (dev identity), with a hostile nickname.
    await page.getByRole('link', { name: '登录后开始使用' }).click();
    await expect(page).toHaveURL(/\/app\/login\?back=/);
    await checkPage(page, 'phone-login-dev');
    const nick = '<img src=x onerror="window.__xss=1">昵称';
    await page.getByLabel('openid').fill(uniqueId('web'));
    await page.getByLabel('昵称').fill(nick);
    await page.getByRole('button', { name: '登录' }).click();

    // Bind the mobile: bad input first, then the code.
    await expect(page.locator('#bind')).toBeVisible();
    await expect(page.locator('#nick')).toHaveText(nick);
    await page.getByLabel('手机号').fill('12345');
    await page.getByRole('button', { name: '获取验证码' }).click();
    await expect(page.locator('#error')).toContainText('11位手机号');
    await page.getByLabel('手机号').fill(uniqueMobile());
    await page.getByRole('button', { name: '获取验证码' }).click();
    await expect(page.locator('#send')).toHaveText(/秒后重发/);
    await expect(page.locator('#send')).toBeDisabled();
    await page.getByLabel('验证码').fill('000000');
    await page.getByRole('button', { name: '绑定' }).click();
    await expect(page.locator('#error')).toContainText('验证码错误');
    await checkPage(page, 'phone-bind');
    await page.getByLabel('验证码').fill(SMS_CODE);
    await page.getByRole('button', { name: '绑定' }).click();

    // Back on the landing: balance 0, the start is refused with a recharge shortcut.
    await expect(page).toHaveURL(new RegExp(`/app/\\?device_code=${code}`));
    await expect(page.locator('#my-balance')).toHaveText('¥0.00');
    await page.getByRole('button', { name: '开始使用' }).click();
    await expect(page.locator('#start-error')).toContainText('余额不足');
    await page.locator('#start-error-link').click();

    // Recharge: a custom amount, then a preset.
    await expect(page).toHaveURL(/\/app\/me\?recharge=1/);
    await page.getByLabel('其他金额').fill('1.5');
    await expect(page.locator('#pay')).toHaveText('充值 ¥1.50');
    await page.locator('#pay').click();
    await expect(page.locator('#notice')).toHaveText('充值成功：¥1.50');
    await page.getByRole('button', { name: '¥20', exact: true }).click();
    await page.locator('#pay').click();
    await expect(page.locator('#balance')).toHaveText('¥21.50');
    await checkPage(page, 'phone-me');
    await page.getByRole('link', { name: '返回设备页面' }).click();

    // Start: the live page.
    // 2150 fen at 5 fen per 3-second unit: 430 units.
    await expect(page.locator('#my-minutes')).toHaveText('余额可用约 21分钟30秒');
    await checkPage(page, 'phone-landing');
    await page.getByRole('button', { name: '开始使用' }).click();
    await expect(page).toHaveURL(/\/app\/live$/);
    await expect(page.locator('#running')).toBeVisible();
    await expect(page.locator('#cost')).toHaveText('¥0.05');
    // A billing tick (3-second units) moves cost and balance.
    await expect(page.locator('#cost')).toHaveText('¥0.10', { timeout: 8000 });
    await expect(page.locator('#balance')).toHaveText('¥21.40');
    await expect(page.locator('#elapsed')).not.toHaveText('00:00');
    await checkPage(page, 'phone-live');

    // End from the phone: the summary.
    await page.getByRole('button', { name: '结束使用' }).click();
    await expect(page.locator('#ended')).toBeVisible();
    await expect(page.locator('#reason')).toHaveText('已在手机上结束');
    await expect(page.locator('#sum-cost')).toHaveText(/¥0\.\d\d/);
    await expect(page.locator('#sum-refund')).toHaveText(/¥0\.\d\d/);
    await checkPage(page, 'phone-ended');

    // History: the expense and both recharges.
    await page.getByRole('link', { name: '查看消费记录' }).click();
    await expect(page.locator('#list li')).toHaveCount(1);
    await expect(page.locator('#list')).toContainText('浦东');
    await page.getByRole('tab', { name: '充值记录' }).click();
    await expect(page.locator('#list li')).toHaveCount(2);
    await expect(page.locator('#list')).toContainText('+¥20.00');
    await expect(page.locator('#page-info')).toContainText('共 2 条');
    expect(await page.evaluate(() => (window as any).__xss)).toBeUndefined();
  } finally {
    await kiosk.stop();
  }
  consoleErrors.assertNone();
});

test('history pages through many recharges', async ({ page }) => {
  const consoleErrors = watchConsole(page);
  await signedInUser(page, BASE);
  for (let i = 1; i <= 12; i++) {
    const r = await page.request.get(`${BASE}/wechat/recharge/${i}`, { headers: SAME_ORIGIN });
    expect((await r.json()).result).toBe('success');
  }
  await page.goto('/app/me');
  await page.getByRole('tab', { name: '充值记录' }).click();
  await expect(page.locator('#list li')).toHaveCount(10);
  await expect(page.locator('#page-info')).toHaveText('第 1 / 2 页，共 12 条');
  await expect(page.getByRole('button', { name: '上一页' })).toBeDisabled();
  await page.getByRole('button', { name: '下一页' }).click();
  await expect(page.locator('#list li')).toHaveCount(2);
  await expect(page.getByRole('button', { name: '下一页' })).toBeDisabled();
  consoleErrors.assertNone();
});

test('balance running out ends the session and the page says why', async ({ page, request }) => {
  const consoleErrors = watchConsole(page);
  const code = uniqueCode();
  await addDevice(request, BASE, code, { charge_mode: 100 });
  const kiosk = kioskAlive(request, BASE, code);
  try {
    await signedInUser(page, BASE, 200);
    await kioskCheck(request, BASE, code);
    await page.goto(`/app/?device_code=${code}`);
    await expect(page.locator('#my-minutes')).toHaveText('余额可用约 6秒');
    await page.getByRole('button', { name: '开始使用' }).click();
    await expect(page).toHaveURL(/\/app\/live$/);
    // One unit left after the first: the warning with a recharge shortcut.
    await expect(page.locator('#low')).toBeVisible();
    await expect(page.locator('#low-minutes')).toHaveText('3秒');
    await expect(page.getByRole('link', { name: '立即充值' })).toBeVisible();
    await checkPage(page, 'phone-live-low');
    // Two units of 3 s, then nothing covers the third.
    await expect(page.locator('#ended')).toBeVisible({ timeout: 15000 });
    await expect(page.locator('#reason')).toContainText('余额已用完');
    await expect(page.locator('#sum-cost')).toHaveText('¥2.00');
    await expect(page.locator('#sum-balance')).toHaveText('¥0.00');
    await checkPage(page, 'phone-ended-balance');
  } finally {
    await kiosk.stop();
  }
  consoleErrors.assertNone();
});

test('a postpaid order is paid from the phone', async ({ page, request }) => {
  const consoleErrors = watchConsole(page);
  const code = uniqueCode();
  const clientId = String(100000 + Math.floor(Math.random() * 800000));
  await addDevice(request, BASE, code, { name: 'VR 2号', charge_mode: 132, billing_mode: 'postpaid', client_id: clientId });
  const kiosk = kioskAlive(request, BASE, code);
  try {
    await signedInUser(page, BASE);
    await kioskCheck(request, BASE, code);
    await page.goto(`/app/?device_code=${code}`);
    await expect(page.locator('#device-billing')).toContainText('后付费');
    await page.getByRole('button', { name: '开始使用' }).click();
    await expect(page).toHaveURL(/\/app\/live$/);
    await expect(page.locator('#minutes-left')).toHaveText('后付费');
    // Past the free start and into the second unit.
    await expect(page.locator('#cost')).toHaveText('¥2.64', { timeout: 8000 });
    await page.getByRole('button', { name: '结束使用' }).click();
    await expect(page.locator('#ended')).toBeVisible();
    await expect(page.locator('#order-box')).toBeVisible();
    await expect(page.locator('#sum-refund-row')).toBeHidden();

    // Blocked until paid: the landing refuses with a link to the order.
    await page.goto(`/app/?device_code=${code}`);
    await expect(page.locator('#unpaid')).toBeVisible();
    await page.getByRole('button', { name: '开始使用' }).click();
    await expect(page.locator('#start-error')).toContainText('未支付的订单');
    await page.getByRole('link', { name: '去支付订单' }).click();

    await expect(page).toHaveURL(/\/app\/orders$/);
    await expect(page.locator('#blocked')).toBeVisible();
    await expect(page.locator('.app-order_unpaid')).toHaveCount(1);
    await expect(page.locator('.app-order_unpaid')).toContainText(code);
    await checkPage(page, 'phone-orders-unpaid');
    await page.locator('.app-order_unpaid button').click();
    await expect(page.locator('#notice')).toContainText('支付成功');
    await expect(page.locator('#blocked')).toBeHidden();
    await expect(page.locator('.app-order_unpaid')).toHaveCount(0);
    await expect(page.locator('.app-order')).toContainText('已支付');
    await checkPage(page, 'phone-orders-paid');
  } finally {
    await kiosk.stop();
  }
  consoleErrors.assertNone();
});

test('home and empty pages', async ({ page, request }) => {
  const consoleErrors = watchConsole(page);
  // A device name is shown as text, never as markup.
  const code = uniqueCode();
  const hostile = '<img src=x onerror="window.__xss=2">座位<b>1</b>';
  await addDevice(request, BASE, code, { name: hostile });
  await page.goto(`/app/?device_code=${code}`);
  await expect(page.locator('#device-name')).toHaveText(hostile);
  await expect(page.locator('#title')).toHaveText(hostile);
  expect(await page.evaluate(() => (window as any).__xss)).toBeUndefined();
  await page.goto('/app/');
  await expect(page.getByRole('link', { name: '登录', exact: true })).toBeVisible();
  await checkPage(page, 'phone-home-anonymous');
  await page.goto('/app/?device_code=00-00-00-00-00-01');
  await expect(page.locator('#device-error')).toContainText('设备不存在');
  await signedInUser(page, BASE);
  await page.goto('/app/live');
  await expect(page.locator('#idle')).toBeVisible();
  await checkPage(page, 'phone-live-idle');
  await page.goto('/app/orders');
  await expect(page.locator('#orders')).toContainText('暂无订单');
  await page.goto('/app/');
  await expect(page.locator('#home-text')).toContainText('余额 ¥0.00');
  await checkPage(page, 'phone-home');
  consoleErrors.assertNone();
});

test('the kiosk ends the session: the live page says so', async ({ page, request }) => {
  const consoleErrors = watchConsole(page);
  const code = uniqueCode();
  await addDevice(request, BASE, code, { charge_mode: 5 });
  const kiosk = kioskAlive(request, BASE, code);
  try {
    await signedInUser(page, BASE, 500);
    await kioskCheck(request, BASE, code);
    await page.goto(`/app/?device_code=${code}`);
    await page.getByRole('button', { name: '开始使用' }).click();
    await expect(page.locator('#running')).toBeVisible();
    // The user leaves at the kiosk (dialect A logout with the session token).
    const check = await (await request.post(`${BASE}/windows/check`, { data: { device_code: code } })).json();
    const token = check.result.token;
    expect(token).toBeTruthy();
    const out = await (await request.post(`${BASE}/windows/logout`, { data: { token } })).json();
    expect(out.result.status).toBe(1);
    await expect(page.locator('#reason')).toHaveText('已在设备上退出');
    await expect(page.locator('#end-box')).toBeHidden();
  } finally {
    await kiosk.stop();
  }
  consoleErrors.assertNone();
});

test('the live page reconnects by itself after the socket drops', async ({ page, request }) => {
  const consoleErrors = watchConsole(page);
  const code = uniqueCode();
  await addDevice(request, BASE, code, { charge_mode: 5 });
  const kiosk = kioskAlive(request, BASE, code);
  let connections = 0;
  // The real /ws/user behind a pass-through; the first connection is cut after its
  // snapshot, as a network drop would.
  await page.routeWebSocket(/\/ws\/user$/, (ws) => {
    connections += 1;
    const server = ws.connectToServer();
    if (connections === 1) {
      server.onMessage((m) => {
        ws.send(m);
        setTimeout(() => ws.close({ code: 1006 }), 300);
      });
    }
  });
  try {
    await signedInUser(page, BASE, 500);
    await kioskCheck(request, BASE, code);
    await page.goto(`/app/?device_code=${code}`);
    await page.getByRole('button', { name: '开始使用' }).click();
    await expect(page.locator('#running')).toBeVisible();
    await expect.poll(() => connections).toBeGreaterThanOrEqual(2);
    // Back on a fresh snapshot: billing ticks arrive again and the drop notice is gone.
    await expect(page.locator('#cost')).toHaveText('¥0.10', { timeout: 8000 });
    await expect(page.locator('#conn')).toHaveText('');
    await page.getByRole('button', { name: '结束使用' }).click();
    await expect(page.locator('#reason')).toHaveText('已在手机上结束');
  } finally {
    await kiosk.stop();
  }
  consoleErrors.assertNone();
});
