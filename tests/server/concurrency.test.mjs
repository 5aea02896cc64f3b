// Many streams at once, clients that go away mid-stream, and SIGTERM with streams open.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  OpenAI, startServer, stopServer, client, MODEL_ID, collectChatStream, metricsText, parseMetrics, rawRequest,
  sleep, withTimeout, assertErrorShape,
} from './helpers.mjs';

const SUBJECTS = ['a dog', 'a cat', 'a bird', 'a fish', 'the sun', 'the moon', 'a big tree', 'a red ball',
  'a little girl', 'a boy named Tom', 'a toy car', 'the park', 'a cake', 'a frog', 'a boat', 'the rain'];
const PROMPTS = SUBJECTS.map((s) => `Tell me a story about ${s}.`);

function running(text) {
  const m = parseMetrics(text);
  const a = m.values.get('tokenfab_requests_running');
  const b = m.values.get('vllm:num_requests_running');
  return { running: a ?? b, vllm: b, waiting: m.values.get('vllm:num_requests_waiting') };
}

describe('concurrency', () => {
  let server;
  let openai;
  before(async () => {
    server = await startServer();
    openai = client(server, { timeout: 60_000 });
  });
  after(async () => {
    await stopServer(server);
  });

  const streamOne = async (prompt) => collectChatStream(await openai.chat.completions.create({
    model: MODEL_ID, messages: [{ role: 'user', content: prompt }], temperature: 0, max_tokens: 32,
    stream: true, stream_options: { include_usage: true },
  }));

  test('16 simultaneous streams each get the text they get alone', { timeout: 90_000 }, async () => {
    const alone = [];
    for (const p of PROMPTS) alone.push(await streamOne(p));
    for (const [i, a] of alone.entries()) assert.ok(a.content.length > 0, `prompt ${i} alone: empty`);
    const t0 = performance.now();
    const together = await Promise.all(PROMPTS.map((p) => streamOne(p)));
    const secs = (performance.now() - t0) / 1000;
    const tokens = together.reduce((n, r) => n + (r.usage?.completion_tokens ?? 0), 0);
    console.log(`16 concurrent streams: ${tokens} completion tokens in ${secs.toFixed(3)} s = ${(tokens / secs).toFixed(1)} tokens/s aggregate`);
    for (const [i, r] of together.entries()) {
      assert.equal(r.content, alone[i].content, `prompt ${i} (${JSON.stringify(PROMPTS[i])}) differs under concurrency`);
      assert.equal(r.finishReason, alone[i].finishReason, `prompt ${i} finish_reason`);
      assert.equal(r.usage?.completion_tokens, alone[i].usage?.completion_tokens, `prompt ${i} completion_tokens`);
    }
  });

  test('50 clients that abort mid-stream leave the server healthy', { timeout: 60_000 }, async () => {
    let aborted = 0;
    for (let i = 0; i < 50; i++) {
      const controller = new AbortController();
      const stream = await openai.chat.completions.create({
        model: MODEL_ID, messages: [{ role: 'user', content: PROMPTS[i % PROMPTS.length] }], temperature: 0.7, seed: i,
        max_tokens: 400, stream: true,
      }, { signal: controller.signal });
      let chunks = 0;
      try {
        await withTimeout((async () => {
          for await (const chunk of stream) { // eslint-disable-line no-unused-vars
            if (++chunks === 2) {
              controller.abort();
              aborted++;
            }
          }
        })(), 10_000, `aborted stream ${i}`);
      } catch (e) {
        if (e.name !== 'AbortError' && !(e instanceof Error && /abort/i.test(e.message))) throw e;
      }
      assert.ok(chunks >= 2, `stream ${i} ended after ${chunks} chunks`);
    }
    assert.equal(aborted, 50);
    // The cancelled requests leave the scheduler within a couple of seconds.
    const t0 = Date.now();
    let last;
    for (;;) {
      last = running((await metricsText(server)).text);
      if (last.running === 0 && (last.vllm ?? 0) === 0 && (last.waiting ?? 0) === 0) break;
      if (Date.now() - t0 > 3000) assert.fail(`requests still running 3 s after the clients left: ${JSON.stringify(last)}`);
      await sleep(50);
    }
    assert.equal((await rawRequest(server, 'GET', '/health')).status, 200);
    const r = await openai.chat.completions.create({
      model: MODEL_ID, messages: [{ role: 'user', content: PROMPTS[0] }], temperature: 0, max_tokens: 8,
    });
    assert.ok(r.choices[0].message.content.length > 0);
  });
});

