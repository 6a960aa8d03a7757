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

async function submit(apiKey, input, extra = {}) {
  const response = await fetch(`${api}/v1/inference`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'echo', input, ...extra }),
  });
  assert.equal(response.status, 202);
  return response.json();
}

// Subscribes alice's client to `channelName`, submits `input`, and resolves with the
// accepted task and the data of the inference.completed event that follows.
async function roundTrip(channelName, input, extra) {
  const pusher = new Pusher(process.env.PUSHER_APP_KEY, options('dev-alice'));
  try {
    const channel = pusher.subscribe(channelName);
    await subscribed(channel);
    const result = new Promise((resolve) => channel.bind('inference.completed', resolve));
    const accepted = await submit('dev-alice', input, extra);
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error('no result in 20 s')), 20000);
    });
    try {
      return { accepted, data: await Promise.race([result, timeout]) };
    } finally {
      clearTimeout(timer);
    }
  } finally {
    pusher.disconnect();
  }
}

test('pusher-js receives inference.completed for its own task', async () => {
  const { accepted, data } = await roundTrip('private-inference.alice', { text: 'from pusher-js' });
  assert.equal(data.task_id, accepted.task_id);
  assert.equal(data.status, 'succeeded');
  assert.deepEqual(data.output, { text: 'from pusher-js' });
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
  const secret = { secret: 'only alice may read this' };
  const { accepted, data } = await roundTrip('private-encrypted-inference.alice', secret, { encrypted: true });
  assert.equal(accepted.channel, 'private-encrypted-inference.alice');
  assert.equal(data.task_id, accepted.task_id);
  assert.deepEqual(data.output, secret);
});

// A subscription the push server refuses (here: a forged signature, past the api) arrives
// as the channel's pusher:subscription_error on Soketi, but as a connection-level
// pusher:error 4009 on Sockudo, the connection staying up. Code that listens for both, as
// the README's client section shows, works with either server.
function refusal(pusher, channel) {
  return new Promise((resolve) => {
    channel.bind('pusher:subscription_error', (error) => resolve({ via: 'subscription_error', error }));
    pusher.connection.bind('error', (error) => resolve({ via: 'connection_error', error }));
  });
}

test('a forged channel signature is refused by the push server, each in its own way', async () => {
  const key = process.env.PUSHER_APP_KEY;
  const forged = {
    ...options('dev-alice'),
    channelAuthorization: {
      customHandler: (_params, callback) => callback(null, { auth: `${key}:${'0'.repeat(64)}` }),
    },
  };
  const pusher = new Pusher(key, forged);
  try {
    const channel = pusher.subscribe('private-inference.alice');
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error('no refusal in 10 s')), 10000);
    });
    const { via, error } = await Promise.race([refusal(pusher, channel), timeout]).finally(() =>
      clearTimeout(timer),
    );
    if (process.env.INFERPUSH_PUSH_SERVER === 'sockudo') {
      assert.equal(via, 'connection_error', JSON.stringify(error));
      assert.equal(error.data.code, 4009, JSON.stringify(error));
    } else {
      assert.equal(via, 'subscription_error', JSON.stringify(error));
    }
    assert.equal(channel.subscribed, false);
    assert.equal(pusher.connection.state, 'connected', 'the refusal does not end the connection');
  } finally {
    pusher.disconnect();
  }
});
