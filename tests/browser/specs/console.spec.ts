// The operator console in a real browser against the real kioskd: a staff member watches
// a kiosk agent's session live and locks/unlocks it, an admin adjusts a balance (audited
// with the name), a viewer is refused, reports agree with the ledger and export as CSV,
// and every page passes axe without console errors (screenshots at two sizes).
import { test, expect } from '@playwright/test';
import * as fs from 'node:fs';
import {
  addDevice, addOperator, axe, checkPage, opsGet, opsPost, phoneUser, signIn, startAgent,
  uniqueCode, watchConsole,
} from '../lib/console';

test('staff sees an agent session live, locks it (the agent locks) and unlocks it', async ({ page }) => {
  const con = watchConsole(page);
  const code = uniqueCode();
  const name = '体验机 ' + code.slice(-5);
  await addDevice(code, name);
  const agent = startAgent(code);
  try {
    await agent.saw('connected');
    const staff = await addOperator('staff');
    await signIn(page, staff);
    const tile = page.locator(`article.tile[data-code="${code}"]`);
    await expect(tile).toHaveAttribute('data-status', 'free');
    await expect(page.locator('#live-text')).toHaveText('实时连接');

    const phone = await phoneUser(1000);
    await phone.start(code);
    // Live over /ws/ops: busy, the user, cost and time left.
    await expect(tile).toHaveAttribute('data-status', 'busy');
    await expect(tile).toContainText(phone.nickname);
    await expect(tile).toContainText('费用：¥0.');
    await expect(tile).toContainText('剩余：');
    await checkPage(page, 'console-fleet');

    // Lock with a reason: the dialog follows the command to the kiosk's acknowledgement.
    await tile.getByRole('button', { name: '锁定 ' + name }).click();
    const dlg = page.getByRole('dialog');
    await dlg.getByLabel('原因（记入审计日志）').fill('浏览器测试：锁定');
    await axe(page, 'console-action-dialog');
    await dlg.getByRole('button', { name: '锁定' }).click();
    await expect(dlg.getByRole('status')).toContainText('会话 #');
    await expect(dlg.getByRole('status')).toContainText('设备已确认', { timeout: 20_000 });
    await agent.saw('to=Locked'); // the kiosk's lock screen
    await dlg.getByRole('button', { name: '关闭' }).click();
    await expect(tile).toHaveAttribute('data-status', 'lock');
    await expect(tile).not.toContainText(phone.nickname);

    await tile.getByRole('button', { name: '解锁 ' + name }).click();
    await dlg.getByLabel('原因（记入审计日志）').fill('浏览器测试：解锁');
    await dlg.getByRole('button', { name: '解锁' }).click();
    await expect(dlg.getByRole('status')).toContainText('设备已确认', { timeout: 20_000 });
    await agent.saw('to=Standby'); // back to the standby screen
    await dlg.getByRole('button', { name: '关闭' }).click();
    await expect(tile).toHaveAttribute('data-status', 'free');

    // The device page lists the session and both commands, acknowledged.
    await tile.getByRole('link', { name }).click();
    await expect(page.locator('#device-status')).toHaveText('空闲');
    await expect(page.locator('#commands tbody tr')).toHaveCount(2);
    await expect(page.locator('#commands')).not.toContainText('待确认');
    await expect(page.locator('#sessions')).toContainText('管理员结束');
    await checkPage(page, 'console-device');

    // The audit log names the staff member and the reasons.
    await page.goto('/console/audit.html?target=' + code);
    await expect(page.locator('#log tbody tr').first()).toContainText(staff);
    await expect(page.locator('#log')).toContainText('浏览器测试：锁定');
    con.assertNone();
  } finally {
    agent.stop();
  }
});

test('an admin adjusts a balance and the audit log shows who', async ({ page }) => {
  const con = watchConsole(page);
  const admin = await addOperator('admin');
  const user = await phoneUser(500);
  await signIn(page, admin, '/console/users.html');
  await page.getByLabel('手机号、openid 或昵称').fill(user.mobile);
  await page.getByRole('button', { name: '搜索' }).click();
  await page.getByRole('link', { name: user.nickname }).click();
  await expect(page.locator('#user-balance')).toHaveText('¥5.00');
  await page.getByRole('button', { name: '调整余额' }).click();
  const dlg = page.getByRole('dialog');
  await dlg.getByLabel('金额（元，最多两位小数）').fill('12.34');
  // The reason is required.
  await dlg.getByRole('button', { name: '确认调整' }).click();
  await expect(dlg.getByRole('status')).toContainText('请填写');
  await dlg.getByLabel('原因（必填）').fill('浏览器测试：补偿');
  await dlg.getByRole('button', { name: '确认调整' }).click();
  await expect(dlg.getByRole('status')).toContainText('已调整 ¥12.34，余额 ¥17.34');
  await dlg.getByRole('button', { name: '关闭' }).click();
  await expect(page.locator('#user-balance')).toHaveText('¥17.34');
  await expect(page.locator('#ledger')).toContainText('浏览器测试：补偿');
  await checkPage(page, 'console-users');

  await page.goto('/console/audit.html?target=' + user.id);
  const row = page.locator('#log tbody tr').first();
  await expect(row).toContainText(admin);
  await expect(row).toContainText('浏览器测试：补偿');
  await expect(row).toContainText('/ops/users/{id}/adjust');
  await checkPage(page, 'console-audit');
  con.assertNone();
});

