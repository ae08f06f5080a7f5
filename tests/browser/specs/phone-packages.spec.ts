// Packages from the phone (issue 16 items 3–4): the start page shows the price in force
// (the device's zone plan, not its flat price) and how long the balance lasts by the server's count; a package bought from the
// balance shows under 我的 with its time left, in the package history as money, and on
// the start page as time used first.
import { test, expect } from '@playwright/test';
import {
  addDevice, addPackage, checkPage, kioskAlive, kioskCheck, signedInUser, uniqueCode, uniqueId,
  watchConsole, zonePlan,
} from '../lib/phone';

const BASE = `http://127.0.0.1:${Number(process.env.KIOSKD_BROWSER_PORT || 18080)}`;

test('start page price and minutes; a package bought from the balance is used first', async ({ page, request }) => {
  const consoleErrors = watchConsole(page);
  const code = uniqueCode();
  // Flat 5 fen per 3-second unit (the browser server's unit), but the device's zone plan
  // charges 40 fen a minute all week: 2 fen per unit.
  await addDevice(request, BASE, code, { name: 'VR 套餐机', charge_mode: 5 });
  await zonePlan(request, BASE, code, 40);
  const small = uniqueId('一分钟套餐');
  const dear = uniqueId('豪华套餐');
  await addPackage(request, BASE, small, 1, 60);
  await addPackage(request, BASE, dear, 600, 100000);
  const kiosk = kioskAlive(request, BASE, code);
  try {
    await signedInUser(page, BASE, 100);
    await kioskCheck(request, BASE, code);

    // The plan's price, not the flat ¥0.05: ¥1.00 at 2 fen a unit is 50 units of 3 s.
    await page.goto(`/app/?device_code=${code}`);
    await expect(page.locator('#device-price')).toHaveText('¥0.02 / 3秒');
    await expect(page.locator('#my-minutes')).toHaveText('余额可用约 2分钟30秒');
    await expect(page.locator('#row-packages')).toBeHidden();
    await page.getByRole('link', { name: '购买套餐' }).click();

    // 我的: the package on sale, bought from the balance.
    await expect(page).toHaveURL(/\/app\/me\?back=.*#packages-box$/);
    const row = page.locator('#on-sale li', { hasText: small });
    await expect(row).toContainText('¥0.60');
    await expect(page.locator('#held')).toContainText('暂无套餐');
    // Too dear: refused, nothing changes.
    await page.locator('#on-sale li', { hasText: dear }).getByRole('button', { name: '余额购买' }).click();
    await expect(page.locator('#error')).toContainText('余额不足');
    await expect(page.locator('#balance')).toHaveText('¥1.00');
    await row.getByRole('button', { name: '余额购买' }).click();
    await expect(page.locator('#notice')).toHaveText('购买成功：' + small);
    await expect(page.locator('#balance')).toHaveText('¥0.40');
    await expect(page.locator('#held li', { hasText: small })).toContainText('剩 1分钟');
    await expect(page.locator('#held li', { hasText: small })).toContainText('余额购买');
    await checkPage(page, 'phone-me-packages');

    // The package history: the purchase, in money and time.
    await page.getByRole('tab', { name: '套餐记录' }).click();
    const bought = page.locator('#list li', { hasText: small });
    await expect(bought).toContainText('购买套餐');
    await expect(bought).toContainText('-¥0.60');

    // Back on the start page: the package's 20 units first, then ¥0.40 buys 20 more.
    await page.getByRole('link', { name: '返回设备页面' }).click();
    await expect(page.locator('#my-minutes')).toHaveText('余额可用约 2分钟');
    await expect(page.locator('#my-packages')).toContainText(small);
    await expect(page.locator('#my-packages')).toContainText('现在开始将先用套餐');
    await checkPage(page, 'phone-landing-package');
  } finally {
    await kiosk.stop();
  }
  consoleErrors.assertNone();
});
