// pusher-js over wss:// against a stack whose Soketi serves TLS with a certificate of the
// test's own CA (trusted through NODE_EXTRA_CA_CERTS): subscribe, submit, receive the result
// that the worker pushed over HTTPS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Pusher from 'pusher-js';

const api = process.env.INFERPUSH_API_URL;

test('a result pushed over HTTPS arrives over wss', async () => {
  const pusher = new Pusher(process.env.PUSHER_APP_KEY, {
    wsHost: process.env.PUSHER_HOST,
    wssPort: Number(process.env.PUSHER_PORT),
    forceTLS: true,
    enabledTransports: ['ws'],
    cluster: 'local',
    channelAuthorization: {
      endpoint: `${api}/pusher/auth`,
      transport: 'ajax',
      headers: { Authorization: 'Bearer dev-alice' },
    },
  });
  try {
    const channel = pusher.subscribe('private-inference.alice');
    await new Promise((resolve, reject) => {
      channel.bind('pusher:subscription_succeeded', resolve);
      channel.bind('pusher:subscription_error', (error) => reject(new Error(JSON.stringify(error))));
    });
    const result = new Promise((resolve) => channel.bind('inference.completed', resolve));
    const response = await fetch(`${api}/v1/inference`, {
      method: 'POST',
      headers: { Authorization: 'Bearer dev-alice', 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'echo', input: { over: 'tls' } }),
    });
    assert.equal(response.status, 202);
    const accepted = await response.json();
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error('no result in 20 s')), 20000);
    });
    try {
      const data = await Promise.race([result, timeout]);
      assert.equal(data.task_id, accepted.task_id);
      assert.deepEqual(data.output, { over: 'tls' });
    } finally {
      clearTimeout(timer);
    }
  } finally {
    pusher.disconnect();
  }
});
