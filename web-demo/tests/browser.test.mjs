// The demo page in headless Chromium (Debian's package, driven by playwright-core):
// sign in, connect, submit to the embedding model and to echo, see the results rendered
// with the similarity heatmap, and catch up after being away; chat with the generation
// model and watch the answer being written, then stop one half-way. Started by the Rust
// integration tests, which pass the api's address in INFERPUSH_API_URL and where to
// put the screenshot in SCREENSHOT_PATH.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { launchChromium, submitThroughPage as submit } from './chromium.mjs';

const api = process.env.INFERPUSH_API_URL;
const screenshot = process.env.SCREENSHOT_PATH;
const WAIT = { timeout: 30000 };

let browser;
let context;

before(async () => {
  browser = await launchChromium();
  context = browser.context;
});

after(async () => {
  await browser?.close();
});

const row = (page, status) => page.locator(`#tasks tbody tr[data-status="${status}"]`);

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

  if (screenshot) {
    mkdirSync(dirname(screenshot), { recursive: true });
    await page.screenshot({ path: screenshot, fullPage: true });
  }
  assert.deepEqual(errors, []);
});

test('the chat panel writes the answer as its deltas arrive, and Stop keeps the text so far', async () => {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(`${api}/`);
  await page.waitForSelector('#connection[data-state="connected"]', WAIT);
  await page.waitForSelector('#chat:not([hidden])', WAIT);
  assert.equal(await page.inputValue('#chat-model'), 'smollm2-135m-instruct');

  const answer = page.locator('#chat-log .message.assistant').last();
  const streamingText = async () => {
    await page.waitForFunction(() => {
      const element = [...document.querySelectorAll('#chat-log .message.assistant')].pop();
      return element?.dataset.state === 'streaming' && element.textContent.trim().length > 20;
    }, null, WAIT);
    return answer.locator('p').textContent();
  };

  await page.fill('#chat-input', 'Write a short story about a lighthouse keeper and a storm.');
  await page.click('#chat-send');
  const partial = await streamingText();
  if (screenshot) await page.screenshot({ path: join(dirname(screenshot), 'web-demo-chat-streaming.png') });
  await page.waitForSelector('#chat-log .message.assistant[data-state="done"]', { timeout: 120000 });
  const full = await answer.locator('p').textContent();
  assert.ok(full.startsWith(partial) && full.length > partial.length, `${partial} | ${full}`);
  assert.equal(await answer.getAttribute('data-status'), 'succeeded');
  assert.ok(Number(await answer.getAttribute('data-seq')) > 1, 'several deltas were shown');
  assert.match(await answer.locator('.meta').textContent(), /succeeded · finish: (stop|length) · \d+ tokens/);
  if (screenshot) await page.screenshot({ path: join(dirname(screenshot), 'web-demo-chat-done.png') });

  // A second turn, stopped while it is being written: cancelled, with its text so far.
  await page.fill('#chat-input', 'Now tell it again, in much more detail.');
  await page.click('#chat-send');
  const before = await streamingText();
  await page.click('#chat-stop');
  await page.waitForSelector('#chat-log .message.assistant[data-status="cancelled"]', WAIT);
  const kept = await answer.locator('p').textContent();
  assert.ok(kept.startsWith(before), `${before} | ${kept}`);
  assert.match(await answer.locator('.meta').textContent(), /cancelled · finish: cancelled/);
  assert.equal(await page.locator('#chat-log .message').count(), 4);
  assert.deepEqual(errors, []);
});
