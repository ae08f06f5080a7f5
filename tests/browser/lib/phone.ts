// Helpers of the phone app's browser tests: seeding through the ops API, a kiosk's
// signs of life, console-error and accessibility checks, screenshots at two sizes.
import { expect, type APIRequestContext, type Page } from '@playwright/test';
import { watchConsole, axe } from './checks';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';

/** What a page of kioskd's own origin sends: state-changing phone calls refuse anything else. */
export const SAME_ORIGIN = { 'sec-fetch-site': 'same-origin' };

export const OPS_TOKEN = 'browser-tests-ops-token-0123456789abcdef';
export const SMS_CODE = '246810';

const run = Date.now().toString(16).slice(-6);
let counter = 0;

/** A device code unique to this run and call: 8 hex pairs. */
export function uniqueCode(): string {
  counter += 1;
  const hex = (run + counter.toString(16).padStart(4, '0') + Math.floor(Math.random() * 0xffffff).toString(16).padStart(6, '0')).slice(0, 16);
  return hex.toUpperCase().match(/../g)!.join('-');
}

/** A mobile number unique to this run and call. */
export function uniqueMobile(): string {
  counter += 1;
  return '139' + String(Date.now() % 100000).padStart(5, '0') + String(counter % 1000).padStart(3, '0');
}

export function uniqueId(prefix: string): string {
  counter += 1;
  return `${prefix}_${run}_${counter}`;
}

export async function opsPost(request: APIRequestContext, base: string, p: string, body: unknown) {
  const r = await request.post(base + p, {
    headers: { Authorization: `Bearer ${OPS_TOKEN}` },
    data: body,
  });
  return { status: r.status(), body: await r.json().catch(() => null) };
}

export interface DeviceOpts {
  name?: string;
  charge_mode?: number;
  billing_mode?: 'prepaid' | 'postpaid';
  client_id?: string;
}

/** Registers a device through POST /ops/devices. */
export async function addDevice(request: APIRequestContext, base: string, code: string, o: DeviceOpts = {}) {
  const r = await opsPost(request, base, '/ops/devices', {
    device_code: code,
    name: o.name || '体验机 A1',
    charge_mode: o.charge_mode ?? 5,
    billing_mode: o.billing_mode || 'prepaid',
    client_id: o.client_id,
    province: '上海',
    city: '上海',
    area: '浦东',
    location: '世纪大道 100 号 2F',
  });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
}

/**
 * A kiosk's signs of life (dialect A check, and keepalive while in session) every
 * second until stopped: keeps the device online.
 */
export function kioskAlive(request: APIRequestContext, base: string, code: string) {
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const r = await request.post(base + '/windows/check', { data: { device_code: code } }).catch(() => null);
      const v = r ? await r.json().catch(() => null) : null;
      const token = v && v.result && v.result.token;
      if (token) {
        await request.post(base + '/windows/keepalive', { data: { token, device_code: code } }).catch(() => null);
      }
      await new Promise((res) => setTimeout(res, 1000));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

/** One kiosk check: the device is heard from now. */
export async function kioskCheck(request: APIRequestContext, base: string, code: string) {
  const r = await request.post(base + '/windows/check', { data: { device_code: code } });
  expect(r.status()).toBe(200);
}

export { watchConsole, axe };

const shotDir = path.resolve(__dirname, '../test-results/screenshots');

/** Screenshots at the phone size (the project's) and a desktop size. */
export async function screenshots(page: Page, name: string) {
  fs.mkdirSync(shotDir, { recursive: true });
  await page.screenshot({ path: path.join(shotDir, `${name}-phone.png`), scale: 'css' });
  const vp = page.viewportSize();
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.screenshot({ path: path.join(shotDir, `${name}-desktop.png`), fullPage: true, scale: 'css' });
  if (vp) await page.setViewportSize(vp);
}

/** Every page check at once: axe, then screenshots. */
export async function checkPage(page: Page, name: string) {
  await axe(page, name);
  await screenshots(page, name);
}

/** Signs a page's context in (dev identity) and binds a mobile, through the API. */
export async function signedInUser(page: Page, base: string, fen = 0) {
  const openid = uniqueId('u');
  const mobile = uniqueMobile();
  let r = await page.request.get(`${base}/dev/login?openid=${openid}&nickname=${encodeURIComponent('测试用户')}`);
  expect((await r.json()).success).toBe(true);
  r = await page.request.post(`${base}/wechat/login`, { data: { mobile, code: SMS_CODE }, headers: SAME_ORIGIN });
  const v = await r.json();
  expect(v.success, JSON.stringify(v)).toBe(true);
  if (fen > 0) {
    r = await page.request.get(`${base}/wechat/recharge/${fen}`, { headers: SAME_ORIGIN });
    expect((await r.json()).result).toBe('success');
  }
  return { openid, mobile, id: v.result.id as number };
}

/**
 * Runs SQL on the phone server's SQLite database (the folder playwright.config.ts made).
 * For what the phone tests need and no API offers yet (packages for sale: the ops API
 * for them is another branch's work); the server reads packages from the database on
 * every request, so nothing needs reloading.
 */
export function sqlite(sql: string): string {
  const dir = process.env.KIOSKD_BROWSER_DATA_DIR;
  if (!dir) throw new Error('KIOSKD_BROWSER_DATA_DIR is not set (playwright.config.ts sets it)');
  return execFileSync('sqlite3', ['-cmd', '.timeout 5000', path.join(dir, 'kioskd.db'), sql], { encoding: 'utf8' }).trim();
}
