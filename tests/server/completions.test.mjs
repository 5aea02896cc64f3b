// POST /v1/completions (the legacy text API) through the openai SDK.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  startServer, stopServer, client, MODEL_ID, MODEL_PATH, BIN, rawSSE,
} from './helpers.mjs';

const T = { timeout: 30_000 };
const PROMPT = 'Once upon a time';

describe('completions', () => {
  let server;
  let openai;
  let base; // the greedy answer to PROMPT, max_tokens 16
  before(async () => {
    server = await startServer();
    openai = client(server);
  });
  after(async () => {
    await stopServer(server);
  });

  const greedy = (extra = {}) => openai.completions.create({
    model: MODEL_ID, prompt: PROMPT, max_tokens: 16, temperature: 0, ...extra,
  });

  test('text and usage', T, async () => {
    const r = await greedy();
    base = r;
    assert.equal(r.object, 'text_completion');
    assert.equal(typeof r.id, 'string');
    assert.ok(Number.isInteger(r.created));
    assert.equal(r.choices.length, 1);
    const c = r.choices[0];
    assert.equal(c.index, 0);
    assert.equal(typeof c.text, 'string');
    assert.ok(c.text.length > 0);
    assert.ok(['length', 'stop'].includes(c.finish_reason), `finish_reason ${c.finish_reason}`);
    assert.ok(c.logprobs == null, `logprobs not requested: ${JSON.stringify(c.logprobs)}`);
    const u = r.usage;
    assert.ok(u.prompt_tokens > 0);
    assert.ok(u.completion_tokens > 0 && u.completion_tokens <= 16, `completion_tokens ${u.completion_tokens}`);
    assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
    assert.equal(typeof u.prompt_tokens_details?.cached_tokens, 'number', `usage: ${JSON.stringify(u)}`);
    // stories260K continues this prompt with ", there was a little girl named Lily." (greedy).
    assert.ok(c.text.startsWith(', there was'), `text ${JSON.stringify(c.text)}`);
  });

  test('streaming gives the same text', T, async () => {
    const full = base ?? await greedy();
    const stream = await greedy({ stream: true });
    let text = '';
    let finish = null;
    let n = 0;
    for await (const chunk of stream) {
      n++;
      assert.equal(chunk.object, 'text_completion');
      for (const c of chunk.choices) {
        text += c.text ?? '';
        if (c.finish_reason) finish = c.finish_reason;
      }
    }
    assert.ok(n > 1, `${n} chunks`);
    assert.equal(text, full.choices[0].text);
    assert.equal(finish, full.choices[0].finish_reason);
  });

  test('raw SSE ends with [DONE]; include_usage adds a usage chunk', T, async () => {
    const r = await rawSSE(server, '/v1/completions', {
      model: MODEL_ID, prompt: PROMPT, max_tokens: 8, temperature: 0, stream: true, stream_options: { include_usage: true },
    });
    assert.equal(r.status, 200, r.raw);
    assert.match(r.contentType, /^text\/event-stream/);
    assert.match(r.raw, /^(data: [^\n]+\n\n)+$/, JSON.stringify(r.raw.slice(0, 400)));
    assert.ok(r.raw.endsWith('data: [DONE]\n\n'));
    for (const c of r.json) assert.equal(c.object, 'text_completion', JSON.stringify(c));
    const last = r.json.at(-1);
    assert.deepEqual(last.choices, [], JSON.stringify(last));
    assert.ok(last.usage && last.usage.completion_tokens > 0 && last.usage.completion_tokens <= 8, JSON.stringify(last));
  });

  test('logprobs: 2 gives the legacy shape', T, async () => {
    const r = await greedy({ logprobs: 2 });
    const c = r.choices[0];
    const lp = c.logprobs;
    assert.ok(lp && typeof lp === 'object', `logprobs: ${JSON.stringify(lp)}`);
    const n = r.usage.completion_tokens;
    for (const k of ['tokens', 'token_logprobs', 'top_logprobs', 'text_offset']) {
      assert.ok(Array.isArray(lp[k]), `logprobs.${k}: ${JSON.stringify(lp)}`);
      assert.equal(lp[k].length, n, `logprobs.${k} has ${lp[k].length} entries, completion_tokens ${n}`);
    }
    assert.equal(lp.tokens.join(''), c.text, 'tokens spell the text');
    for (let i = 0; i < n; i++) {
      assert.equal(typeof lp.tokens[i], 'string');
      assert.ok(typeof lp.token_logprobs[i] === 'number' && lp.token_logprobs[i] <= 0, `token_logprobs[${i}] ${lp.token_logprobs[i]}`);
      const top = lp.top_logprobs[i];
      assert.ok(top && typeof top === 'object' && !Array.isArray(top), `top_logprobs[${i}]: ${JSON.stringify(top)}`);
      const vals = Object.values(top);
      assert.ok(vals.length >= 1 && vals.length <= 2, `top_logprobs[${i}] has ${vals.length} entries: ${JSON.stringify(top)}`);
      for (const v of vals) assert.ok(typeof v === 'number' && v <= 0);
      // Greedy: the chosen token is among the top ones, with the highest logprob.
      assert.ok(lp.tokens[i] in top, `token ${JSON.stringify(lp.tokens[i])} not in top_logprobs[${i}] ${JSON.stringify(top)}`);
      assert.ok(Math.abs(Math.max(...vals) - lp.token_logprobs[i]) < 1e-4);
      assert.ok(Number.isInteger(lp.text_offset[i]));
      if (i > 0) assert.equal(lp.text_offset[i], lp.text_offset[i - 1] + lp.tokens[i - 1].length, `text_offset[${i}]`);
    }
  });

  test('prompt as an array of token ids', T, async () => {
    const full = base ?? await greedy();
    const ids = JSON.parse(execFileSync(BIN, ['tokenize', '-m', MODEL_PATH, PROMPT], { encoding: 'utf8', timeout: 10_000 }));
    assert.ok(Array.isArray(ids) && ids.length > 0);
    const r = await greedy({ prompt: ids });
    assert.equal(typeof r.choices[0].text, 'string');
    assert.ok(r.choices[0].text.length > 0);
    assert.equal(r.usage.prompt_tokens, ids.length, `ids ${JSON.stringify(ids)}`);
    // `tokenize` gives the ids the string prompt is tokenized to (BOS included), so the
    // continuation is the same.
    if (full.usage.prompt_tokens === ids.length) assert.equal(r.choices[0].text, full.choices[0].text);
  });

  test('stop on completions', T, async () => {
    const r = await greedy({ max_tokens: 30, stop: ['Lily'] });
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.equal(r.choices[0].text, ', there was a little girl named ');
  });

  test('max_tokens 100000 is context_length_exceeded', T, async () => {
    const e = await greedy({ max_tokens: 100000 }).then(() => null, (err) => err);
    assert.ok(e, 'expected an error');
    assert.equal(e.status, 400);
    assert.equal(e.code, 'context_length_exceeded');
  });
});
