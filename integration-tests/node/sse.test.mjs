// Server-sent events with a real EventSource (the `eventsource` package, as a Node or
// browser-like client uses it): tasks submitted through one api replica, their events
// followed through another (fan-out through Redis Pub/Sub), a client that goes away and
// comes back with Last-Event-ID, and a task's own stream that ends after its final event.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventSource } from 'eventsource';

const submitTo = process.env.INFERPUSH_API_URL;
const followOn = process.env.INFERPUSH_API_URL_2;
const auth = { Authorization: `Bearer ${process.env.INFERPUSH_ALICE_JWT}` };
const NAMES = ['inference.started', 'inference.completed', 'inference.failed'];

function open(url, lastEventId) {
  const headers = { ...auth, ...(lastEventId ? { 'Last-Event-ID': lastEventId } : {}) };
  return new EventSource(url, {
    fetch: (input, init) => fetch(input, { ...init, headers: { ...init.headers, ...headers } }),
  });
}

function collect(source, into) {
  for (const name of NAMES) {
    source.addEventListener(name, (e) => into.push({ id: e.lastEventId, event: name, data: JSON.parse(e.data) }));
  }
  return new Promise((resolve, reject) => {
    source.onopen = resolve;
    source.onerror = (error) => source.readyState === EventSource.CLOSED && reject(error);
  });
}

async function submit(text) {
  const response = await fetch(`${submitTo}/v1/inference`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'echo', input: { text, delay_ms: 20 } }),
  });
  assert.equal(response.status, 202, await response.clone().text());
  return response.json();
}

async function until(what, condition, ms = 20000) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function finished(taskId) {
  for (;;) {
    const response = await fetch(`${submitTo}/v1/inference/${taskId}`, { headers: auth });
    const record = await response.json();
    if (record.status === 'succeeded' || record.status === 'failed') return record;
    await new Promise((r) => setTimeout(r, 50));
  }
}

const completed = (events, ids) => ids.every((id) => events.some((e) => e.data.task_id === id && e.event === 'inference.completed'));

test('every event of the caller once, through another replica, across a reconnect with Last-Event-ID', async () => {
  const events = [];
  const first = open(`${followOn}/v1/events`);
  await collect(first, events);
  const before = [];
  for (let i = 0; i < 5; i++) before.push((await submit(`before ${i}`)).task_id);
  await until('the first five tasks', () => completed(events, before));
  const lastId = events.at(-1).id;
  first.close();

  // Away: these happen while no stream is open.
  const away = [];
  for (let i = 0; i < 5; i++) away.push((await submit(`away ${i}`)).task_id);
  for (const id of away) await finished(id);

  const second = open(`${followOn}/v1/events`, lastId);
  await collect(second, events);
  await until('the missed tasks', () => completed(events, away));
  const live = (await submit('live')).task_id;
  await until('a live task after the replay', () => completed(events, [live]));
  second.close();

  const seen = events.map((e) => `${e.data.task_id} ${e.event}`);
  assert.equal(new Set(seen).size, seen.length, `an event came twice: ${seen.join('\n')}`);
  for (const id of [...before, ...away, live]) {
    assert.ok(seen.includes(`${id} inference.started`), `${id} started missing`);
    assert.ok(seen.includes(`${id} inference.completed`), `${id} completed missing`);
  }
  const ids = events.map((e) => e.id.split('-').map(BigInt));
  for (let i = 1; i < ids.length; i++) {
    const [a, b] = [ids[i - 1], ids[i]];
    assert.ok(b[0] > a[0] || (b[0] === a[0] && b[1] > a[1]), `ids do not increase: ${events[i - 1].id}, ${events[i].id}`);
  }
});

test("a task's own stream carries its events and ends; the client's reconnect is told to stop", async () => {
  const accepted = await submit('one task');
  assert.ok(accepted.sinks.includes('sse'), JSON.stringify(accepted));
  const events = [];
  const source = open(`${followOn}${accepted.events_url}`);
  await collect(source, events);
  await until('the task to end', () => events.some((e) => e.event === 'inference.completed'));
  // The server ends the stream; EventSource reconnects with Last-Event-ID, gets 204 and stops.
  await until('the stream to be closed for good', () => source.readyState === EventSource.CLOSED, 10000);
  assert.deepEqual(events.map((e) => e.event), ['inference.started', 'inference.completed']);
  assert.ok(events.every((e) => e.data.task_id === accepted.task_id));
  assert.equal(events[1].data.output.text, 'one task');
});

test('a foreign or unknown task has no stream, and a stream needs a caller', async () => {
  const unknown = await fetch(`${followOn}/v1/inference/01936f4e-7c5a-7b1e-9a4f-3c2d1e0f5a6b/events`, { headers: auth });
  assert.equal(unknown.status, 404);
  const anonymous = await fetch(`${followOn}/v1/events`);
  assert.equal(anonymous.status, 401);
});
