// Debian's Chromium, headless, driven by playwright-core (its own browser download cannot
// work offline), with the flags this machine needs and a fresh profile folder.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

/** A browser context on a new profile; `close()` also removes the profile. */
export async function launchChromium() {
  const profile = mkdtempSync(join(tmpdir(), 'inferpush-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-quic',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  const close = async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, close };
}

/** Submits `lines` to `model` through the page's form; resolves with the new task's id. */
export async function submitThroughPage(page, model, lines, delayMs) {
  await page.selectOption('#model', model);
  if (delayMs !== undefined) await page.fill('#delay', String(delayMs));
  await page.fill('#texts', lines.join('\n'));
  const before = await page.locator('#tasks tbody tr').count();
  await page.click('#submit');
  await page.waitForFunction((n) => document.querySelectorAll('#tasks tbody tr').length > n, before, {
    timeout: 30000,
  });
  return page.locator('#tasks tbody tr').first().getAttribute('data-task-id');
}
