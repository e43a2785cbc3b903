import { chromium } from "playwright-core";
const [base, ...paths] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--headless", "--no-sandbox", "--disable-gpu"] });
const page = await browser.newPage({ viewport: { width: 1400, height: 950 } });
await page.goto(base + "/login");
await page.fill("#token", "x");
await Promise.all([page.waitForURL((u) => u.pathname !== "/login"), page.click("#login")]);
let n = 0;
for (const path of paths) {
  const t = Date.now();
  await page.goto(base + path);
  console.log(path, Date.now() - t, "ms");
  await page.waitForTimeout(1500);
  await page.screenshot({ path: `/tmp/shot${n++}.png` });
}
await browser.close();
