// The inferpush demo page: signs the visitor in as a demo user (development mode's
// short-lived tokens), connects pusher-js to the push server (Soketi or Sockudo),
// subscribes to the user's private channel through /pusher/auth, submits tasks and shows
// each one's state as it changes.
// What the page submitted is kept in localStorage; after a reload (or a reconnect) the
// results come back from the status API, since the push server keeps no history.

import { createChat } from './chat.js';
import { EVENTS, isFinal } from './lifecycle.js';

const SESSION_KEY = 'inferpush-demo.session';
const TASKS_KEY = 'inferpush-demo.tasks';
const MAX_TASKS = 50;
const HEATMAP_SIZE = 12;
const EMBEDDING_MODEL = 'all-minilm-l6-v2';

const $ = (selector) => document.querySelector(selector);
const session = { token: null, userId: null, channel: null, since: 0, pusher: null };
/** task_id → { task_id, model, input, status, output, error, timings, latencyMs, via, startedAt } */
const tasks = new Map();
const chat = createChat({
  api: (path, options) => api(path, options),
  showError: (error) => { $('#chat-error').textContent = error.message; },
});

// ---------- the api ----------

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${session.token}` };
  if (options.body) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error(body?.detail ?? `${response.status} ${response.statusText}`);
  return body;
}

/** A fresh token for the stored demo user (or a new one); refreshed before it expires. */
async function signIn() {
  const saved = JSON.parse(localStorage.getItem(SESSION_KEY) ?? 'null');
  const response = await fetch('/dev/token', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(saved?.userId ? { user_id: saved.userId } : {}),
  });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error(`signing in: ${body?.detail ?? response.status}`);
  const sameUser = saved?.userId === body.user_id;
  Object.assign(session, {
    token: body.token,
    userId: body.user_id,
    channel: body.channel,
    pusher: body.pusher,
    since: sameUser ? saved.since : Date.now() - 1000,
  });
  localStorage.setItem(SESSION_KEY, JSON.stringify({ userId: session.userId, since: session.since }));
  setTimeout(() => signIn().catch(showError), Math.max(5, body.expires_in - 60) * 1000);
  $('#user').textContent = session.userId;
  $('#channel').textContent = session.channel;
}

// ---------- Pusher ----------

const CONNECTION_LABELS = {
  initialized: 'starting',
  connecting: 'connecting…',
  connected: 'connected',
  unavailable: 'offline, retrying…',
  failed: 'WebSockets unsupported',
  disconnected: 'disconnected',
};

function connect() {
  const { key, ws_host, ws_port, force_tls } = session.pusher;
  const pusher = new Pusher(key, {
    wsHost: ws_host,
    wsPort: ws_port,
    wssPort: ws_port,
    forceTLS: force_tls,
    enabledTransports: ['ws', 'wss'],
    cluster: 'local',
    disableStats: true,
    channelAuthorization: {
      endpoint: '/pusher/auth',
      transport: 'ajax',
      headersProvider: () => ({ Authorization: `Bearer ${session.token}` }),
    },
  });
  pusher.connection.bind('state_change', ({ current }) => {
    const element = $('#connection');
    element.dataset.state = current;
    element.querySelector('.label').textContent = CONNECTION_LABELS[current] ?? current;
  });
  const channel = pusher.subscribe(session.channel);
  // Subscribed (first time or again after a reconnect): anything finished meanwhile
  // was pushed to nobody, so read it back from the status API.
  channel.bind('pusher:subscription_succeeded', () => catchUp().catch(showError));
  channel.bind('pusher:subscription_error', (error) =>
    showError(new Error(`subscription refused (${error.status}): ${error.error ?? ''}`)),
  );
  channel.bind(EVENTS.started, (event) => {
    const task = upsert(event.task_id, event.model);
    if (!isFinal(task.status)) {
      task.status = 'running';
      render();
    }
  });
  channel.bind(EVENTS.completed, (event) => applyResult(event, 'push'));
  channel.bind(EVENTS.failed, (event) => applyResult(event, 'push'));
  chat.bind(channel);
}

// ---------- tasks ----------

function upsert(taskId, model) {
  let task = tasks.get(taskId);
  if (!task) {
    task = { task_id: taskId, model, status: 'queued' };
    tasks.set(taskId, task);
  }
  return task;
}

/** Applies an event or a status record; a final state is never overwritten. */
async function applyResult(data, via) {
  const task = upsert(data.task_id, data.model);
  if (isFinal(task.status)) return;
  Object.assign(task, { status: data.status, error: data.error, timings: data.timings, via });
  task.output = data.output;
  if (task.startedAt !== undefined && isFinal(data.status)) {
    task.latencyMs = performance.now() - task.startedAt;
  }
  if (data.result_url && data.output === undefined) {
    // Too large for one Pusher event: the result waits at the status endpoint.
    task.output = (await api(data.result_url)).output;
  }
  render();
}

async function catchUp() {
  let since = session.since;
  for (let page = 0; page < 20; page += 1) {
    const list = await api(`/v1/inference?since=${encodeURIComponent(since)}&limit=100`);
    for (const record of list.tasks) {
      if (isFinal(record.status)) {
        await applyResult(record, 'status API');
      } else {
        upsert(record.task_id, record.model).status = record.status;
      }
    }
    if (!list.next_since) break;
    since = list.next_since;
  }
  render();
}

async function submit(event) {
  event.preventDefault();
  const model = $('#model').value;
  const texts = $('#texts').value.split('\n').map((line) => line.trim()).filter(Boolean);
  if (texts.length === 0) return showError(new Error('Type at least one sentence.'));
  const input = { texts };
  if (model === 'echo' && Number($('#delay').value) > 0) input.delay_ms = Number($('#delay').value);
  $('#submit').disabled = true;
  $('#submit-error').textContent = '';
  const startedAt = performance.now();
  try {
    const accepted = await api('/v1/inference', { method: 'POST', body: JSON.stringify({ model, input }) });
    const task = upsert(accepted.task_id, model);
    Object.assign(task, { input, startedAt });
    // The push can beat the 202 for a fast model: then the latency is measured now.
    if (isFinal(task.status)) task.latencyMs = performance.now() - startedAt;
    save();
    render();
  } catch (error) {
    showError(error);
  } finally {
    $('#submit').disabled = false;
  }
}

function save() {
  const kept = sorted().slice(-MAX_TASKS).filter((task) => task.input)
    .map(({ task_id, model, input }) => ({ task_id, model, input }));
  localStorage.setItem(TASKS_KEY, JSON.stringify(kept));
}

function restore() {
  for (const { task_id, model, input } of JSON.parse(localStorage.getItem(TASKS_KEY) ?? '[]')) {
    upsert(task_id, model).input = input;
  }
}

// Task ids are UUIDv7: their text order is their submission order.
const sorted = () => [...tasks.values()].sort((a, b) => (a.task_id < b.task_id ? -1 : 1));

// ---------- rendering ----------

function showError(error) {
  $('#submit-error').textContent = error.message;
}

function cell(text, className) {
  const td = document.createElement('td');
  if (className) td.className = className;
  td.textContent = text;
  return td;
}

function summary(task) {
  if (task.error) {
    return `${task.error?.code}: ${task.error?.message}`;
  }
  if (!isFinal(task.status)) return '—';
  const output = task.output;
  if (typeof output?.text === 'string') {
    const text = output.text.length > 120 ? `${output.text.slice(0, 120)}…` : output.text;
    return `“${text}” · ${output.finish_reason} · ${output.usage?.completion_tokens} tokens`;
  }
  if (Array.isArray(output?.embeddings)) {
    const first = output.embeddings[0] ?? [];
    const head = first.slice(0, 4).map((x) => x.toFixed(3)).join(', ');
    return `${output.embeddings.length} × ${output.dimensions} floats · [${head}, …]`;
  }
  return JSON.stringify(output);
}

function latency(task) {
  if (task.latencyMs !== undefined) return `${Math.round(task.latencyMs)} ms`;
  if (task.timings?.total_ms !== undefined) return `${task.timings.total_ms} ms (server)`;
  return '';
}

function render() {
  const body = $('#tasks tbody');
  body.replaceChildren();
  for (const task of sorted().reverse()) {
    const row = document.createElement('tr');
    row.dataset.taskId = task.task_id;
    row.dataset.status = task.status;
    const id = cell('');
    id.append(Object.assign(document.createElement('code'), { textContent: task.task_id.slice(-12) }));
    id.title = task.task_id;
    const state = cell('');
    state.append(Object.assign(document.createElement('span'), {
      className: 'state', textContent: task.status,
    }));
    state.firstChild.dataset.status = task.status;
    if (task.via) state.append(Object.assign(document.createElement('span'), { className: 'via', textContent: `via ${task.via}` }));
    row.append(id, cell(task.model), state, cell(latency(task), 'latency'), cell(summary(task), 'result'));
    body.append(row);
  }
  $('#task-count').textContent = tasks.size ? `(${tasks.size})` : '';
  renderHeatmap();
}

function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i += 1) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / (Math.sqrt(na * nb) || 1);
}

function renderHeatmap() {
  const latest = new Map();
  for (const task of sorted()) {
    const embeddings = task.output?.embeddings;
    if (task.model !== EMBEDDING_MODEL || task.status !== 'succeeded' || !task.input?.texts || !embeddings) continue;
    task.input.texts.forEach((text, i) => {
      latest.delete(text);
      latest.set(text, embeddings[i]);
    });
  }
  const items = [...latest.entries()].slice(-HEATMAP_SIZE);
  const container = $('#heatmap');
  container.dataset.size = items.length;
  if (items.length === 0) return;
  const table = document.createElement('table');
  const head = document.createElement('tr');
  head.append(document.createElement('th'));
  items.forEach((_, i) => head.append(Object.assign(document.createElement('th'), { className: 'col', textContent: `${i + 1}` })));
  table.append(head);
  items.forEach(([text, a], i) => {
    const row = document.createElement('tr');
    row.append(Object.assign(document.createElement('th'), { textContent: `${i + 1}. ${text}`, title: text }));
    for (const [other, b] of items) {
      const value = cosine(a, b);
      const td = cell(value.toFixed(2), 'cell');
      const strength = Math.max(0, value);
      td.style.background = `hsl(225, 70%, ${Math.round(97 - 55 * strength)}%)`;
      td.style.color = strength > 0.55 ? '#fff' : '#1d2330';
      td.title = `${text}\n${other}\ncosine ${value.toFixed(4)}`;
      td.dataset.value = value.toFixed(4);
      row.append(td);
    }
    table.append(row);
  });
  container.replaceChildren(table);
}

// ---------- start ----------

$('#model').addEventListener('change', () => {
  $('#delay-label').hidden = $('#model').value !== 'echo';
});
$('#submit-form').addEventListener('submit', submit);

try {
  await signIn();
  restore();
  render();
  connect();
  await chat.start();
} catch (error) {
  showError(error);
}