describe('SIGTERM with streams open', () => {
  test('the server exits 0 and every stream ends', { timeout: 60_000 }, async () => {
    // A longer context so the streams are still generating when the signal comes.
    const server = await startServer({ ctx: 4096 });
    const openai = client(server, { timeout: 30_000 });
    const firstChunk = [];
    const results = PROMPTS.slice(0, 4).map((p, i) => {
      let signal;
      firstChunk.push(new Promise((r) => { signal = r; }));
      return (async () => {
        let chunks = 0;
        let finish = null;
        try {
          const stream = await openai.chat.completions.create({
            model: MODEL_ID, messages: [{ role: 'user', content: p }], temperature: 0.8, seed: i, max_tokens: 3500, stream: true,
          });
          for await (const chunk of stream) {
            if (++chunks === 1) signal();
            for (const c of chunk.choices) if (c.finish_reason) finish = c.finish_reason;
          }
          return { ok: true, chunks, finish };
        } catch (e) {
          return { ok: false, chunks, finish, error: String(e) };
        } finally {
          signal();
        }
      })();
    });
    await withTimeout(Promise.all(firstChunk), 20_000, 'first chunk of every stream');
    const settled = { n: 0 };
    results.forEach((p) => p.then(() => { settled.n++; }));
    await sleep(0);
    const openAtSignal = 4 - settled.n;
    const exit = await server.stop();
    const outcomes = await withTimeout(Promise.all(results), 15_000, 'every stream to end after SIGTERM');
    console.log(`SIGTERM with ${openAtSignal} streams open: exit ${JSON.stringify(exit)}; streams: ${JSON.stringify(outcomes)}`);
    assert.equal(exit.signal, null, `killed by ${exit.signal}\n${server.log()}`);
    assert.equal(exit.code, 0, `exit code ${exit.code}\n${server.log()}`);
    assert.ok(openAtSignal > 0, 'every stream had finished before SIGTERM: the test proved nothing');
    for (const o of outcomes) assert.ok(o.chunks >= 1);
  });
});

describe('queue full', () => {
  test('429 with Retry-After when the queue is full, then the server recovers', { timeout: 60_000 }, async () => {
    const server = await startServer({ parallel: 1, ctx: 1024, args: ['--max-queue', '1'] });
    try {
      const openai = client(server, { maxRetries: 0 });
      const req = (i) => openai.chat.completions.create({
        model: MODEL_ID, messages: [{ role: 'user', content: PROMPTS[i] }], temperature: 0, max_tokens: 900,
      }).then((r) => ({ ok: true, r }), (e) => ({ ok: false, e }));
      // One decoding, one waiting: the rest of 6 requests sent at once find the queue full.
      const outcomes = await Promise.all([0, 1, 2, 3, 4, 5].map(req));
      const ok = outcomes.filter((o) => o.ok);
      const limited = outcomes.filter((o) => !o.ok);
      console.log(`--parallel 1 --max-queue 1, 6 requests at once: ${ok.length} answered, ${limited.length} refused`);
      assert.ok(ok.length >= 1, 'no request was answered');
      assert.ok(limited.length >= 1, 'no request was refused with a full queue');
      for (const { e } of limited) {
        assert.ok(e instanceof OpenAI.RateLimitError, `got ${e?.constructor?.name}: ${e}`);
        assert.equal(e.status, 429);
        assertErrorShape({ error: e.error }, '429');
        const ra = e.headers?.get('retry-after');
        assert.ok(ra && /^\d+$/.test(ra), `Retry-After header ${JSON.stringify(ra)}`);
      }
      const r = await openai.chat.completions.create({
        model: MODEL_ID, messages: [{ role: 'user', content: PROMPTS[0] }], temperature: 0, max_tokens: 8,
      });
      assert.ok(r.choices[0].message.content.length > 0);
    } finally {
      await stopServer(server);
    }
  });
});
