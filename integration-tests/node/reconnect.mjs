// Reconnection after a Soketi restart, with real pusher-js and Laravel Echo clients.
// Driven by a Rust integration test over stdin/stdout: this script subscribes both
// clients and prints READY; the test restarts Soketi and writes RESTARTED; the script
// waits for both clients to reconnect and resubscribe on their own, submits a task,
// checks both receive its result, and prints OK (exit 0) or the failure (exit 1).
import { createInterface } from 'node:readline';
import Echo from 'laravel-echo';
import Pusher from 'pusher-js';

const api = process.env.INFERPUSH_API_URL;
const token = process.env.INFERPUSH_ALICE_JWT;
const connection = {
  wsHost: process.env.PUSHER_HOST,
  wsPort: Number(process.env.PUSHER_PORT),
  wssPort: Number(process.env.PUSHER_PORT),
  forceTLS: false,
  enabledTransports: ['ws', 'wss'],
  cluster: 'mt1',
};

const pusher = new Pusher(process.env.PUSHER_APP_KEY, {
  ...connection,
  channelAuthorization: {
    endpoint: `${api}/pusher/auth`,
    transport: 'ajax',
    headers: { Authorization: `Bearer ${token}` },
  },
});
const echo = new Echo({
  broadcaster: 'pusher',
  key: process.env.PUSHER_APP_KEY,
  ...connection,
  authEndpoint: `${api}/broadcasting/auth`,
  auth: { headers: { Authorization: `Bearer ${token}` } },
  Pusher,
});

// Every subscription_succeeded (the first, and each after a reconnect) and every result.
const subscriptions = { pusher: 0, echo: 0 };
const results = { pusher: [], echo: [] };
const states = [];
const waiters = [];
const changed = () => waiters.splice(0).forEach((wake) => wake());
const until = (what, condition, ms) =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    const check = () => {
      if (condition()) {
        clearTimeout(timer);
        resolve();
      } else {
        waiters.push(check);
      }
    };
    check();
  });

pusher.connection.bind('state_change', ({ current }) => {
  states.push(current);
  changed();
});
const raw = pusher.subscribe('private-inference.alice');
raw.bind('pusher:subscription_succeeded', () => {
  subscriptions.pusher += 1;
  changed();
});
raw.bind('inference.completed', (data) => {
  results.pusher.push(data.task_id);
  changed();
});
const channel = echo.private('inference.alice');
channel.subscribed(() => {
  subscriptions.echo += 1;
  changed();
});
channel.listen('.inference.completed', (data) => {
  results.echo.push(data.task_id);
  changed();
});

const lines = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once('line', resolve));

try {
  await until('both subscriptions', () => subscriptions.pusher >= 1 && subscriptions.echo >= 1, 15000);
  console.log('READY');
  const line = await nextLine();
  if (line.trim() !== 'RESTARTED') throw new Error(`unexpected instruction ${line}`);
  const echoState = () => echo.connector.pusher.connection.state;
  await until(
    'reconnection and resubscription',
    () => subscriptions.pusher >= 2 && subscriptions.echo >= 2 && pusher.connection.state === 'connected' && echoState() === 'connected',
    45000,
  );
  if (!states.some((state) => state === 'connecting' || state === 'unavailable')) {
    throw new Error(`pusher-js never saw the connection drop: ${states.join(' → ')}`);
  }
  const response = await fetch(`${api}/v1/inference`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'echo', input: { after: 'restart' } }),
  });
  if (response.status !== 202) throw new Error(`submit answered ${response.status}`);
  const { task_id: taskId } = await response.json();
  await until(
    'the result on both clients',
    () => results.pusher.includes(taskId) && results.echo.includes(taskId),
    20000,
  );
  console.log(`OK states: ${states.join(' → ')}`);
  process.exitCode = 0;
} catch (error) {
  console.log(`FAILED ${error.message}; states: ${states.join(' → ')}; subscriptions ${JSON.stringify(subscriptions)}`);
  process.exitCode = 1;
} finally {
  pusher.disconnect();
  echo.disconnect();
  lines.close();
}
