// Browser tests of the phone app (/app/) and the operator console (/console/), run by
// .ci/run against the real kioskd binary (target/debug/kioskd unless KIOSKD_BIN says
// otherwise) with Debian's Chromium: no browser is ever downloaded.
import { defineConfig, devices } from '@playwright/test';
import * as path from 'node:path';
import * as os from 'node:os';
import * as fs from 'node:fs';

const CI = !!process.env.CI;
export const PORT = Number(process.env.KIOSKD_BROWSER_PORT || 18080);
export const BASE = `http://127.0.0.1:${PORT}`;
export const OPS_TOKEN = 'browser-tests-ops-token-0123456789abcdef';
export const SMS_CODE = '246810';
const bin = process.env.KIOSKD_BIN || path.resolve(__dirname, '../../target/debug/kioskd');
const chromium = process.env.CHROMIUM || '/usr/bin/chromium';
// A fresh database per run; specs seed through the ops API only.
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kioskd-browser-'));
const wxDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kioskd-browser-wx-'));
// The second server (payments.mode = "wechatpay") and its WeChat Pay stand-in
// (lib/wxpay-standin.js, the throwaway test key of tests/fixtures).
export const WX_PORT = Number(process.env.KIOSKD_BROWSER_WX_PORT || 18081);
export const WX_BASE = `http://127.0.0.1:${WX_PORT}`;
export const STANDIN_PORT = Number(process.env.WXPAY_STANDIN_PORT || 18090);
export const STANDIN = `http://127.0.0.1:${STANDIN_PORT}`;
const fixtures = path.resolve(__dirname, '../fixtures');

export default defineConfig({
  testDir: './specs',
  outputDir: './test-results',
  forbidOnly: CI,
  retries: CI ? 1 : 0,
  workers: 1,
  timeout: 60_000,
  expect: { timeout: 10_000 },
  reporter: [['list'], ['html', { open: 'never', outputFolder: './report' }]],
  use: {
    baseURL: BASE,
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure',
    launchOptions: { executablePath: chromium },
  },
  projects: [
    {
      name: 'phone',
      testMatch: /specs\/phone[^/]*\.spec\.ts$/,
      use: { ...devices['Pixel 7'], launchOptions: { executablePath: chromium } },
    },
    {
      name: 'console',
      testMatch: /specs\/console[^/]*\.spec\.ts$/,
      use: { viewport: { width: 1440, height: 900 }, launchOptions: { executablePath: chromium } },
    },
  ],
  webServer: [{
    command: `${bin} serve`,
    url: `${BASE}/healthz`,
    reuseExistingServer: !CI,
    timeout: 60_000,
    stdout: 'pipe',
    stderr: 'pipe',
    env: {
      KIOSKD_SERVER__LISTEN: `127.0.0.1:${PORT}`,
      // Every console spec signs operators in from 127.0.0.1, and the sign-in budget (10
      // a minute, 5 at once) refused one once the specs held a dozen sign-ins. The
      // per-address limits are tested in tests/it/edge.rs; the integration tests turn
      // them off too.
      KIOSKD_SERVER__RATE_LIMITS: 'false',
      KIOSKD_PUBLIC__BASE_URL: BASE,
      KIOSKD_DATABASE__URL: `sqlite://${dataDir}/kioskd.db`,
      KIOSKD_FILES__DIR: `${dataDir}/files`,
      KIOSKD_IDENTITY__MODE: 'dev',
      KIOSKD_IDENTITY__COOKIE_SECRET: 'browser-tests-cookie-secret-0123456789abcdef',
      KIOSKD_OPS__TOKEN: OPS_TOKEN,
      KIOSKD_SMS__DEBUG_CODE: SMS_CODE,
      KIOSKD_SMS__RESEND_SECONDS: '2',
      KIOSKD_WS__ALLOW_UNSIGNED: 'true',
      KIOSKD_REST__SERVICE_NUMBER: '13738196887',
      // Short billing units so a test sees ticks in seconds, not minutes.
      KIOSKD_BILLING__UNIT_SECONDS: '3',
      KIOSKD_BILLING__FREE_SECONDS: '1',
      KIOSKD_BILLING__HEARTBEAT_TIMEOUT_SECONDS: '30',
      KIOSKD_LOG__FILTER: 'info,kameo=warn,sqlx=warn',
    },
  },
  {
    command: `node ${path.resolve(__dirname, 'lib/wxpay-standin.js')}`,
    url: `${STANDIN}/healthz`,
    reuseExistingServer: !CI,
    timeout: 20_000,
    stdout: 'pipe',
    stderr: 'pipe',
    env: { WXPAY_STANDIN_PORT: String(STANDIN_PORT), KIOSKD_NOTIFY_URL: `${WX_BASE}/wechat/notify` },
  },
  {
    command: `${bin} serve`,
    url: `${WX_BASE}/healthz`,
    reuseExistingServer: !CI,
    timeout: 60_000,
    stdout: 'pipe',
    stderr: 'pipe',
    env: {
      KIOSKD_SERVER__LISTEN: `127.0.0.1:${WX_PORT}`,
      KIOSKD_PUBLIC__BASE_URL: WX_BASE,
      KIOSKD_DATABASE__URL: `sqlite://${wxDataDir}/kioskd.db`,
      KIOSKD_FILES__DIR: `${wxDataDir}/files`,
      KIOSKD_IDENTITY__MODE: 'dev',
      KIOSKD_IDENTITY__COOKIE_SECRET: 'browser-tests-cookie-secret-wx-0123456789abcdef',
      KIOSKD_OPS__TOKEN: OPS_TOKEN,
      KIOSKD_SMS__DEBUG_CODE: SMS_CODE,
      KIOSKD_WS__ALLOW_UNSIGNED: 'true',
      KIOSKD_REST__SERVICE_NUMBER: '13738196887',
      KIOSKD_BILLING__UNIT_SECONDS: '3',
      KIOSKD_BILLING__FREE_SECONDS: '1',
      KIOSKD_PAYMENTS__MODE: 'wechatpay',
      KIOSKD_WECHATPAY__BASE_URL: STANDIN,
      KIOSKD_WECHATPAY__APPID: 'wx0123456789abcdef',
      KIOSKD_WECHATPAY__MCHID: '1900000109',
      KIOSKD_WECHATPAY__MERCHANT_SERIAL: '0123456789ABCDEF0123456789ABCDEF01234567',
      KIOSKD_WECHATPAY__MERCHANT_KEY_FILE: path.join(fixtures, 'wechatpay_test_key.pem'),
      KIOSKD_WECHATPAY__APIV3_KEY: '5OxGtgpZRdbnPrA8CrcE57xBbUtrT9vv',
      KIOSKD_WECHATPAY__PLATFORM_SERIAL: 'PUB_KEY_ID_TEST0000000000000000000000000001',
      KIOSKD_WECHATPAY__PLATFORM_PUBLIC_KEY_FILE: path.join(fixtures, 'wechatpay_test_pub.pem'),
      // Dev identity: the signed-in openid is the one that pays.
      KIOSKD_WECHATPAY__PLATFORM_APPID_IS_MERCHANT: 'true',
      // Only the notification settles an order during a test (no early query).
      KIOSKD_WECHATPAY__RECONCILE_AFTER_SECONDS: '600',
      KIOSKD_WECHAT_MP__APPID: 'wx0123456789abcdef',
      KIOSKD_WECHAT_MP__SECRET: 'mpsecret',
      KIOSKD_WECHAT_MP__API_BASE_URL: STANDIN,
      KIOSKD_LOG__FILTER: 'info,kameo=warn,sqlx=warn',
    },
  }]
});
