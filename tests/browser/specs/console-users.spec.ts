// The console's users page and pricing (issue 16 item 5): an admin puts a user in a member
// group and grants a package through the user's detail, and the ops API agrees (the
// user's group_id, the package held with its full time, the grant audited with its
// reason); a withdrawn package is not offered; viewers and staff see the group and the
// packages but no way to change them.
import { test, expect } from '@playwright/test';
import {
  addOperator, checkPage, opsGet, opsPost, opsPut, phoneUser, signIn, uniqueName, watchConsole,
} from '../lib/console';

const DAY_MS = 24 * 3600 * 1000;

async function seedGroup(discount: number) {
  const name = uniqueName('金卡');
  const r = await opsPost('/ops/pricing/groups', { name, discount_pct: discount });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return { id: r.body.id as number, name };
}

async function seedPackage(minutes: number, extra: Record<string, unknown> = {}) {
  const name = uniqueName('畅玩');
  const r = await opsPost('/ops/pricing/packages', { name, minutes, price: 1500, valid_days: 7, ...extra });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return { id: r.body.id as number, name };
}

test('an admin sets a user\'s member group and grants a package from the user page', async ({ page }) => {
  const con = watchConsole(page);
  const zone = uniqueName('VR区');
  const z = await opsPost('/ops/pricing/zones', { name: zone });
  expect(z.status, JSON.stringify(z.body)).toBe(201);
  const group = await seedGroup(20);
  const other = await seedGroup(0);
  const pkg = await seedPackage(90, { zones: [z.body.id], windows: ['22:00-08:00'] });
  const gone = await seedPackage(30);
  expect((await opsPut(`/ops/pricing/packages/${gone.id}`, { on_sale: false })).status).toBe(200);
  const user = await phoneUser(0);
  const admin = await addOperator('admin');

  await signIn(page, admin, '/console/users.html?id=' + user.id);
  await expect(page.getByRole('link', { name: '用户' })).toHaveAttribute('aria-current', 'page');
  await expect(page.locator('#user-group')).toHaveText('无');
  await expect(page.locator('#user-packages')).toContainText('没有可用的套餐');
  const dlg = page.getByRole('dialog');

  // The group: the select offers every group and "none"; saving refreshes the detail.
  await page.getByRole('button', { name: '设置会员组' }).click();
  const select = dlg.getByLabel('会员组');
  await expect(select).toHaveValue('');
  await expect(select.locator('option', { hasText: other.name })).toHaveCount(1);
  await select.selectOption({ label: `${group.name}（减免 20%）` });
  await dlg.getByLabel('原因（记入审计日志，可选）').fill('浏览器测试：升级会员');
  await dlg.getByRole('button', { name: '保存' }).click();
  await expect(dlg.getByRole('status')).toHaveText(`已设为 ${group.name}（减免 20%）`);
  await dlg.getByRole('button', { name: '关闭' }).click();
  await expect(page.locator('#user-group')).toHaveText(`${group.name}（减免 20%）`);
  let u = await opsGet(`/ops/users/${user.id}`);
  expect(u.status).toBe(200);
  expect(u.body.group_id).toBe(group.id);

  // The grant: only packages on sale are offered, and a reason is required.
  await page.getByRole('button', { name: '赠送套餐' }).click();
  const pick = dlg.getByLabel('套餐');
  await expect(pick.locator('option', { hasText: pkg.name })).toHaveCount(1);
  await expect(pick.locator('option', { hasText: gone.name })).toHaveCount(0);
  await pick.selectOption({ label: `${pkg.name}（90 分钟，7 天内有效，售价 ¥15.00）` });
  await dlg.getByRole('button', { name: '确认赠送' }).click();
  await expect(dlg.getByRole('status')).toContainText('请填写');
  expect((await opsGet(`/ops/users/${user.id}/packages`)).body.total).toBe(0);
  await dlg.getByLabel('原因（必填）').fill('浏览器测试：赠送套餐');
  await dlg.getByRole('button', { name: '确认赠送' }).click();
  await expect(dlg.getByRole('status')).toHaveText(`已赠送 ${pkg.name}（90 分钟）`);
  await dlg.getByRole('button', { name: '关闭' }).click();
  const row = page.locator('#user-packages tbody tr', { hasText: pkg.name });
  await expect(row).toContainText('90 分钟');
  await expect(row).toContainText(zone);
  await expect(row).toContainText('22:00-08:00');
  await expect(row).toContainText('赠送');
  await expect(page.locator('#user-packages tbody tr')).toHaveCount(1);

  // The API: exactly that package, its whole time, seven days, from an operator.
  const held = await opsGet(`/ops/users/${user.id}/packages`);
  expect(held.status).toBe(200);
  expect(held.body.total).toBe(1);
  const p = held.body.data[0];
  expect(p.package_id).toBe(pkg.id);
  expect(p.seconds_left).toBe(90 * 60);
  expect(p.source).toBe('operator');
  expect(p.expires_at - p.valid_from).toBe(7 * DAY_MS);
  // The balance is untouched: a grant is not a sale.
  u = await opsGet(`/ops/users/${user.id}`);
  expect(u.body.balance_account).toBe(0);
  expect(u.body.ledger_sum).toBe(0);
  await checkPage(page, 'console-users-pricing');

  // Back to no group.
  await page.getByRole('button', { name: '设置会员组' }).click();
  await expect(dlg.getByLabel('会员组')).toHaveValue(String(group.id));
  await dlg.getByLabel('会员组').selectOption({ label: '无（不属于任何会员组）' });
  await dlg.getByRole('button', { name: '保存' }).click();
  await expect(dlg.getByRole('status')).toHaveText('已设为不属于任何会员组');
  await dlg.getByRole('button', { name: '关闭' }).click();
  await expect(page.locator('#user-group')).toHaveText('无');
  expect((await opsGet(`/ops/users/${user.id}`)).body.group_id).toBeNull();

  // Both changes are in the audit log under the user, with the operator and reasons.
  const audit = await opsGet(`/ops/audit?target=${user.id}&limit=50`);
  const text = JSON.stringify(audit.body);
  expect(text).toContain('/ops/users/{id}/packages');
  expect(text).toContain('/ops/users/{id}/group');
  expect(text).toContain('浏览器测试：赠送套餐');
  expect(text).toContain('浏览器测试：升级会员');
  expect(text).toContain(admin);
  con.assertNone();
});

for (const role of ['viewer', 'staff'] as const) {
  test(`a ${role} sees the group and packages but no way to change them`, async ({ page }) => {
    const con = watchConsole(page);
    const group = await seedGroup(10);
    const pkg = await seedPackage(45);
    const user = await phoneUser(0);
    expect((await opsPut(`/ops/users/${user.id}/group`, { group_id: group.id })).status).toBe(200);
    const g = await opsPost(`/ops/users/${user.id}/packages`, { package_id: pkg.id, reason: 'seed' });
    expect(g.status, JSON.stringify(g.body)).toBe(201);

    const who = await addOperator(role);
    await signIn(page, who, '/console/users.html?id=' + user.id);
    // The detail is drawn at once: the group shown means the buttons were decided.
    await expect(page.locator('#user-group')).toHaveText(`${group.name}（减免 10%）`);
    const row = page.locator('#user-packages tbody tr', { hasText: pkg.name });
    await expect(row).toContainText('45 分钟');
    await expect(row).toContainText('全天');
    for (const name of ['设置会员组', '赠送套餐', '调整余额', '停用', '启用']) {
      await expect(page.getByRole('button', { name })).toHaveCount(0);
    }
    con.assertNone();
  });
}
