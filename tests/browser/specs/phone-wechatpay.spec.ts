// The WeChat side: inside WeChat (MicroMessenger UA, stubbed WeixinJSBridge and wx), a
// recharge goes through JSAPI pay on a kioskd in payments.mode = "wechatpay" whose WeChat
// Pay is lib/wxpay-standin.js. The bridge's "ok" is only a hint: the page keeps waiting
// until WeChat Pay's signed notification has reached kioskd and settled the order. Also
// wx.config with the server's signature and the scan button.
import { test, expect, devices } from '@playwright/test';
import { addDevice, checkPage, kioskAlive, kioskCheck, signedInUser, uniqueCode, watchConsole } from '../lib/phone';

const WX_BASE = `http://127.0.0.1:${Number(process.env.KIOSKD_BROWSER_WX_PORT || 18081)}`;
const STANDIN = `http://127.0.0.1:${Number(process.env.WXPAY_STANDIN_PORT || 18090)}`;

test.use({
  baseURL: WX_BASE,
  userAgent: devices['Pixel 7'].userAgent + ' MicroMessenger/8.0.50.2701(0x28003233) NetType/WIFI Language/zh_CN',
});

test.beforeEach(async ({ page }) => {
  // The bridge appears a little after load, announced by WeixinJSBridgeReady, as in
  // WeChat; invoke records the parameters and answers with window.__payResult.
  await page.addInitScript(() => {
    const w = window as any;
    w.__payCalls = [];
    w.__payResult = 'get_brand_wcpay_request:ok';
    setTimeout(() => {
      w.WeixinJSBridge = {
        invoke(name: string, params: any, cb: (r: any) => void) {
          w.__payCalls.push({ name, params });
          setTimeout(() => cb({ err_msg: w.__payResult }), 50);
        },
      };
      document.dispatchEvent(new Event('WeixinJSBridgeReady'));
    }, 300);
    w.wx = {
      config(c: any) {
        w.__wxConfig = c;
      },
      ready(f: () => void) {
        setTimeout(f, 0);
      },
      error() {},
      scanQRCode(o: any) {
        o.success({ resultStr: w.__scanResult });
      },
    };
  });
});

test('JSAPI recharge waits for the server, not the bridge', async ({ page }) => {
  const consoleErrors = watchConsole(page);
  await signedInUser(page, WX_BASE);
  await page.goto('/app/me');
  await expect(page.locator('#balance')).toHaveText('¥0.00');

  // Cancelled in WeChat: nothing credited, a clear message.
  await page.evaluate(() => ((window as any).__payResult = 'get_brand_wcpay_request:cancel'));
  await page.locator('#pay').click();
  await expect(page.locator('#error')).toHaveText('支付已取消');

  // Paid in WeChat: the bridge says ok, but the page waits for the server's word.
  await page.evaluate(() => ((window as any).__payResult = 'get_brand_wcpay_request:ok'));
  await page.getByRole('button', { name: '¥50', exact: true }).click();
  await page.locator('#pay').click();
  await expect.poll(() => page.evaluate(() => (window as any).__payCalls.length)).toBe(2);
  const call = await page.evaluate(() => (window as any).__payCalls[1]);
  expect(call.name).toBe('getBrandWCPayRequest');
  expect(call.params.appId).toBe('wx0123456789abcdef');
  expect(call.params.signType).toBe('RSA');
  expect(call.params.paySign).toMatch(/^[A-Za-z0-9+/=]{100,}$/);
  const m = /^prepay_id=wx_prepay_(\w+)$/.exec(call.params.package);
  expect(m, call.params.package).not.toBeNull();
  const outTradeNo = m![1];
  await expect(page.locator('#pay-state')).toHaveText('正在确认支付结果…');
  // The server has not been told yet: still pending, balance unchanged.
  const st = await (await page.request.get(`${WX_BASE}/wechat/app/recharge/${outTradeNo}`)).json();
  expect(st.result.status).toBe('pending');
  await expect(page.locator('#balance')).toHaveText('¥0.00');
  await expect(page.locator('#pay-state')).toHaveText('正在确认支付结果…');
  await checkPage(page, 'phone-wechatpay-waiting');

  // WeChat Pay's signed notification settles it; the page follows.
  const r = await page.request.post(`${STANDIN}/_test/pay`, { data: { out_trade_no: outTradeNo } });
  const v = await r.json();
  expect(v.kioskd_status, JSON.stringify(v)).toBe(204);
  await expect(page.locator('#notice')).toHaveText('充值成功：¥50.00');
  await expect(page.locator('#balance')).toHaveText('¥50.00');
  await expect(page.locator('#pay-state')).toHaveText('');
  consoleErrors.assertNone();
});

