// Generated text streamed to real pusher-js clients (started by the Rust tests, which pass
// the stack's addresses): deltas numbered one by one that add up to the final text, on a
// plain and an end-to-end encrypted channel; a client that disconnects mid-generation
// catches up from GET /v1/inference/{id} and the deltas after its `seq`; a running
// generation cancelled by DELETE ends `cancelled` with its text so far.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { echoFor } from './echo-client.mjs';
import Pusher from 'pusher-js';

const api = process.env.INFERPUSH_API_URL;
const token = process.env.INFERPUSH_ALICE_JWT;
const headers = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' };
const model = 'smollm2-135m-instruct';

function client() {
  return new Pusher(process.env.PUSHER_APP_KEY, {
    wsHost: process.env.PUSHER_HOST,
    wsPort: Number(process.env.PUSHER_PORT),
    forceTLS: false,
    enabledTransports: ['ws'],
    cluster: 'local',
    channelAuthorization: { endpoint: `${api}/pusher/auth`, transport: 'ajax', headers },
  });
}

function subscribed(channel) {
  return new Promise((resolve, reject) => {
    channel.bind('pusher:subscription_succeeded', resolve);
    channel.bind('pusher:subscription_error', (error) => reject(new Error(JSON.stringify(error))));
  });
}

async function submit(input, extra = {}) {
  const response = await fetch(`${api}/v1/inference`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ model, input, ...extra }),
  });
  assert.equal(response.status, 202, await response.clone().text());
  return response.json();
}

const chat = (content, more = {}) => ({ messages: [{ role: 'user', content }], temperature: 0, ...more });