test('a viewer is refused an action and the page says so', async ({ page }) => {
  const code = uniqueCode();
  const name = '只读测试机 ' + code.slice(-5);
  await addDevice(code, name);
  const viewer = await addOperator('viewer');
  await signIn(page, viewer);
  const tile = page.locator(`article.tile[data-code="${code}"]`);
  await tile.getByRole('button', { name: '锁定 ' + name }).click();
  const dlg = page.getByRole('dialog');
  await dlg.getByLabel('原因（记入审计日志）').fill('viewer try');
  await dlg.getByRole('button', { name: '锁定' }).click();
  await expect(dlg.getByRole('status')).toContainText('权限不足');
  const d = await opsGet('/ops/devices/' + code);
  expect(d.body.device.status).toBe('free');
});

test('reports agree with the ledger and export as CSV', async ({ page }) => {
  const con = watchConsole(page);
  const admin = await addOperator('admin');
  const before = (await opsGet('/ops/reports')).body.totals;
  const user = await phoneUser(1000);
  const adj = await opsPost(`/ops/users/${user.id}/adjust`, { amount: 250, reason: 'report check' });
  expect(adj.status).toBe(200);
  // The ledger itself: the user's rows are exactly the recharge and the adjustment.
  const ledger = (await opsGet(`/ops/users/${user.id}/ledger`)).body.data;
  expect(ledger.map((r: { amount: number }) => r.amount).sort()).toEqual([1000, 250].sort());

  await signIn(page, admin, '/console/reports.html');
  const card = (k: string) => page.locator(`.card[data-total="${k}"] .value`);
  const yuan = (fen: number) => '¥' + Math.floor(fen / 100) + '.' + String(fen % 100).padStart(2, '0');
  await expect(card('recharges')).toHaveText(yuan(before.recharges + 1000));
  await expect(card('adjustments')).toHaveText(yuan(before.adjustments + 250));
  const now = (await opsGet('/ops/reports')).body.totals;
  await expect(card('consumption')).toHaveText(yuan(now.consumption));
  await expect(page.locator('#period')).toContainText('今日截至现在');
  await checkPage(page, 'console-reports');

  await page.getByLabel('分组').selectOption('device');
  await page.getByRole('button', { name: '查询' }).click();
  await expect(page.locator('#table th').first()).toHaveText('机位');
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('link', { name: '导出 CSV' }).click(),
  ]);
  expect(download.suggestedFilename()).toMatch(/^kioskd-report-device-\d{4}-\d\d-\d\d-\d{4}-\d\d-\d\d\.csv$/);
  const text = fs.readFileSync(await download.path(), 'utf8').replace(/^\uFEFF/, '');
  const lines = text.trim().split(/\r\n/);
  expect(lines[0]).toBe('device_code,name,sessions,busy_minutes,available_minutes,utilisation,consumption_fen');
  expect(lines[lines.length - 1]).toMatch(/^合计,/);
  expect(lines[lines.length - 1].endsWith(',' + now.consumption)).toBe(true);
  con.assertNone();
});

test('every other page: no console errors, axe clean, screenshots', async ({ page }) => {
  const con = watchConsole(page);
  await page.goto('/console/login.html');
  await checkPage(page, 'console-login');
  const admin = await addOperator('admin');
  await signIn(page, admin);
  for (const [path, name, ready] of [
    ['/console/sessions.html', 'console-sessions', '#updated'],
    ['/console/attendance.html', 'console-attendance', '#staff table'],
    ['/console/operators.html', 'console-operators', '#operators table'],
  ] as const) {
    await page.goto(path);
    await expect(page.locator(ready)).toBeVisible();
    await checkPage(page, name);
  }
  // My API tokens: created once, shown once, revoked.
  await page.getByRole('button', { name: '创建令牌' }).click();
  const dlg = page.getByRole('dialog');
  await dlg.getByLabel('名称（用途）').fill('ci');
  await dlg.getByRole('button', { name: '创建' }).click();
  await expect(page.locator('#token-value')).toHaveText(/^kop_/);
  await dlg.getByRole('button', { name: '关闭' }).click();
  await expect(page.locator('#tokens tbody tr')).toHaveCount(1);
  con.assertNone();
  // Sign out: the console is closed again (the refused /ops/me is expected here).
  await page.getByRole('button', { name: '退出登录' }).click();
  await page.waitForURL(/login\.html/);
  await page.goto('/console/');
  await page.waitForURL(/login\.html\?next=/);
});
