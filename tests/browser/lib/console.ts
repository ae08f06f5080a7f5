// Helpers of the console's browser tests: seeding through the ops API (shared token),
// operators, phone users and sessions over the API, the reference kiosk agent as a
// child process, sign-in, console-error and accessibility checks, screenshots.
import { expect, request as pwRequest, type APIRequestContext, type Page } from '@playwright/test';
import { watchConsole, axe } from './checks';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const OPS_TOKEN = 'browser-tests-ops-token-0123456789abcdef';
export const SMS_CODE = '246810';
export const BASE = `http://127.0.0.1:${Number(process.env.KIOSKD_BROWSER_PORT || 18080)}`;
export const PASSWORD = 'console-test-password-1';

const run = Date.now().toString(16).slice(-6);
let counter = 0;

/** A device code unique to this run: 8 hex pairs. */
export function uniqueCode(): string {
  counter += 1;
  const hex = ('c' + run + counter.toString(16).padStart(3, '0') + Math.floor(Math.random() * 0xffffff).toString(16).padStart(6, '0')).slice(0, 16);
  return hex.toUpperCase().match(/../g)!.join('-');
}

export function uniqueMobile(): string {
  counter += 1;
  return '137' + String(Date.now() % 100000).padStart(5, '0') + String(counter % 1000).padStart(3, '0');
}

export function uniqueName(prefix: string): string {
  counter += 1;
  return `${prefix}${run}${counter}`;
}

async function ops(method: 'GET' | 'POST' | 'PUT', p: string, body?: unknown) {
  const ctx = await pwRequest.newContext();
  try {
    const r = await ctx.fetch(BASE + p, {
      method,
      headers: { Authorization: `Bearer ${OPS_TOKEN}` },
      data: body,
    });
    return { status: r.status(), body: await r.json().catch(() => null) };
  } finally {
    await ctx.dispose();
  }
}
export const opsGet = (p: string) => ops('GET', p);
export const opsPost = (p: string, body: unknown) => ops('POST', p, body);
export const opsPut = (p: string, body: unknown) => ops('PUT', p, body);

/** Registers a device. */
export async function addDevice(code: string, name: string, location = '世纪大道 100 号 2F', charge = 5) {
  const r = await opsPost('/ops/devices', {
    device_code: code, name, charge_mode: charge, province: '上海', city: '上海', area: '浦东', location,
  });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
}

/** Creates an operator through the admin API (the shared token acts as admin). */
export async function addOperator(role: 'admin' | 'staff' | 'viewer', sites?: string[]) {
  const username = uniqueName(role);
  const r = await opsPost('/ops/operators', { username, password: PASSWORD, role, sites });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return username;
}

/** Signs the page in through the sign-in page. */
export async function signIn(page: Page, username: string, next = '/console/') {
  await page.goto('/console/login.html?next=' + encodeURIComponent(next));
  await page.getByLabel('用户名').fill(username);
  await page.getByLabel('密码').fill(PASSWORD);
  await page.getByRole('button', { name: '登录' }).click();
  await page.waitForURL((u) => !u.pathname.endsWith('/login.html'));
  await expect(page.locator('#me-name')).toContainText(username);
}

/** A phone user (own cookie jar): dev sign-in, bound mobile, `fen` recharged. */
export async function phoneUser(fen: number) {
  const ctx: APIRequestContext = await pwRequest.newContext({ baseURL: BASE, extraHTTPHeaders: { Origin: BASE, 'sec-fetch-site': 'same-origin' } });
  const openid = uniqueName('o');
  const nickname = uniqueName('玩家');
  const mobile = uniqueMobile();
  let r = await ctx.get(`/dev/login?openid=${openid}&nickname=${encodeURIComponent(nickname)}`);
  expect((await r.json()).success).toBe(true);
  r = await ctx.post('/wechat/login', { data: { mobile, code: SMS_CODE } });
  const v = await r.json();
  expect(v.success, JSON.stringify(v)).toBe(true);
  if (fen > 0) {
    r = await ctx.get(`/wechat/recharge/${fen}`);
    expect((await r.json()).result, 'recharge').toBe('success');
  }
  return {
    ctx, openid, nickname, mobile, id: v.result.id as number,
    async start(code: string) {
      const s = await ctx.get(`/windows/login/${code}?from=playing`);
      const j = await s.json();
      expect(j.result, JSON.stringify(j)).toBe('success');
    },
  };
}

/** The reference kiosk agent as a child process; its log lines are kept. */
export function startAgent(code: string) {
  const bin = process.env.KIOSKD_BIN || path.resolve(__dirname, '../../../target/debug/kioskd');
  const lines: string[] = [];
  const child: ChildProcess = spawn(bin, ['agent', '--device-code', code, '--server', BASE], {
    cwd: path.resolve(__dirname, '../../..'),
    env: { ...process.env, RUST_LOG: 'info', NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const take = (b: Buffer) => b.toString().split('\n').forEach((l) => l && lines.push(l));
  child.stdout!.on('data', take);
  child.stderr!.on('data', take);
  return {
    lines,
    /** Waits until a log line contains `text`. */
    async saw(text: string, timeout = 15_000) {
      await expect.poll(() => lines.some((l) => l.includes(text)), { timeout, message: `agent log has "${text}":\n${lines.join('\n')}` }).toBe(true);
    },
    stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
    },
  };
}

export { watchConsole, axe };

const shotDir = path.resolve(__dirname, '../test-results/screenshots');

/** Screenshots at the desktop size (the project's, 1440×900) and a phone size. */
export async function screenshots(page: Page, name: string) {
  fs.mkdirSync(shotDir, { recursive: true });
  const vp = page.viewportSize();
  await page.screenshot({ path: path.join(shotDir, `${name}-desktop.png`), scale: 'css' });
  await page.setViewportSize({ width: 412, height: 915 });
  await page.screenshot({ path: path.join(shotDir, `${name}-phone.png`), fullPage: true, scale: 'css' });
  if (vp) await page.setViewportSize(vp);
}

export async function checkPage(page: Page, name: string) {
  await axe(page, name);
  await screenshots(page, name);
}
