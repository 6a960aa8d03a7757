// A real pusher-js client against a running inferpush stack (started by the Rust tests,
// which pass its addresses in the environment): subscribe, submit, receive.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Pusher from 'pusher-js';

const api = process.env.INFERPUSH_API_URL;
const options = (apiKey) => ({
  wsHost: process.env.PUSHER_HOST,
  wsPort: Number(process.env.PUSHER_PORT),
  forceTLS: false,
  enabledTransports: ['ws'],
  cluster: 'local',
  channelAuthorization: {
    endpoint: `${api}/pusher/auth`,
    transport: 'ajax',
    headers: { Authorization: `Bearer ${apiKey}` },
  },
});

function subscribed(channel) {
  return new Promise((resolve, reject) => {
    channel.bind('pusher:subscription_succeeded', resolve);
    channel.bind('pusher:subscription_error', (error) => reject(new Error(JSON.stringify(error))));
  });
}

async function submit(apiKey, input) {
  const response = await fetch(`${api}/v1/inference`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'echo', input }),
  });
  assert.equal(response.status, 202);
  return response.json();
}

test('pusher-js receives inference.completed for its own task', async () => {
  const pusher = new Pusher(process.env.PUSHER_APP_KEY, options('dev-alice'));
  try {
    const channel = pusher.subscribe('private-inference.alice');
    await subscribed(channel);
    const result = new Promise((resolve) => channel.bind('inference.completed', resolve));
    const accepted = await submit('dev-alice', { text: 'from pusher-js' });
    const data = await Promise.race([
      result,
      new Promise((_, reject) => setTimeout(() => reject(new Error('no result in 20 s')), 20000)),
    ]);
    assert.equal(data.task_id, accepted.task_id);
    assert.equal(data.status, 'succeeded');
    assert.deepEqual(data.output, { text: 'from pusher-js' });
  } finally {
    pusher.disconnect();
  }
});

test("pusher-js is refused bob's channel with alice's key", async () => {
  const pusher = new Pusher(process.env.PUSHER_APP_KEY, options('dev-alice'));
  try {
    const channel = pusher.subscribe('private-inference.bob');
    await assert.rejects(subscribed(channel), /403/);
  } finally {
    pusher.disconnect();
  }
});

test('pusher-js decrypts a result pushed on its end-to-end encrypted channel', async () => {
  const pusher = new Pusher(process.env.PUSHER_APP_KEY, options('dev-alice'));
  try {
    const channel = pusher.subscribe('private-encrypted-inference.alice');
    await subscribed(channel);
    const result = new Promise((resolve) => channel.bind('inference.completed', resolve));
    const response = await fetch(`${api}/v1/inference`, {
      method: 'POST',
      headers: { Authorization: 'Bearer dev-alice', 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'echo', input: { secret: 'only alice may read this' }, encrypted: true }),
    });
    assert.equal(response.status, 202);
    const accepted = await response.json();
    assert.equal(accepted.channel, 'private-encrypted-inference.alice');
    const data = await Promise.race([
      result,
      new Promise((_, reject) => setTimeout(() => reject(new Error('no result in 20 s')), 20000)),
    ]);
    assert.equal(data.task_id, accepted.task_id);
    assert.deepEqual(data.output, { secret: 'only alice may read this' });
  } finally {
    pusher.disconnect();
  }
});
