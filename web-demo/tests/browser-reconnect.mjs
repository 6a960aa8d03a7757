// The demo page through a Soketi outage, in headless Chromium. Driven by a Rust
// integration test over stdin/stdout: the page connects and this script prints READY;
// the test kills Soketi and writes STOPPED; the page must show it is no longer connected,
// a task is submitted through the page (the api is up), SUBMITTED; the test restarts
// Soketi and writes RESTARTED; the page must reconnect by itself and show the task
// succeeded. Prints OK (exit 0) or FAILED with the reason (exit 1).
import { createInterface } from 'node:readline';
import { launchChromium, submitThroughPage } from './chromium.mjs';

const api = process.env.INFERPUSH_API_URL;
const lines = createInterface({ input: process.stdin });
const expectLine = async (want) => {
  const line = await new Promise((resolve) => lines.once('line', resolve));
  if (line.trim() !== want) throw new Error(`expected ${want}, got ${line}`);
};

const browser = await launchChromium();
try {
  const page = await browser.context.newPage();
  await page.goto(`${api}/`);
  await page.waitForSelector('#connection[data-state="connected"]', { timeout: 30000 });
  console.log('READY');

  await expectLine('STOPPED');
  await page.waitForSelector('#connection:not([data-state="connected"])', { timeout: 15000 });
  const shown = await page.textContent('#connection .label');
  const taskId = await submitThroughPage(page, 'echo', ['submitted while Soketi was down']);
  console.log('SUBMITTED');

  await expectLine('RESTARTED');
  await page.waitForSelector('#connection[data-state="connected"]', { timeout: 45000 });
  const done = page.locator(`tr[data-task-id="${taskId}"][data-status="succeeded"]`);
  await done.waitFor({ timeout: 45000 });
  console.log(`OK the header showed "${shown}"; the task arrived ${await done.locator('.via').textContent()}`);
  process.exitCode = 0;
} catch (error) {
  console.log(`FAILED ${error.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
  lines.close();
}
