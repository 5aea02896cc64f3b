// POST /v1/chat/completions through the openai SDK (and raw SSE once).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, stopServer, client, MODEL_ID, rawSSE, collectChatStream,
} from './helpers.mjs';

const T = { timeout: 30_000 };
const user = (content) => [{ role: 'user', content }];

function assertUsage(u, what) {
  assert.ok(u && typeof u === 'object', `${what}: usage missing`);
  for (const k of ['prompt_tokens', 'completion_tokens', 'total_tokens']) {
    assert.ok(Number.isInteger(u[k]) && u[k] >= 0, `${what}: usage.${k} = ${u[k]}`);
  }
  assert.ok(u.prompt_tokens > 0, `${what}: usage.prompt_tokens = 0`);
  assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens, `${what}: total_tokens`);
  assert.equal(typeof u.prompt_tokens_details?.cached_tokens, 'number',
    `${what}: usage.prompt_tokens_details.cached_tokens missing: ${JSON.stringify(u)}`);
  assert.ok(u.prompt_tokens_details.cached_tokens >= 0 && u.prompt_tokens_details.cached_tokens <= u.prompt_tokens,
    `${what}: cached_tokens ${u.prompt_tokens_details.cached_tokens} not in [0, prompt_tokens]`);
}

describe('chat completions', () => {
  let server;
  let openai;
  before(async () => {
    server = await startServer();
    openai = client(server);
  });
  after(async () => {
    await stopServer(server);
  });

  const greedy = (content, extra = {}) => openai.chat.completions.create({
    model: MODEL_ID, messages: user(content), temperature: 0, max_tokens: 20, ...extra,
  });

  test('non-streaming: message, finish_reason, usage', T, async () => {
    const r = await greedy('Once upon a time');
    assert.equal(r.object, 'chat.completion');
    assert.equal(typeof r.id, 'string');
    assert.ok(r.id.length > 0);
    assert.ok(Number.isInteger(r.created) && r.created > 1_600_000_000, `created ${r.created}`);
    assert.equal(typeof r.model, 'string');
    assert.equal(r.choices.length, 1);
    const c = r.choices[0];
    assert.equal(c.index, 0);
    assert.equal(c.message.role, 'assistant');
    assert.equal(typeof c.message.content, 'string');
    assert.ok(c.message.content.length > 0, 'empty content');
    assert.ok(['length', 'stop'].includes(c.finish_reason), `finish_reason ${c.finish_reason}`);
    assert.ok(c.logprobs == null, `logprobs not requested but present: ${JSON.stringify(c.logprobs)}`);
    assertUsage(r.usage, 'chat');
    assert.ok(r.usage.completion_tokens > 0 && r.usage.completion_tokens <= 20, `completion_tokens ${r.usage.completion_tokens}`);
    if (c.finish_reason === 'length') assert.equal(r.usage.completion_tokens, 20);
  });

  test('greedy is deterministic and the repeat hits the prefix cache', T, async () => {
    const q = 'The cat sat on the mat and looked at the bird';
    const a = await greedy(q);
    const b = await greedy(q);
    assert.equal(b.choices[0].message.content, a.choices[0].message.content);
    assert.equal(b.usage.prompt_tokens, a.usage.prompt_tokens);
    assert.ok(b.usage.prompt_tokens_details.cached_tokens > 0,
      `second identical request: cached_tokens = ${b.usage.prompt_tokens_details.cached_tokens} (first: ${a.usage.prompt_tokens_details.cached_tokens})`);
  });

  test('streaming gives the same text as non-streaming', T, async () => {
    const q = 'Tom had a little dog';
    const full = await greedy(q);
    const stream = await greedy(q, { stream: true });
    const s = await collectChatStream(stream);
    assert.ok(s.chunks.length > 1, `only ${s.chunks.length} chunks`);
    assert.equal(s.content, full.choices[0].message.content);
    assert.equal(s.chunks[0].choices[0].delta.role, 'assistant', `first delta: ${JSON.stringify(s.chunks[0].choices[0].delta)}`);
    assert.equal(s.finishReason, full.choices[0].finish_reason);
    const ids = new Set(s.chunks.map((c) => c.id));
    assert.equal(ids.size, 1, `chunk ids differ: ${[...ids]}`);
    for (const c of s.chunks) {
      assert.equal(c.object, 'chat.completion.chunk');
      assert.ok(Number.isInteger(c.created));
    }
    // Only the last choice chunk carries a finish_reason.
    const withChoices = s.chunks.filter((c) => c.choices.length);
    for (const c of withChoices.slice(0, -1)) assert.ok(c.choices[0].finish_reason == null, `early finish_reason in ${JSON.stringify(c)}`);
  });

  test('stream_options.include_usage: a final chunk with choices [] and usage', T, async () => {
    const q = 'Lily went to the park';
    const full = await greedy(q);
    const s = await collectChatStream(await greedy(q, { stream: true, stream_options: { include_usage: true } }));
    const last = s.chunks.at(-1);
    assert.deepEqual(last.choices, [], `last chunk: ${JSON.stringify(last)}`);
    assertUsage(last.usage, 'stream usage');
    assert.equal(last.usage.completion_tokens, full.usage.completion_tokens);
    assert.equal(last.usage.prompt_tokens, full.usage.prompt_tokens);
    assert.equal(s.content, full.choices[0].message.content);
    for (const c of s.chunks.slice(0, -1)) assert.ok(c.usage == null, `usage before the final chunk: ${JSON.stringify(c)}`);
  });

  test('raw SSE: data: lines, chat.completion.chunk objects, ends with [DONE]', T, async () => {
    const r = await rawSSE(server, '/v1/chat/completions', {
      model: MODEL_ID, messages: user('Once upon a time'), temperature: 0, max_tokens: 10, stream: true,
    });
    assert.equal(r.status, 200, r.raw);
    assert.match(r.contentType, /^text\/event-stream/);
    assert.match(r.raw, /^(data: [^\n]+\n\n)+$/, `not a sequence of "data: ...\\n\\n" events: ${JSON.stringify(r.raw.slice(0, 400))}`);
    assert.ok(r.raw.endsWith('data: [DONE]\n\n'), `does not end with data: [DONE]: ${JSON.stringify(r.raw.slice(-200))}`);
    assert.equal(r.events.filter((e) => e === '[DONE]').length, 1);
    assert.ok(r.json.length >= 2);
    for (const c of r.json) assert.equal(c.object, 'chat.completion.chunk', JSON.stringify(c));
  });

  test('n: 2 gives choices 0 and 1', T, async () => {
    const r = await openai.chat.completions.create({
      model: MODEL_ID, messages: user('Once upon a time'), temperature: 0.9, seed: 42, n: 2, max_tokens: 16,
    });
    assert.equal(r.choices.length, 2);
    assert.deepEqual(r.choices.map((c) => c.index).sort(), [0, 1]);
    for (const c of r.choices) {
      assert.equal(c.message.role, 'assistant');
      assert.equal(typeof c.message.content, 'string');
      assert.ok(['length', 'stop'].includes(c.finish_reason));
    }
    assertUsage(r.usage, 'n=2');
    assert.ok(r.usage.completion_tokens <= 32, `completion_tokens ${r.usage.completion_tokens}`);
  });

  test('n: 2 streaming: chunks for both indexes, each with a finish_reason', T, async () => {
    const stream = await openai.chat.completions.create({
      model: MODEL_ID, messages: user('Once upon a time'), temperature: 0.9, seed: 42, n: 2, max_tokens: 8, stream: true,
    });
    const finished = new Map();
    for await (const chunk of stream) {
      for (const c of chunk.choices) if (c.finish_reason) finished.set(c.index, c.finish_reason);
    }
    assert.deepEqual([...finished.keys()].sort(), [0, 1]);
  });

  test('seed with temperature 1: identical requests give identical output', T, async () => {
    const req = { model: MODEL_ID, messages: user('A bird in the sky'), temperature: 1, seed: 1234, max_tokens: 24 };
    const a = await openai.chat.completions.create(req);
    const b = await openai.chat.completions.create(req);
    assert.ok(a.choices[0].message.content.length > 0);
    assert.equal(b.choices[0].message.content, a.choices[0].message.content);
  });

  test('top_k 1 at temperature 1 equals greedy; the other sampling parameters are accepted', T, async () => {
    const q = 'The sun was hot';
    const g = await greedy(q);
    const k1 = await greedy(q, { temperature: 1, top_k: 1, seed: 7 });
    assert.equal(k1.choices[0].message.content, g.choices[0].message.content);
    const all = await greedy(q, {
      temperature: 0.8, top_p: 0.9, top_k: 40, min_p: 0.05, presence_penalty: 0.5, frequency_penalty: 0.5, seed: 3,
    });
    assert.equal(typeof all.choices[0].message.content, 'string');
    assertUsage(all.usage, 'sampling');
  });

  describe('stop', () => {
    const q = 'Once upon a time there was a girl';
    let full;
    let word;
    let expected;
    before(async () => {
      const r = await openai.chat.completions.create({ model: MODEL_ID, messages: user(q), temperature: 0, max_tokens: 40 });
      full = r.choices[0].message.content;
      // A word of the unconstrained output that first occurs a few characters in.
      for (const w of full.split(/[^A-Za-z]+/)) {
        if (w.length >= 2 && full.indexOf(w) >= 5) { word = w; break; }
      }
      assert.ok(word, `no stop word found in ${JSON.stringify(full)}`);
      expected = full.slice(0, full.indexOf(word));
    });

    test('stop as array: text up to the stop string, finish_reason stop', T, async () => {
      const r = await openai.chat.completions.create({ model: MODEL_ID, messages: user(q), temperature: 0, max_tokens: 40, stop: [word] });
      const c = r.choices[0];
      assert.ok(!c.message.content.includes(word), `content ${JSON.stringify(c.message.content)} contains stop ${JSON.stringify(word)}`);
      assert.equal(c.finish_reason, 'stop');
      assert.equal(c.message.content, expected, `unconstrained: ${JSON.stringify(full)}, stop ${JSON.stringify(word)}`);
    });

    test('stop as a string', T, async () => {
      const r = await openai.chat.completions.create({ model: MODEL_ID, messages: user(q), temperature: 0, max_tokens: 40, stop: word });
      assert.equal(r.choices[0].finish_reason, 'stop');
      assert.equal(r.choices[0].message.content, expected);
    });

    test('stop while streaming: no part of the stop string is sent', T, async () => {
      const s = await collectChatStream(await openai.chat.completions.create({
        model: MODEL_ID, messages: user(q), temperature: 0, max_tokens: 40, stop: [word, 'zzzz'], stream: true,
      }));
      assert.equal(s.finishReason, 'stop');
      assert.equal(s.content, expected, `unconstrained: ${JSON.stringify(full)}, stop ${JSON.stringify(word)}`);
    });
  });

  test('logprobs with top_logprobs 3', T, async () => {
    const r = await greedy('Once upon a time', { logprobs: true, top_logprobs: 3 });
    const c = r.choices[0];
    assert.ok(c.logprobs && Array.isArray(c.logprobs.content), `logprobs: ${JSON.stringify(c.logprobs)}`);
    const lp = c.logprobs.content;
    assert.equal(lp.length, r.usage.completion_tokens, 'one logprobs entry per completion token');
    const bytes = [];
    for (const e of lp) {
      const ctx = JSON.stringify(e);
      assert.equal(typeof e.token, 'string', ctx);
      assert.equal(typeof e.logprob, 'number', ctx);
      assert.ok(e.logprob <= 0, `logprob > 0: ${ctx}`);
      assert.ok(Array.isArray(e.bytes) && e.bytes.every((b) => Number.isInteger(b) && b >= 0 && b <= 255), `bytes: ${ctx}`);
      bytes.push(...e.bytes);
      assert.ok(Array.isArray(e.top_logprobs), ctx);
      assert.equal(e.top_logprobs.length, 3, ctx);
      for (const t of e.top_logprobs) {
        assert.equal(typeof t.token, 'string', ctx);
        assert.ok(typeof t.logprob === 'number' && t.logprob <= 0, ctx);
        assert.ok(Array.isArray(t.bytes), ctx);
      }
      for (let i = 1; i < 3; i++) assert.ok(e.top_logprobs[i - 1].logprob >= e.top_logprobs[i].logprob, `not sorted: ${ctx}`);
      // Greedy: the chosen token is the most likely one.
      assert.equal(e.token, e.top_logprobs[0].token, `greedy token is not the top one: ${ctx}`);
      assert.ok(Math.abs(e.logprob - e.top_logprobs[0].logprob) < 1e-4, ctx);
    }
    assert.equal(Buffer.from(bytes).toString('utf8'), c.message.content, 'the tokens\' bytes spell the content');
  });

  test('max_completion_tokens works like max_tokens', T, async () => {
    const q = 'Once upon a time';
    const a = await openai.chat.completions.create({ model: MODEL_ID, messages: user(q), temperature: 0, max_tokens: 5 });
    const b = await openai.chat.completions.create({ model: MODEL_ID, messages: user(q), temperature: 0, max_completion_tokens: 5 });
    assert.ok(b.usage.completion_tokens <= 5, `completion_tokens ${b.usage.completion_tokens}`);
    assert.equal(b.usage.completion_tokens, a.usage.completion_tokens);
    assert.equal(b.choices[0].message.content, a.choices[0].message.content);
    assert.equal(b.choices[0].finish_reason, a.choices[0].finish_reason);
  });

  test('system message plus user message', T, async () => {
    const plain = await greedy('Tell me a story');
    const r = await openai.chat.completions.create({
      model: MODEL_ID, temperature: 0, max_tokens: 20,
      messages: [{ role: 'system', content: 'You are a storyteller.' }, { role: 'user', content: 'Tell me a story' }],
    });
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.equal(typeof r.choices[0].message.content, 'string');
    assert.ok(r.usage.prompt_tokens > plain.usage.prompt_tokens, 'the system message is part of the prompt');
  });

  test('multi-turn conversation with an assistant message', T, async () => {
    const r = await openai.chat.completions.create({
      model: MODEL_ID, temperature: 0, max_tokens: 20,
      messages: [
        { role: 'system', content: 'You are a storyteller.' },
        { role: 'user', content: 'Tell me a story' },
        { role: 'assistant', content: 'Once upon a time there was a dog.' },
        { role: 'user', content: 'What did the dog do?' },
      ],
    });
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.equal(typeof r.choices[0].message.content, 'string');
    assert.ok(['length', 'stop'].includes(r.choices[0].finish_reason));
    assertUsage(r.usage, 'multi-turn');
  });
});