// Everything one channel hears of one task: deltas by seq, and its final event.
function listen(channel, taskId) {
  const heard = { deltas: [], final: null };
  let wake = () => {};
  const changed = () => wake();
  channel.bind('inference.delta', (data) => {
    if (data.task_id === taskId()) {
      heard.deltas.push(data);
      changed();
    }
  });
  for (const name of ['inference.completed', 'inference.failed']) {
    channel.bind(name, (data) => {
      if (data.task_id === taskId()) {
        heard.final = data;
        changed();
      }
    });
  }
  heard.until = (condition, ms = 60000) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out; heard ${JSON.stringify(heard)}`)), ms);
      const check = () => {
        if (condition()) {
          clearTimeout(timer);
          resolve();
        }
      };
      wake = check;
      check();
    });
  return heard;
}

async function streamsToTheEnd(channelName, extra) {
  const pusher = client();
  try {
    const channel = pusher.subscribe(channelName);
    await subscribed(channel);
    let id = null;
    const heard = listen(channel, () => id);
    const accepted = await submit(chat('Write a short poem about the sea.', { max_tokens: 40 }), extra);
    id = accepted.task_id;
    assert.equal(accepted.channel, channelName);
    await heard.until(() => heard.final !== null);
    assert.equal(heard.final.status, 'succeeded', JSON.stringify(heard.final));
    const text = heard.final.output.text;
    assert.ok(heard.deltas.length >= 2, `${heard.deltas.length} deltas`);
    heard.deltas.forEach((delta, i) => {
      assert.equal(delta.seq, i + 1, 'seq goes up by one');
      assert.equal(delta.attempt, heard.deltas[0].attempt, 'one attempt');
    });
    assert.equal(heard.deltas.map((d) => d.delta).join(''), text, 'the deltas add up to the final text');
    assert.equal(heard.final.output.usage.completion_tokens, heard.deltas.at(-1).tokens);
    return heard;
  } finally {
    pusher.disconnect();
  }
}

test('pusher-js hears deltas numbered one by one that add up to the final text', async () => {
  await streamsToTheEnd('private-inference.alice', {});
});

test('pusher-js decrypts the deltas of an end-to-end encrypted channel', async () => {
  await streamsToTheEnd('private-encrypted-inference.alice', { encrypted: true });
});

for (const [kind, join, extra] of [
  ['a private', (e) => e.private('inference.alice'), {}],
  ['an encrypted', (e) => e.encryptedPrivate('inference.alice'), { encrypted: true }],
]) {
  test(`Laravel Echo listens to .inference.delta on ${kind} channel and gets the whole text`, async () => {
    const client = echoFor(token);
    try {
      const channel = join(client);
      await new Promise((resolve, reject) => {
        channel.subscribed(resolve);
        channel.error((error) => reject(new Error(JSON.stringify(error))));
      });
      const heard = [];
      const ended = new Promise((resolve) => channel.listen('.inference.completed', resolve));
      channel.listen('.inference.delta', (data) => heard.push(data));
      const id = (await submit(chat('Describe a sunrise in two sentences.', { max_tokens: 40 }), extra)).task_id;
      const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('no end')), 60000).unref());
      const final = await Promise.race([ended, timeout]);
      assert.equal(final.task_id, id);
      const deltas = heard.filter((delta) => delta.task_id === id);
      assert.ok(deltas.length >= 2, `${deltas.length} deltas`);
      deltas.forEach((delta, i) => assert.equal(delta.seq, i + 1));
      assert.equal(deltas.map((d) => d.delta).join(''), final.output.text);
    } finally {
      client.disconnect();
    }
  });
}

test('eight generations at once: each client hears new text steadily (gaps between deltas)', async () => {
  const pusher = client();
  try {
    const channel = pusher.subscribe('private-inference.alice');
    await subscribed(channel);
    const arrivals = new Map();
    const ended = new Set();
    // From a delta's oldest text's generation (the worker's clock, the same machine's) to
    // its arrival here.
    const latencies = [];
    let wake = () => {};
    channel.bind('inference.delta', (data) => {
      if (!arrivals.has(data.task_id)) arrivals.set(data.task_id, []);
      arrivals.get(data.task_id).push(performance.now());
      if (data.generated_at_ms > 0) latencies.push(Date.now() - data.generated_at_ms);
    });
    channel.bind('inference.completed', (data) => {
      ended.add(data.task_id);
      wake();
    });
    const ids = await Promise.all(
      Array.from({ length: 8 }, (_, i) => submit(chat(`Tell story number ${i + 1} about a fox.`, { max_tokens: 96 })))
    ).then((accepted) => accepted.map((a) => a.task_id));
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${ended.size} of 8 ended`)), 120000);
      wake = () => ids.every((id) => ended.has(id)) && (clearTimeout(timer), resolve());
      wake();
    });
    const gaps = ids.flatMap((id) => {
      const times = arrivals.get(id) ?? [];
      return times.slice(1).map((t, i) => t - times[i]);
    }).sort((a, b) => a - b);
    const at = (q) => gaps[Math.min(gaps.length - 1, Math.floor(q * gaps.length))];
    console.log(`8 generations: ${gaps.length + 8} deltas, gap p50 ${at(0.5).toFixed(0)} ms, p99 ${at(0.99).toFixed(0)} ms, max ${gaps.at(-1).toFixed(0)} ms`);
    latencies.sort((a, b) => a - b);
    const late = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
    console.log(`8 generations: generation to arrival p50 ${late(0.5)} ms, p99 ${late(0.99)} ms (${latencies.length} deltas)`);
    assert.equal(latencies.length, gaps.length + 8, 'every delta says when its text was generated');
    assert.ok(ids.every((id) => (arrivals.get(id) ?? []).length >= 2), 'every generation streamed');
    assert.ok(at(0.5) < 1000, `gap p50 ${at(0.5)} ms`);
  } finally {
    pusher.disconnect();
  }
});

