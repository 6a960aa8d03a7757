// OpenAI's Node SDK (npm `openai`) against inferpush's /v1/embeddings: the SDK's default
// request, both encodings decoding to the same vectors, a batch of 100 inputs, usage, the
// vectors against the sentence-transformers reference, and the SDK's usual errors.
// Run by integration-tests/tests/openai.rs with INFERPUSH_API_URL, INFERPUSH_API_KEY and
// REFERENCE_JSON set.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import OpenAI from 'openai';

const MODEL = 'all-minilm-l6-v2';
const baseURL = `${process.env.INFERPUSH_API_URL}/v1`;
const client = new OpenAI({ baseURL, apiKey: process.env.INFERPUSH_API_KEY, maxRetries: 0 });
const reference = JSON.parse(readFileSync(process.env.REFERENCE_JSON, 'utf8'));

function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  return dot / Math.sqrt(na * nb);
}

test('the SDK default request matches sentence-transformers and counts usage', async () => {
  const answer = await client.embeddings.create({ model: MODEL, input: reference.sentences[2] });
  assert.equal(answer.object, 'list');
  assert.equal(answer.data.length, 1);
  assert.equal(answer.data[0].embedding.length, 384);
  assert.ok(cosine(answer.data[0].embedding, reference.embeddings[2]) >= 0.999);
  assert.ok(answer.usage.prompt_tokens > 2);
  assert.equal(answer.usage.total_tokens, answer.usage.prompt_tokens);
});

test('100 inputs in both encodings decode to the same vectors, in order', async () => {
  const inputs = Array.from({ length: 100 }, (_, i) => `${reference.sentences[i % reference.sentences.length]} (${i})`);
  const floats = await client.embeddings.create({ model: MODEL, input: inputs, encoding_format: 'float' });
  const packed = await client.embeddings.create({ model: MODEL, input: inputs, encoding_format: 'base64' });
  assert.deepEqual(floats.data.map((d) => d.index), [...Array(100).keys()]);
  assert.equal(typeof packed.data[0].embedding, 'string');
  for (let i = 0; i < 100; i++) {
    const bytes = Buffer.from(packed.data[i].embedding, 'base64');
    const decoded = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
    assert.equal(decoded.length, 384);
    for (let j = 0; j < 384; j++) assert.ok(Math.abs(decoded[j] - floats.data[i].embedding[j]) < 1e-6);
  }
  assert.equal(floats.usage.prompt_tokens, packed.usage.prompt_tokens);
});

test('errors are the SDK errors it always raises', async () => {
  await assert.rejects(client.embeddings.create({ model: 'text-embedding-3-small', input: 'x' }),
    (e) => e instanceof OpenAI.NotFoundError && e.code === 'model_not_found');
  await assert.rejects(client.embeddings.create({ model: MODEL, input: [[101, 102]] }),
    (e) => e instanceof OpenAI.UnprocessableEntityError);
  await assert.rejects(client.embeddings.create({ model: MODEL, input: ['ok', ''] }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'input');
  const stranger = new OpenAI({ baseURL, apiKey: 'not-a-key', maxRetries: 0 });
  await assert.rejects(stranger.embeddings.create({ model: MODEL, input: 'x' }),
    (e) => e instanceof OpenAI.AuthenticationError);
});
