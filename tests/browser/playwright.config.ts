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
// A fresh database per run.
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kioskd-browser-'));

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
      testMatch: /phone.*\.spec\.ts/,
      use: { ...devices['Pixel 7'], launchOptions: { executablePath: chromium } },
    },
    {
      name: 'console',
      testMatch: /console.*\.spec\.ts/,
      use: { viewport: { width: 1440, height: 900 }, launchOptions: { executablePath: chromium } },
    },
  ],
  webServer: {
    command: `${bin} serve`,
    url: `${BASE}/healthz`,
    reuseExistingServer: !CI,
    timeout: 60_000,
    stdout: 'pipe',
    stderr: 'pipe',
    env: {
      KIOSKD_SERVER__LISTEN: `127.0.0.1:${PORT}`,
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
});