test('wx.config and the scan button inside WeChat', async ({ page, request }) => {
  const consoleErrors = watchConsole(page);
  const code = uniqueCode();
  await addDevice(request, WX_BASE, code, { name: '扫码测试机', charge_mode: 10 });
  await signedInUser(page, WX_BASE);
  await page.goto('/app/');
  const scan = page.getByRole('button', { name: '扫一扫' });
  await expect(scan).toBeVisible();
  const cfg = await page.evaluate(() => (window as any).__wxConfig);
  expect(cfg.appId).toBe('wx0123456789abcdef');
  expect(cfg.signature).toMatch(/^[0-9a-f]{40}$/);
  expect(cfg.jsApiList).toContain('scanQRCode');
  await page.evaluate((u) => ((window as any).__scanResult = u), `${WX_BASE}/windows/login/${code}`);
  await scan.click();
  await expect(page).toHaveURL(new RegExp(`/app/\\?device_code=${code}`));
  await expect(page.locator('#device-name')).toHaveText('扫码测试机');
  consoleErrors.assertNone();
});

test('a postpaid order paid through WeChat Pay is paid when the notification says so', async ({ page, request }) => {
  const consoleErrors = watchConsole(page);
  const code = uniqueCode();
  const clientId = String(100000 + Math.floor(Math.random() * 800000));
  await addDevice(request, WX_BASE, code, { name: 'VR 3号', charge_mode: 132, billing_mode: 'postpaid', client_id: clientId });
  const kiosk = kioskAlive(request, WX_BASE, code);
  try {
    await signedInUser(page, WX_BASE);
    await kioskCheck(request, WX_BASE, code);
    await page.goto(`/app/?device_code=${code}`);
    await page.getByRole('button', { name: '开始使用' }).click();
    await expect(page.locator('#running')).toBeVisible();
    // Past the free start: a second unit has begun.
    await expect(page.locator('#cost')).toHaveText('¥2.64', { timeout: 8000 });
    await page.getByRole('button', { name: '结束使用' }).click();
    await expect(page.locator('#order-box')).toBeVisible();
    await page.getByRole('link', { name: '去支付' }).click();
    await expect(page.locator('#blocked')).toBeVisible();
    await page.locator('.app-order_unpaid button').click();
    await expect.poll(() => page.evaluate(() => (window as any).__payCalls.length)).toBe(1);
    const call = await page.evaluate(() => (window as any).__payCalls[0]);
    const outTradeNo = /^prepay_id=wx_prepay_(\w+)$/.exec(call.params.package)![1];
    // The bridge said ok; the order stays unpaid (and the user blocked) until WeChat Pay's word.
    await expect(page.locator('.app-order_unpaid button')).toHaveText('正在确认支付结果…');
    await expect(page.locator('.app-order_unpaid')).toHaveCount(1);
    const r = await page.request.post(`${STANDIN}/_test/pay`, { data: { out_trade_no: outTradeNo } });
    expect((await r.json()).kioskd_status).toBe(204);
    await expect(page.locator('#notice')).toContainText('支付成功');
    await expect(page.locator('.app-order_unpaid')).toHaveCount(0);
    await expect(page.locator('#blocked')).toBeHidden();
  } finally {
    await kiosk.stop();
  }
  consoleErrors.assertNone();
});

test('outside WeChat, a wechatpay server asks to open the page in WeChat', async ({ browser }) => {
  const ctx = await browser.newContext({ ...devices['Pixel 7'], baseURL: WX_BASE });
  const page = await ctx.newPage();
  const consoleErrors = watchConsole(page);
  await signedInUser(page, WX_BASE);
  await page.goto('/app/me');
  const ordered = async () => (await (await page.request.get(`${STANDIN}/_test/orders`)).json()).length;
  const before = await ordered();
  await page.locator('#pay').click();
  await expect(page.locator('#error')).toHaveText('请在微信中打开本页面完成充值');
  // No order was created at WeChat Pay.
  expect(await ordered()).toBe(before);
  consoleErrors.assertNone();
  await ctx.close();
});
