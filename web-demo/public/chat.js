// The demo page's chat panel: a conversation with a text-generation model (the models list's
// `kind`), whose answer is written into the page as its `inference.delta` events arrive over
// Pusher. The answer's text is a Transcript: after a reconnect it catches up from the status
// API's `progress` and goes on with the deltas after it; Stop cancels the generation
// (DELETE), which keeps the text written so far.

import { EVENTS, isFinal } from './lifecycle.js';
import { Transcript } from './transcript.js';

const GENERATION_KIND = 'text-generation';
const $ = (selector) => document.querySelector(selector);

/** The panel, given the page's `api(path, options)` and its error display. */
export function createChat({ api, showError }) {
  /** [{ role, content }] of the finished turns. */
  const messages = [];
  /** The answer being written: { taskId, transcript, element, startedAt, firstDeltaAt }. */
  let pending = null;

  async function loadModels() {
    const { models } = await api('/v1/models');
    const select = $('#chat-model');
    const generative = models.filter((model) => model.kind === GENERATION_KIND);
    select.replaceChildren(...generative.map((model) =>
      Object.assign(document.createElement('option'), { value: model.name, textContent: model.name })));
    $('#chat').hidden = generative.length === 0;
  }

  function bubble(role, text) {
    const element = Object.assign(document.createElement('div'), { className: `message ${role}` });
    element.dataset.role = role;
    element.append(Object.assign(document.createElement('p'), { textContent: text }));
    $('#chat-log').append(element);
    element.scrollIntoView({ block: 'end' });
    return element;
  }

  function render() {
    if (!pending) return;
    const { transcript, element } = pending;
    element.querySelector('p').textContent = transcript.text;
    element.dataset.seq = transcript.seq;
    element.dataset.state = transcript.final ? 'done' : 'streaming';
  }

  function setBusy(busy) {
    $('#chat-send').disabled = busy;
    $('#chat-stop').hidden = !busy;
  }

  async function send(event) {
    event.preventDefault();
    const content = $('#chat-input').value.trim();
    if (!content || pending) return;
    $('#chat-input').value = '';
    messages.push({ role: 'user', content });
    bubble('user', content);
    const element = bubble('assistant', '');
    element.dataset.state = 'queued';
    setBusy(true);
    try {
      const accepted = await api('/v1/inference', {
        method: 'POST',
        body: JSON.stringify({ model: $('#chat-model').value, input: { messages, max_tokens: 256 } }),
      });
      pending = { taskId: accepted.task_id, transcript: new Transcript(), element, startedAt: performance.now() };
      element.dataset.taskId = accepted.task_id;
      await catchUp();
    } catch (error) {
      messages.pop();
      element.remove();
      setBusy(false);
      showError(error);
    }
  }

  /** The status API's view of the pending answer: its final state, or its text so far. */
  async function catchUp() {
    if (!pending) return;
    const record = await api(`/v1/inference/${pending.taskId}`);
    if (isFinal(record.status)) return finish(record);
    if (pending.transcript.applyProgress(record.progress)) render();
  }

  function onDelta(delta) {
    if (delta.task_id !== pending?.taskId) return;
    pending.firstDeltaAt ??= performance.now();
    const applied = pending.transcript.applyDelta(delta);
    if (applied === 'gap') catchUp().catch(showError);
    else if (applied !== 'ignored') render();
  }

  function finish(record) {
    if (record.task_id !== pending?.taskId) return;
    const { transcript, element } = pending;
    transcript.finish(record);
    render();
    element.dataset.status = record.status;
    const output = record.output ?? {};
    const parts = [record.status];
    if (output.finish_reason) parts.push(`finish: ${output.finish_reason}`);
    if (output.usage) parts.push(`${output.usage.completion_tokens} tokens`);
    if (output.timings?.tokens_per_second) parts.push(`${output.timings.tokens_per_second.toFixed(1)} tokens/s`);
    if (pending.firstDeltaAt) parts.push(`first text after ${Math.round(pending.firstDeltaAt - pending.startedAt)} ms`);
    if (record.error && record.status !== 'cancelled') parts.push(`${record.error.code}: ${record.error.message}`);
    element.append(Object.assign(document.createElement('span'), { className: 'meta', textContent: parts.join(' · ') }));
    if (transcript.text) messages.push({ role: 'assistant', content: transcript.text });
    else messages.pop();
    pending = null;
    setBusy(false);
  }

  async function stop() {
    if (!pending) return;
    await api(`/v1/inference/${pending.taskId}`, { method: 'DELETE' }).catch(showError);
  }

  return {
    /** Binds the channel's events; call once the channel exists. */
    bind(channel) {
      channel.bind('inference.delta', onDelta);
      channel.bind(EVENTS.completed, finish);
      channel.bind(EVENTS.failed, finish);
      channel.bind('pusher:subscription_succeeded', () => catchUp().catch(showError));
    },
    async start() {
      $('#chat-form').addEventListener('submit', send);
      $('#chat-stop').addEventListener('click', stop);
      $('#chat-input').addEventListener('keydown', (event) => {
        if (event.key === 'Enter' && !event.shiftKey) send(event);
      });
      await loadModels();
    },
  };
}