test('a client that drops mid-generation catches up from the status and the later deltas', async () => {
  const pusher = client();
  try {
    let channel = pusher.subscribe('private-inference.alice');
    await subscribed(channel);
    let id = null;
    let heard = listen(channel, () => id);
    id = (await submit(chat('Tell me about the history of Rome.', { max_tokens: 160 }))).task_id;
    await heard.until(() => heard.deltas.length >= 2);
    pusher.disconnect();
    await new Promise((resolve) => setTimeout(resolve, 700));
    pusher.connect();
    channel = pusher.subscribe('private-inference.alice');
    heard = listen(channel, () => id);
    await subscribed(channel);
    // Joined again: what was written so far, then only the deltas after it.
    const status = await (await fetch(`${api}/v1/inference/${id}`, { headers })).json();
    let text;
    if (status.status === 'running') {
      assert.ok(status.progress, JSON.stringify(status));
      text = status.progress.text;
      const after = status.progress.seq;
      await heard.until(() => heard.final !== null);
      for (const delta of heard.deltas.filter((d) => d.seq > after)) text += delta.delta;
    } else {
      text = status.output.text;
      await heard.until(() => heard.final !== null).catch(() => {});
    }
    const final = await (await fetch(`${api}/v1/inference/${id}`, { headers })).json();
    assert.equal(final.status, 'succeeded');
    assert.equal(text, final.output.text, 'exactly the whole text, nothing twice');
  } finally {
    pusher.disconnect();
  }
});

test('DELETE stops a running generation, which ends cancelled with its text so far', async () => {
  const pusher = client();
  try {
    const channel = pusher.subscribe('private-inference.alice');
    await subscribed(channel);
    let id = null;
    const heard = listen(channel, () => id);
    id = (await submit(chat('Write a very long story about a dragon.', { max_tokens: 500 }))).task_id;
    await heard.until(() => heard.deltas.length >= 1);
    const asked = Date.now();
    const response = await fetch(`${api}/v1/inference/${id}`, { method: 'DELETE', headers });
    assert.equal(response.status, 202);
    await heard.until(() => heard.final !== null);
    const took = Date.now() - asked;
    console.log(`stopped ${took} ms after DELETE`);
    assert.equal(heard.final.status, 'cancelled');
    assert.equal(heard.final.output.finish_reason, 'cancelled');
    assert.ok(heard.final.output.usage.completion_tokens < 500);
    assert.equal(heard.deltas.map((d) => d.delta).join(''), heard.final.output.text);
  } finally {
    pusher.disconnect();
  }
});

test("OpenAI's SDK lists the model and gets chat completions, whole and streamed", async () => {
  const { default: OpenAI } = await import('openai');
  const openai = new OpenAI({ apiKey: token, baseURL: `${api}/v1`, maxRetries: 0 });
  const ids = [];
  for await (const listed of openai.models.list()) ids.push(listed.id);
  assert.ok(ids.includes(model), ids.join(', '));

  const messages = [{ role: 'user', content: 'What is the capital of France?' }];
  const whole = await openai.chat.completions.create({ model, messages, max_tokens: 16, temperature: 0, seed: 1 });
  assert.equal(whole.object, 'chat.completion');
  const answer = whole.choices[0].message.content;
  assert.ok(answer.length > 0);
  assert.ok(['stop', 'length'].includes(whole.choices[0].finish_reason));
  assert.ok(whole.usage.completion_tokens > 0 && whole.usage.completion_tokens <= 16);

  const stream = await openai.chat.completions.create({
    model, messages, max_tokens: 16, temperature: 0, seed: 1, stream: true, stream_options: { include_usage: true },
  });
  let streamed = '';
  let usage = null;
  let finish = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices) {
      streamed += choice.delta.content ?? '';
      finish = choice.finish_reason ?? finish;
    }
  }
  assert.equal(streamed, answer, 'the same seed and input, the same text, streamed or not');
  assert.equal(finish, whole.choices[0].finish_reason);
  assert.equal(usage.completion_tokens, whole.usage.completion_tokens);

  await assert.rejects(
    openai.chat.completions.create({ model, messages, n: 2 }),
    (error) => error.status === 400 && error.param === 'n',
  );
});
