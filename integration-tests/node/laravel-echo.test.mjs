// Laravel Echo, configured as a Laravel app configures it, against a running inferpush
// stack (started by the Rust tests, which pass its addresses and a JWT for alice in the
// environment): Echo.private(...).listen('.inference.completed') through /broadcasting/auth.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { echoFor } from './echo-client.mjs';

const api = process.env.INFERPUSH_API_URL;
const aliceToken = process.env.INFERPUSH_ALICE_JWT;

function within(ms, promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing in ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function submit(token, input, extra = {}) {
  const response = await fetch(`${api}/v1/inference`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'echo', input, ...extra }),
  });
  assert.equal(response.status, 202, await response.clone().text());
  return response.json();
}

test('Echo.private(inference.alice).listen(.inference.completed) receives the result', async () => {
  const echo = echoFor(aliceToken);
  try {
    const channel = echo.private('inference.alice');
    await within(10000, new Promise((resolve) => channel.subscribed(resolve)), 'subscription');
    const received = new Promise((resolve) => channel.listen('.inference.completed', resolve));
    const accepted = await submit(aliceToken, { from: 'laravel-echo' });
    const data = await within(20000, received, 'inference.completed');
    assert.equal(data.task_id, accepted.task_id);
    assert.equal(data.status, 'succeeded');
    assert.deepEqual(data.output, { from: 'laravel-echo' });
    assert.equal(accepted.channel, 'private-inference.alice');
  } finally {
    echo.disconnect();
  }
});

test('Echo.encryptedPrivate(inference.alice) decrypts an encrypted result', async () => {
  const echo = echoFor(aliceToken);
  try {
    const channel = echo.encryptedPrivate('inference.alice');
    await within(10000, new Promise((resolve) => channel.subscribed(resolve)), 'subscription');
    const received = new Promise((resolve) => channel.listen('.inference.completed', resolve));
    const accepted = await submit(aliceToken, { secret: 'only alice reads this' }, { encrypted: true });
    const data = await within(20000, received, 'encrypted inference.completed');
    assert.equal(data.task_id, accepted.task_id);
    assert.deepEqual(data.output, { secret: 'only alice reads this' });
  } finally {
    echo.disconnect();
  }
});

test("Echo is refused bob's channel with alice's token", async () => {
  const echo = echoFor(aliceToken);
  try {
    const refused = new Promise((resolve) => echo.private('inference.bob').error(resolve));
    const error = await within(10000, refused, 'subscription error');
    assert.equal(error.status, 403);
    assert.equal(error.type, 'AuthError');
  } finally {
    echo.disconnect();
  }
});
