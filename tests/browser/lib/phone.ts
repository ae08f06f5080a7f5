// Helpers of the phone app's browser tests: seeding through the ops API, a kiosk's
// signs of life, console-error and accessibility checks, screenshots at two sizes.
import { expect, type APIRequestContext, type Page } from '@playwright/test';
import { watchConsole, axe } from './checks';
import * as fs from 'node:fs';
import * as path from 'node:path';

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

async function ops(request: APIRequestContext, method: 'POST' | 'PUT', base: string, p: string, body: unknown) {
  const r = await request.fetch(base + p, {
    method,
    headers: { Authorization: `Bearer ${OPS_TOKEN}` },
    data: body,
  });
  return { status: r.status(), body: await r.json().catch(() => null) };
}
export const opsPost = (request: APIRequestContext, base: string, p: string, body: unknown) =>
  ops(request, 'POST', base, p, body);
export const opsPut = (request: APIRequestContext, base: string, p: string, body: unknown) =>
  ops(request, 'PUT', base, p, body);

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

/** Puts a package on sale (any device, any time) through POST /ops/pricing/packages; its id. */
export async function addPackage(request: APIRequestContext, base: string, name: string, minutes: number, priceFen: number) {
  const r = await opsPost(request, base, '/ops/pricing/packages', { name, minutes, price: priceFen, valid_days: 7 });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return r.body.id as number;
}

/**
 * Puts a device in a new zone whose plan charges `fenPerMinute` at every hour of the week
 * (no minimum charge), through the pricing ops API.
 */
export async function zonePlan(request: APIRequestContext, base: string, code: string, fenPerMinute: number) {
  let r = await opsPost(request, base, '/ops/pricing/plans', {
    name: uniqueId('plan'), week: new Array(7 * 48).fill(fenPerMinute),
  });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  const planId = r.body.id as number;
  r = await opsPost(request, base, '/ops/pricing/zones', { name: uniqueId('zone'), plan_id: planId });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  const zoneId = r.body.id as number;
  r = await opsPut(request, base, `/ops/pricing/devices/${code}`, { zone_id: zoneId, plan_id: null });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return { planId, zoneId };
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
