// The demo page in headless Chromium (Debian's package, driven by playwright-core):
// sign in, connect, submit to the embedding model and to echo, see the results rendered
// with the similarity heatmap, catch up after being away and after the network drops
// (the header shows it; pusher-js reconnects by itself). Started by the Rust
// integration tests, which pass the api's address in INFERPUSH_API_URL and where to
// put the screenshot in SCREENSHOT_PATH.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { chromium } from 'playwright-core';

const api = process.env.INFERPUSH_API_URL;
const screenshot = process.env.SCREENSHOT_PATH;
const WAIT = { timeout: 30000 };

let context;
let profile;

before(async () => {
  profile = mkdtempSync(join(tmpdir(), 'inferpush-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-quic',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

const row = (page, status) => page.locator(`#tasks tbody tr[data-status="${status}"]`);

async function submit(page, model, lines, delayMs) {
  await page.selectOption('#model', model);
  if (delayMs !== undefined) await page.fill('#delay', String(delayMs));
  await page.fill('#texts', lines.join('\n'));
  const before = await page.locator('#tasks tbody tr').count();
  await page.click('#submit');
  await page.waitForFunction((n) => document.querySelectorAll('#tasks tbody tr').length > n, before, WAIT);
  return page.locator('#tasks tbody tr').first().getAttribute('data-task-id');
}

test('the demo signs in, submits, shows results live and catches up after a reload', async () => {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(`${api}/`);
  await page.waitForSelector('#connection[data-state="connected"]', WAIT);
  const user = await page.textContent('#user');
  assert.match(user, /^demo-[0-9a-f]{8}$/);
  assert.equal(await page.textContent('#channel'), `private-inference.${user}`);

  // Embeddings, pushed over Pusher, with their similarity.
  const sentences = ['A man is eating food.', 'A man is eating a piece of bread.', 'A monkey is playing drums.'];
  const embedded = await submit(page, 'all-minilm-l6-v2', sentences);
  const done = page.locator(`tr[data-task-id="${embedded}"][data-status="succeeded"]`);
  await done.waitFor(WAIT);
  assert.match(await done.locator('.result').textContent(), /^3 × 384 floats/);
  assert.match(await done.locator('.via').textContent(), /push/);
  assert.match(await done.locator('.latency').textContent(), /^\d+ ms$/);
  const cells = page.locator('#heatmap td.cell');
  assert.equal(await cells.count(), 9);
  const value = async (i) => Number(await cells.nth(i).getAttribute('data-value'));
  assert.ok(Math.abs((await value(0)) - 1) < 1e-3, 'a sentence is identical to itself');
  assert.ok((await value(1)) > (await value(2)) + 0.2, 'food ~ bread, more than food ~ drums');

  // echo returns its input.
  const echoed = await submit(page, 'echo', ['hello from Chromium']);
  await page.locator(`tr[data-task-id="${echoed}"][data-status="succeeded"]`).waitFor(WAIT);
  assert.match(await page.locator(`tr[data-task-id="${echoed}"] .result`).textContent(), /hello from Chromium/);

  // Away while a task finishes: the page learns the result from the status API.
  const slow = await submit(page, 'echo', ['finished while away'], 1500);
  await page.goto('about:blank');
  await new Promise((resolve) => setTimeout(resolve, 2500));
  await page.goto(`${api}/`);
  await page.waitForSelector('#connection[data-state="connected"]', WAIT);
  assert.equal(await page.textContent('#user'), user, 'the same demo user after a reload');
  const caughtUp = page.locator(`tr[data-task-id="${slow}"][data-status="succeeded"]`);
  await caughtUp.waitFor(WAIT);
  assert.match(await caughtUp.locator('.via').textContent(), /status API/);
  assert.match(await caughtUp.locator('.result').textContent(), /finished while away/);
  assert.equal(await page.locator('#heatmap td.cell').count(), 9, 'the heatmap is rebuilt after the reload');
  assert.equal(await row(page, 'queued').count(), 0);

  // The network drops: the header says so, pusher-js reconnects by itself when it is back,
  // and a result that finished meanwhile (submitted elsewhere) is caught up.
  await context.setOffline(true);
  await page.waitForSelector('#connection:not([data-state="connected"])', WAIT);
  const offlineLabel = await page.textContent('#connection .label');
  const token = await page.evaluate(() => window.inferpushDemo.session.token);
  const response = await fetch(`${api}/v1/inference`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'echo', input: { texts: ['while offline'] } }),
  });
  assert.equal(response.status, 202);
  const { task_id: offlineTask } = await response.json();
  await new Promise((resolve) => setTimeout(resolve, 1000));
  await context.setOffline(false);
  await page.waitForSelector('#connection[data-state="connected"]', WAIT);
  const back = page.locator(`tr[data-task-id="${offlineTask}"][data-status="succeeded"]`);
  await back.waitFor(WAIT);
  assert.match(await back.locator('.via').textContent(), /status API/);
  assert.match(offlineLabel, /connecting|offline|disconnected/);

  if (screenshot) {
    mkdirSync(dirname(screenshot), { recursive: true });
    await page.screenshot({ path: screenshot, fullPage: true });
  }
  assert.deepEqual(errors, []);
});
