// Robustness: clients that vanish mid-stream by the thousand, a reader that stalls (and one
// that stalls past the 8 MiB backlog), an overload burst against a tiny queue, a thousand idle
// connections, bytes that are not HTTP or not JSON, running out of file descriptors, SIGTERM
// with streams open and requests queued, and the 30 s read timeout. Each test prints its
// figures. The whole file takes about 30 s (the read-timeout wait overlaps the rest).
//
// Raw `net` sockets (sockets.mjs) are used wherever the SDK would hide what goes over the
// wire or be too slow; everything talks to 127.0.0.1.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import {
  startServer, stopServer, client, MODEL_ID, metricsText, parseMetrics, rawRequest, parseSSE,
  collectChatStream, assertErrorShape, sleep, words,
} from './helpers.mjs';
import {
  RawConn, requestBytes, responseOf, memoryKiB, openFileLimit, openFileLimitOf, openFileCount, cpuTicks, pool,
} from './sockets.mjs';

const CHAT = '/v1/chat/completions';
const MiB = 1024 * 1024;
const user = (content) => [{ role: 'user', content }];
const PROMPTS = ['Tell me a story about a dog.', 'Tell me a story about a cat.', 'Tell me a story about a frog.',
  'Tell me a story about the moon.', 'Tell me a story about a boat.', 'Tell me a story about a red ball.',
  'Tell me a story about a little girl.', 'Tell me a story about the rain.'];

async function gauges(server) {
  const v = parseMetrics((await metricsText(server)).text).values;
  return {
    running: v.get('tokenfab_requests_running'),
    waiting: v.get('tokenfab_requests_waiting'),
    kvUsed: v.get('tokenfab_kv_cache_cells_used'),
    kvBlocksUsed: v.get('tokenfab_kv_cache_blocks_used'),
    vllmRunning: v.get('vllm:num_requests_running'),
    vllmWaiting: v.get('vllm:num_requests_waiting'),
    connections: v.get('tokenfab_http_connections'),
    completionTokens: v.get('tokenfab_completion_tokens_total'),
  };
}

// Polls /metrics until pred(gauges) holds; fails with the last gauges after `ms`.
async function waitGauges(server, pred, ms, what) {
  const t0 = Date.now();
  let g;
  for (;;) {
    g = await gauges(server);
    if (pred(g)) return g;
    if (Date.now() - t0 > ms) assert.fail(`${what}: not reached within ${ms} ms; /metrics: ${JSON.stringify(g)}`);
    await sleep(50);
  }
}

const idle = (g) => g.running === 0 && g.waiting === 0 && g.kvUsed === 0 && g.kvBlocksUsed === 0 && g.vllmRunning === 0 && g.vllmWaiting === 0;

// The server answers a normal chat request with the text it gave before (greedy).
async function assertAnswers(server, openai, reference, what) {
  assert.equal(server.exited(), null, `${what}: the server exited\n${server.log()}`);
  const h = await rawRequest(server, 'GET', '/health');
  assert.equal(h.status, 200, `${what}: /health ${h.status} ${h.text}`);
  const r = await openai.chat.completions.create({
    model: MODEL_ID, messages: user(PROMPTS[0]), temperature: 0, max_tokens: 16,
  });
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.ok(r.choices[0].message.content.length > 0, `${what}: empty answer`);
  if (reference !== undefined) {
    assert.equal(r.choices[0].message.content, reference, `${what}: the greedy answer changed`);
  }
  return r.choices[0].message.content;
}

// A streaming chat request on a raw connection; resolves once the request is written.
async function openRawStream(server, body, { headers = {} } = {}) {
  const conn = await RawConn.open(server.port);
  await conn.write(requestBytes('POST', CHAT, server.port, { model: MODEL_ID, stream: true, ...body }, { headers }));
  return conn;
}

const hasData = (c) => {
  const h = c.head();
  return h !== null && c.buffer().indexOf('data:', h.bodyStart) >= 0;
};
const fmtMiB = (kib) => `${(kib / 1024).toFixed(1)} MiB`;

// The read timeout (30 s to receive a whole request, src/server/http.h) closes connections
// that never complete one, also one that trickles a byte every 2 s. Started when the file loads
// so that the wait overlaps the other tests; judged by the last test.
const READ_TIMEOUT_MS = 30_000;
const readTimeoutWatch = (() => {
  const p = (async () => {
    const server = await startServer();
    const kinds = [
      ['nothing sent', null],
      ['half a request head', 'POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le'],
      ['a whole head, 10 of its 100 body bytes', 'POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n' +
        'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"model": '],
      ['a head trickled a byte every 2 s', 'trickle'],
    ];
    try {
      return await Promise.all(kinds.map(async ([name, what]) => {
        const c = await RawConn.open(server.port);
        const t0 = performance.now();
        let timer = null;
        if (what === 'trickle') {
          const head = `GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ${'a'.repeat(100)}\r\n\r\n`;
          let i = 0;
          timer = setInterval(() => {
            if (!c.isClosed && i < head.length) c.socket.write(head[i++]);
          }, 2000);
        } else if (what) {
          await c.write(what);
        }
        const closed = await c.waitClosed(READ_TIMEOUT_MS + 15_000).then(() => true, () => false);
        if (timer) clearInterval(timer);
        const ms = performance.now() - t0;
        const h = c.head();
        c.destroy();
        return { name, closed, ms, status: h ? h.status : null };
      }));
    } finally {
      await stopServer(server);
    }
  })();
  p.catch(() => {}); // judged (and reported) by the test that awaits it
  return p;
})();

describe('1,000 clients that disconnect mid-stream', () => {
  let server;
  let openai;
  before(async () => {
    server = await startServer();
    openai = client(server);
  });
  after(async () => {
    await stopServer(server);
  });

  test('leave no running request, no KV cells, no RSS growth, and a working server', { timeout: 60_000 }, async () => {
    const TOTAL = 1000;
    const WIDTH = 8;
    const reference = await assertAnswers(server, openai, undefined, 'before');
    const one = async (i) => {
      const conn = await openRawStream(server, {
        messages: user(PROMPTS[i % PROMPTS.length]), max_tokens: 200, ignore_eos: true,
        temperature: 0.8, seed: i,
      });
      const got = await conn.waitFor(hasData, 10_000, `the first chunk of stream ${i}`);
      const head = conn.head();
      const r = responseOf(conn);
      // Half close with FIN, half with RST.
      if (i % 2) conn.reset();
      else conn.destroy();
      await conn.waitClosed(5000, `stream ${i} close`);
      assert.ok(got, `stream ${i}: closed before its first chunk; received ${JSON.stringify(conn.text().slice(0, 300))}`);
      assert.equal(head.status, 200, `stream ${i}: ${head.statusLine}`);
      return { finished: Boolean(r?.complete) };
    };
    // Warm up (allocator pools, first-use buffers), then measure.
    await pool(32, WIDTH, one);
    await waitGauges(server, idle, 5000, 'idle after the warm-up');
    const mem0 = memoryKiB(server.child.pid);
    const conns0 = (await gauges(server)).connections;
    const t0 = performance.now();
    const results = await pool(TOTAL, WIDTH, one);
    const secs = (performance.now() - t0) / 1000;
    const finishedFirst = results.filter((r) => r.finished).length;
    const tIdle = performance.now();
    const g = await waitGauges(server, idle, 5000, `idle after ${TOTAL} disconnects`);
    const idleMs = performance.now() - tIdle;
    const gc = await waitGauges(server, (x) => x.connections <= conns0 + 4, 5000,
      `open connections back to about ${conns0} after ${TOTAL} disconnects`);
    const mem1 = memoryKiB(server.child.pid);
    console.log(`${TOTAL} disconnects (${WIDTH} at a time, FIN/RST alternating) in ${secs.toFixed(2)} s; ` +
      `${TOTAL - finishedFirst} cut mid-stream, ${finishedFirst} had already ended; idle ${idleMs.toFixed(0)} ms later ` +
      `(${JSON.stringify(g)}), connections ${conns0} -> ${gc.connections}`);
    console.log(`server RSS: ${fmtMiB(mem0.rss)} before, ${fmtMiB(mem1.rss)} after ` +
      `(${((mem1.rss - mem0.rss) / 1024).toFixed(1)} MiB growth), peak ${fmtMiB(mem1.hwm)}`);
    assert.ok(TOTAL - finishedFirst >= TOTAL / 2,
      `only ${TOTAL - finishedFirst} of ${TOTAL} streams were still going at the disconnect: the test proved little`);
    // Under AddressSanitizer freed memory sits in a quarantine (up to 256 MiB) before reuse,
    // so RSS grows without any leak: the sanitizer's own leak check covers that build.
    const limitKiB = process.env.TOKENFAB_SANITIZED ? 320 * 1024 : 50 * 1024;
    assert.ok(mem1.rss - mem0.rss <= limitKiB,
      `server RSS grew by ${((mem1.rss - mem0.rss) / 1024).toFixed(1)} MiB over ${TOTAL} disconnects (${mem0.rss} -> ${mem1.rss} KiB)`);
    await assertAnswers(server, openai, reference, `after ${TOTAL} disconnects`);
  });
});

describe('a client that never reads its stream', () => {
  let server;
  let openai;
  before(async () => {
    server = await startServer({ ctx: 4096, parallel: 10 }); // 8 choices of one request + others
    openai = client(server, { timeout: 30_000 });
  });
  after(async () => {
    await stopServer(server);
  });

  // 4 normal streams (prompts of ~300 words, 128 tokens each); resolves to the wall time in ms.
  const fourStreams = async () => {
    const t0 = performance.now();
    const rs = await Promise.all(PROMPTS.slice(0, 4).map(async (p) => collectChatStream(await openai.chat.completions.create({
      model: MODEL_ID, messages: user(`${words(300)}. ${p}`), temperature: 0, max_tokens: 128, ignore_eos: true, stream: true,
    }))));
    const ms = performance.now() - t0;
    for (const r of rs) {
      assert.equal(r.finishReason, 'length');
      assert.ok(r.content.length > 0);
    }
    return ms;
  };
  const rounds = async () => {
    const out = [];
    for (let i = 0; i < 3; i++) out.push(await fourStreams());
    return out;
  };
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const LONG = {
    messages: user('Tell me a very long story.'), max_tokens: 2500, ignore_eos: true, temperature: 0.8, seed: 1,
    logprobs: true, top_logprobs: 20, // ~1.5 KB per token: the kernel's socket buffers fill in a few seconds
  };

  test('does not slow 4 other streams, and is dropped or finishes', { timeout: 60_000 }, async () => {
    const reference = await assertAnswers(server, openai, undefined, 'before');
    await fourStreams(); // warm-up
    const base = await rounds();

    // Control: the same long stream, read as it comes (its decoding costs the others as much).
    const control = await openRawStream(server, LONG);
    await control.waitFor(hasData, 10_000, 'the control stream\'s first chunk');
    await sleep(300);
    const withReader = await rounds();
    control.destroy();
    await waitGauges(server, idle, 5000, 'idle after the control stream');

    const stalled = await openRawStream(server, LONG);
    await stalled.waitFor(hasData, 10_000, 'the stalled stream\'s first chunk');
    stalled.socket.pause(); // stop reading: the kernel buffers fill, then the server's backlog grows
    const atPause = stalled.bytes;
    await sleep(300);
    const withStall = await rounds();
    const during = await gauges(server);
    const b = median(base);
    const c = median(withReader);
    const w = median(withStall);
    const fmt = (xs) => xs.map((x) => x.toFixed(0)).join('/');
    console.log(`4 streams x 128 tokens: alone ${fmt(base)} ms (median ${b.toFixed(0)}); next to a long stream that is read ` +
      `${fmt(withReader)} ms (median ${c.toFixed(0)}); next to the same stream stalled ${fmt(withStall)} ms (median ` +
      `${w.toFixed(0)}): x${(w / b).toFixed(2)} alone, x${(w / c).toFixed(2)} the read one; stalled reader still decoding: ${during.running >= 1}`);
    assert.ok(during.running >= 1, `the stalled stream had already ended during the measurement: ${JSON.stringify(during)}`);
    assert.ok(w <= 3 * b + 200, `4 streams took ${w.toFixed(0)} ms with a stalled reader, ${b.toFixed(0)} ms without ` +
      `(${c.toFixed(0)} ms next to the same stream read normally)`);

    // It ends (all tokens generated, or dropped for its backlog) while still not reading.
    const t0 = performance.now();
    await waitGauges(server, idle, 30_000, 'the stalled stream to end');
    const endMs = performance.now() - t0;
    stalled.socket.resume();
    await stalled.waitClosed(15_000, 'the stalled stream to close once read');
    const r = responseOf(stalled);
    const sse = parseSSE(r.body);
    const done = sse.events.at(-1) === '[DONE]';
    console.log(`stalled stream: ${atPause} bytes read before the pause, ended ${endMs.toFixed(0)} ms after the ` +
      `measurement; then read ${stalled.bytes} bytes: ${done && r.complete ? 'finished ([DONE], last chunk)' : 'dropped by the server'}` +
      ` (${sse.json.length} chunks)`);
    assert.equal(r.status, 200);
    if (done || r.complete) {
      assert.ok(done && r.complete, `a finished stream needs both [DONE] and the last chunk (done ${done}, complete ${r.complete})`);
      for (const j of sse.json) if (j.__unparsable !== undefined) assert.fail(`unparsable event ${j.__unparsable.slice(0, 200)}`);
      assert.equal(sse.json.filter((j) => j.choices?.[0]?.finish_reason).at(-1)?.choices[0].finish_reason, 'length');
    }
    await assertAnswers(server, openai, reference, 'after the stalled reader');
  });

  test('a reader stalled past the 8 MiB backlog is dropped and its generation cancelled', { timeout: 60_000 }, async () => {
    // Bytes the kernel can hold for a reader that stops: the server's send buffer (up to
    // tcp_wmem max) and our receive buffer (tcp_rmem default, not grown without reads).
    const sysMax = (f, i) => {
      try { return Number(fs.readFileSync(f, 'utf8').trim().split(/\s+/)[i]); } catch { return 4 * MiB; }
    };
    const kernel = sysMax('/proc/sys/net/ipv4/tcp_wmem', 2) + sysMax('/proc/sys/net/ipv4/tcp_rmem', 1);
    const need = 8 * MiB + kernel + 1 * MiB;
    const N = 8;
    const perToken = 1500; // bytes of one SSE chunk carrying a token with 20 top_logprobs (about 1.57 KB)
    const perChoice = Math.ceil(need / perToken / N); // tokens per choice before the drop
    const maxTokens = Math.min(3900, 2 * perChoice);
    if (perChoice * 1.3 > maxTokens) {
      console.log(`kernel socket buffers of ${(kernel / MiB).toFixed(1)} MiB: too much output needed to pass the backlog limit; skipped`);
      return;
    }
    const c0 = (await waitGauges(server, idle, 5000, 'idle before')).completionTokens;
    const conn = await openRawStream(server, {
      messages: user('Tell me a very long story.'), n: N, max_tokens: maxTokens, ignore_eos: true, temperature: 0.8,
      seed: 2, logprobs: true, top_logprobs: 20,
    });
    await conn.waitFor(hasData, 10_000, 'the first chunk');
    conn.socket.pause();
    const t0 = performance.now();
    await waitGauges(server, (g) => g.running === N, 5000, `${N} choices decoding`);
    // While its backlog builds up, the server keeps answering others.
    await sleep(1500);
    const th = performance.now();
    const health = await rawRequest(server, 'GET', '/health', { timeout: 5000 });
    const healthMs = performance.now() - th;
    const tc = performance.now();
    const side = await collectChatStream(await openai.chat.completions.create({
      model: MODEL_ID, messages: user(PROMPTS[1]), temperature: 0, max_tokens: 16, stream: true,
    }));
    const chatMs = performance.now() - tc;
    const stillRunning = (await gauges(server)).running;
    assert.equal(health.status, 200);
    assert.ok(side.content.length > 0, 'empty side stream');
    const g = await waitGauges(server, idle, 40_000, 'the stalled stream to be dropped (or to finish)');
    const ms = performance.now() - t0;
    const generated = g.completionTokens - c0;
    conn.socket.resume();
    await conn.waitClosed(15_000, 'the dropped stream to close once read');
    const r = responseOf(conn);
    const sse = parseSSE(r.body);
    console.log(`n=${N} x max_tokens ${maxTokens} (~${(N * maxTokens * perToken / MiB).toFixed(0)} MB of SSE) to a reader ` +
      `that stopped: ended after ${ms.toFixed(0)} ms having generated ${generated} of ${N * maxTokens} tokens; the reader then got ` +
      `${(conn.bytes / MiB).toFixed(1)} MiB, ${sse.json.length} chunks, complete=${r.complete}, [DONE]=${sse.events.at(-1) === '[DONE]'}; ` +
      `meanwhile /health took ${healthMs.toFixed(1)} ms and a 16-token stream ${chatMs.toFixed(0)} ms (${stillRunning} running after it)`);
    assert.ok(healthMs < 2000, `/health took ${healthMs.toFixed(0)} ms while a stalled reader's backlog built up`);
    assert.ok(chatMs < 10_000, `a 16-token stream took ${chatMs.toFixed(0)} ms while a stalled reader's backlog built up`);
    assert.ok(!r.complete && sse.events.at(-1) !== '[DONE]', 'the stream was not dropped: it was delivered in full');
    assert.ok(generated < N * maxTokens, `generation was not cancelled at the drop: ${generated} of ${N * maxTokens} tokens`);
    assert.ok(conn.bytes < 8 * MiB + kernel, `the reader got ${conn.bytes} bytes after the drop, more than the kernel buffers`);
    await assertAnswers(server, openai, undefined, 'after the drop');
  });
});

describe('overload burst (--parallel 1 --max-queue 4)', () => {
  test('40 simultaneous requests: 200 or 429 with Retry-After, never 5xx', { timeout: 60_000 }, async () => {
    const server = await startServer({ parallel: 1, ctx: 512, args: ['--max-queue', '4'] });
    try {
      const openai = client(server);
      const reference = await assertAnswers(server, openai, undefined, 'before');
      const N = 40;
      // Connect all first, then write every request in the same tick.
      const conns = await Promise.all(Array.from({ length: N }, () => RawConn.open(server.port)));
      const bodies = conns.map((_, i) => ({
        model: MODEL_ID, messages: user(PROMPTS[i % PROMPTS.length]), max_tokens: 100, ignore_eos: true,
        temperature: 0, stream: i % 2 === 1,
      }));
      await Promise.all(conns.map((c, i) => c.write(requestBytes('POST', CHAT, server.port, bodies[i], {
        headers: { connection: 'close' },
      }))));
      await Promise.all(conns.map((c, i) => c.waitClosed(30_000, `burst request ${i}`)));
      const counts = {};
      const tally = (k) => { counts[k] = (counts[k] ?? 0) + 1; };
      for (const [i, c] of conns.entries()) {
        const r = responseOf(c);
        const what = `request ${i} (${bodies[i].stream ? 'stream' : 'non-stream'})`;
        assert.ok(r, `${what}: no HTTP response before close; received ${JSON.stringify(c.text().slice(0, 200))}`);
        tally(`${r.status}${bodies[i].stream ? ' stream' : ''}`);
        assert.ok(r.status < 500, `${what}: ${r.status} ${r.body.slice(0, 300)}\n${server.log()}`);
        assert.ok(r.status === 200 || r.status === 429, `${what}: ${r.status} ${r.body.slice(0, 300)}`);
        assert.ok(r.complete, `${what}: the ${r.status} body was cut short`);
        if (r.status === 429) {
          assert.match(r.headers['retry-after'] ?? '', /^\d+$/, `${what}: Retry-After ${JSON.stringify(r.headers['retry-after'])}`);
          assertErrorShape(JSON.parse(r.body), `${what} 429`);
        } else if (bodies[i].stream) {
          const sse = parseSSE(r.body);
          assert.equal(sse.events.at(-1), '[DONE]', `${what}: stream without [DONE]`);
          assert.equal(sse.json.filter((j) => j.choices?.[0]?.finish_reason).at(-1)?.choices[0].finish_reason, 'length');
        } else {
          const j = JSON.parse(r.body);
          assert.equal(j.choices[0].finish_reason, 'length', r.body.slice(0, 300));
          assert.equal(j.usage.completion_tokens, 100);
        }
      }
      const ok = (counts['200'] ?? 0) + (counts['200 stream'] ?? 0);
      const limited = (counts['429'] ?? 0) + (counts['429 stream'] ?? 0);
      console.log(`burst of ${N} (half streaming) at --parallel 1 --max-queue 4: ${ok} x 200, ${limited} x 429 ${JSON.stringify(counts)}`);
      assert.ok(ok >= 4, `only ${ok} requests were served: one decoding and four queued fit`);
      assert.ok(limited >= 1, 'no request was refused');
      await waitGauges(server, idle, 5000, 'idle after the burst');
      await assertAnswers(server, openai, reference, 'after the burst');
    } finally {
      await stopServer(server);
    }
  });
});

describe('idle connections and malformed requests', () => {
  let server;
  let openai;
  let reference;
  before(async () => {
    server = await startServer();
    openai = client(server);
    reference = await assertAnswers(server, openai, undefined, 'before');
  });
  after(async () => {
    await stopServer(server);
  });

  test('1,000 idle TCP connections do not stop the server answering', { timeout: 60_000 }, async () => {
    const limit = openFileLimit();
    const room = limit - openFileCount() - 100;
    const COUNT = Math.max(0, Math.min(1000, room));
    if (COUNT < 1000) console.log(`open-file limit ${limit}: ${COUNT} idle connections instead of 1000`);
    assert.ok(COUNT >= 100, `the open-file limit ${limit} leaves room for only ${COUNT} connections`);
    const conns0 = (await gauges(server)).connections;
    const conns = [];
    const t0 = performance.now();
    try {
      // A third send nothing, a third half a request line, a third a whole head and no body.
      await pool(COUNT, 50, async (i) => {
        const c = await RawConn.open(server.port, { timeout: 10_000 });
        conns.push(c);
        if (i % 3 === 1) await c.write('POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le');
        if (i % 3 === 2) {
          await c.write(requestBytes('POST', CHAT, server.port, undefined, { contentLength: 100 }));
        }
      });
      const openMs = performance.now() - t0;
      const g = await waitGauges(server, (x) => x.connections >= conns0 + COUNT, 10_000, `${COUNT} connections accepted`);
      const t1 = performance.now();
      const h = await rawRequest(server, 'GET', '/health', { timeout: 5000 });
      const healthMs = performance.now() - t1;
      const t2 = performance.now();
      const content = await assertAnswers(server, openai, reference, `with ${COUNT} idle connections`);
      const chatMs = performance.now() - t2;
      const closedEarly = conns.filter((c) => c.isClosed).length;
      console.log(`${COUNT} idle connections opened in ${openMs.toFixed(0)} ms (server counts ${g.connections}); ` +
        `/health ${h.status} in ${healthMs.toFixed(1)} ms, chat in ${chatMs.toFixed(1)} ms (${JSON.stringify(content)}); ` +
        `${closedEarly} closed by the server meanwhile`);
      assert.equal(h.status, 200);
      assert.ok(healthMs < 2000, `/health took ${healthMs.toFixed(0)} ms`);
      assert.ok(chatMs < 3000, `a chat request took ${chatMs.toFixed(0)} ms`);
      assert.equal(closedEarly, 0, 'the server closed idle connections well before its 30 s read timeout');
    } finally {
      for (const c of conns) c.destroy();
    }
    await Promise.all(conns.map((c) => c.waitClosed(5000)));
    const g = await waitGauges(server, (x) => x.connections <= conns0 + 4, 5000, 'the idle connections to be released');
    console.log(`after closing them: the server counts ${g.connections} connections (${conns0} before)`);
    await assertAnswers(server, openai, reference, 'after the idle connections');
  });

  test('invalid UTF-8 in JSON strings is 400 in OpenAI shape', { timeout: 30_000 }, async () => {
    const cases = [
      ['0xff in content', '{"model": "stories260K", "max_tokens": 4, "messages": [{"role": "user", "content": "ab\xffcd"}]}'],
      ['lone continuation 0x80', '{"model": "stories260K", "max_tokens": 4, "messages": [{"role": "user", "content": "\x80"}]}'],
      ['overlong 0xc0 0xaf', '{"model": "stories260K", "max_tokens": 4, "messages": [{"role": "user", "content": "\xc0\xaf"}]}'],
      ['surrogate 0xed 0xa0 0x80', '{"model": "stories260K", "max_tokens": 4, "messages": [{"role": "user", "content": "\xed\xa0\x80"}]}'],
      ['truncated 0xe2 0x82 at the end of a string', '{"model": "stories260K", "max_tokens": 4, "messages": [{"role": "user", "content": "x\xe2\x82"}]}'],
      ['above U+10FFFF 0xf4 0x90 0x80 0x80', '{"model": "stories260K", "max_tokens": 4, "messages": [{"role": "user", "content": "\xf4\x90\x80\x80"}]}'],
      ['in the model name', '{"model": "stories\xff260K", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}'],
      ['in a key', '{"model": "stories260K", "max_\xfftokens": 4, "messages": [{"role": "user", "content": "hi"}]}'],
      ['in the role', '{"model": "stories260K", "max_tokens": 4, "messages": [{"role": "us\xfer", "content": "hi"}]}'],
      ['streaming', '{"model": "stories260K", "stream": true, "max_tokens": 4, "messages": [{"role": "user", "content": "\xff"}]}'],
      ['in a stop string', '{"model": "stories260K", "max_tokens": 4, "stop": ["\xfe"], "messages": [{"role": "user", "content": "hi"}]}'],
    ];
    for (const [name, body] of cases) {
      const r = await rawRequest(server, 'POST', CHAT, { body: Buffer.from(body, 'latin1') });
      assert.equal(r.status, 400, `${name}: ${r.status} ${r.text.slice(0, 300)}`);
      assertErrorShape(r.json, name);
      assert.equal(server.exited(), null, `${name}: the server exited\n${server.log()}`);
    }
    const c = await rawRequest(server, 'POST', '/v1/completions', {
      body: Buffer.from('{"model": "stories260K", "max_tokens": 4, "prompt": "a\xffb"}', 'latin1'),
    });
    assert.equal(c.status, 400, `completions: ${c.status} ${c.text}`);
    assertErrorShape(c.json, 'completions invalid utf-8');
  });

  test('NUL bytes in the body', { timeout: 30_000 }, async () => {
    // A raw NUL is a control character: not allowed in a JSON string, nor between tokens.
    const raw = [
      ['NUL inside the content', '{"model": "stories260K", "max_tokens": 4, "messages": [{"role": "user", "content": "a\0b"}]}'],
      ['NUL between tokens', '{"model": "stories260K",\0 "max_tokens": 4, "messages": [{"role": "user", "content": "ab"}]}'],
      ['NUL after the object', '{"model": "stories260K", "max_tokens": 4, "messages": [{"role": "user", "content": "ab"}]}\0'],
      ['NUL and garbage after the object', '{"model": "stories260K", "max_tokens": 4, "messages": [{"role": "user", "content": "ab"}]}\0}}] not json'],
      ['only NULs', '\0\0\0\0'],
      ['NUL inside a key', '{"mo\0del": "stories260K", "max_tokens": 4, "messages": [{"role": "user", "content": "ab"}]}'],
    ];
    // Every case is sent before judging, so that a failure lists them all.
    const wrong = [];
    const rawSeen = [];
    for (const [name, body] of raw) {
      const r = await rawRequest(server, 'POST', CHAT, { body: Buffer.from(body, 'latin1') });
      rawSeen.push(`${name}: ${r.status}`);
      assert.equal(server.exited(), null, `${name}: the server exited\n${server.log()}`);
      if (r.status !== 400) {
        wrong.push(`${name}: POST ${CHAT} body ${JSON.stringify(body)} -> ${r.status} ${r.text.slice(0, 200)} (expected 400)`);
        continue;
      }
      assertErrorShape(r.json, name);
    }
    console.log(`raw NUL: ${rawSeen.join(', ')}`);
    // An escaped NUL is valid JSON: answered (200) or refused (400), never a 5xx.
    const outcomes = [];
    for (const [name, route, body] of [
      ['chat \\u0000 content', CHAT, { model: MODEL_ID, max_tokens: 4, messages: user('a\u0000b') }],
      ['chat only \\u0000', CHAT, { model: MODEL_ID, max_tokens: 4, messages: user('\u0000') }],
      ['chat \\u0000 streamed', CHAT, { model: MODEL_ID, max_tokens: 4, stream: true, messages: user('x\u0000\u0000y') }],
      ['chat \\u0000 in stop', CHAT, { model: MODEL_ID, max_tokens: 4, stop: ['\u0000'], messages: user('hi') }],
      ['completions \\u0000 prompt', '/v1/completions', { model: MODEL_ID, max_tokens: 4, prompt: '\u0000once' }],
    ]) {
      const r = await rawRequest(server, 'POST', route, { body });
      outcomes.push(`${name}: ${r.status}`);
      assert.ok(r.status === 200 || r.status === 400, `${name}: ${r.status} ${r.text.slice(0, 300)}`);
      if (r.status === 400) assertErrorShape(r.json, name);
      if (r.status === 200 && !body.stream) assert.equal(typeof r.json?.choices?.[0], 'object', `${name}: ${r.text.slice(0, 300)}`);
      if (r.status === 200 && body.stream) assert.equal(parseSSE(r.text).events.at(-1), '[DONE]', `${name}: ${r.text.slice(0, 300)}`);
      assert.equal(server.exited(), null, `${name}: the server exited\n${server.log()}`);
    }
    console.log(`escaped NUL: ${outcomes.join(', ')}`);
    assert.deepEqual(wrong, [], `raw NUL bytes accepted:\n${wrong.join('\n')}`);
  });

  // Sends `bytes` on a fresh connection (then a FIN if `finish`), and waits for the server to
  // answer and/or close. Resolves to { status (NaN when nothing came), closed, text }.
  const exchange = async (bytes, { finish = false, ms = 5000 } = {}) => {
    const c = await RawConn.open(server.port);
    try {
      await c.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
    } catch { /* the server may already have closed */ }
    if (finish) c.socket.end();
    let closed = true;
    try {
      await c.waitClosed(ms);
    } catch {
      closed = false;
    }
    const h = c.head();
    c.destroy();
    return { status: h ? h.status : NaN, closed, text: c.text().slice(0, 300) };
  };

  test('garbage instead of a request line: 400 or a close, never a crash', { timeout: 30_000 }, async () => {
    const cases = [
      ['a word', 'GARBAGE\r\n\r\n'],
      ['control bytes', '\x00\x01\x02\x03\x04\r\n\r\n'],
      ['three tokens, no version', 'GET /health\r\n\r\n'],
      ['bad version', 'GET /health HTTQ/1.1\r\n\r\n'],
      ['space-only line', '   \r\n\r\n'],
      ['TLS client hello', Buffer.from('16030100a5010000a10303' + '00'.repeat(60), 'hex')],
      ['method with a slash', 'G/ET /health HTTP/1.1\r\nHost: x\r\n\r\n'],
      ['header without a colon', 'GET /health HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n'],
      ['NUL in a header value', 'GET /health HTTP/1.1\r\nHost: x\0y\r\n\r\n'],
      ['bare LF lines of garbage', 'x\ny\nz\n\n'],
      ['Content-Length not a number', 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n'],
      ['Content-Length negative', 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n'],
      ['Content-Length overflowing 64 bits', 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n'],
      ['two different Content-Lengths', 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x'],
      ['a bad chunk size', 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n'],
      ['random bytes', Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 131 + 7) % 256))],
    ];
    const seen = [];
    for (const [name, bytes] of cases) {
      const r = await exchange(bytes);
      seen.push(`${name}: ${Number.isNaN(r.status) ? '-' : r.status}${r.closed ? ' closed' : ' open'}`);
      assert.equal(server.exited(), null, `${name}: the server exited\n${server.log()}`);
      assert.ok(r.closed, `${name}: the connection was still open 5 s after the bad request (response ${JSON.stringify(r.text)})`);
      assert.ok(Number.isNaN(r.status) || r.status === 400, `${name}: status ${r.status}: ${JSON.stringify(r.text)}`);
    }
    // Garbage without an end of line, then a FIN: the server sees the end of the stream.
    for (const [name, bytes] of [['a word, no CRLF, FIN', 'GARBAGE'], ['half a request line, FIN', 'POST /v1/chat/compl']]) {
      const r = await exchange(bytes, { finish: true });
      seen.push(`${name}: ${Number.isNaN(r.status) ? '-' : r.status}${r.closed ? ' closed' : ' open'}`);
      assert.equal(server.exited(), null, `${name}: the server exited\n${server.log()}`);
      assert.ok(r.closed, `${name}: the connection was still open 5 s after the FIN`);
      assert.ok(Number.isNaN(r.status) || r.status === 400, `${name}: status ${r.status}: ${JSON.stringify(r.text)}`);
    }
    // A request line beyond the 64 KiB header limit: refused (400, 414 or 431) or closed.
    const long = await exchange(`GET /${'a'.repeat(100 * 1024)} HTTP/1.1\r\nHost: x\r\n\r\n`);
    seen.push(`100 KiB request line: ${Number.isNaN(long.status) ? '-' : long.status}${long.closed ? ' closed' : ' open'}`);
    assert.ok(long.closed, '100 KiB request line: still open');
    assert.ok(Number.isNaN(long.status) || [400, 414, 431].includes(long.status), `100 KiB request line: ${long.status}`);
    console.log(`garbage: ${seen.join('; ')}`);
    await assertAnswers(server, openai, reference, 'after the garbage');
  });

  test('a body shorter than its Content-Length, then a close: no crash', { timeout: 30_000 }, async () => {
    const body = JSON.stringify({ model: MODEL_ID, max_tokens: 4, messages: user('Once upon a time') });
    const seen = [];
    for (const [name, declared, send] of [
      ['half the body', body.length + 50, body.slice(0, 20)],
      ['the whole body, 1000 bytes short', body.length + 1000, body],
      ['no body at all', 500, ''],
      ['11 MiB declared (over the limit), 10 bytes sent', 11 * MiB, body.slice(0, 10)],
    ]) {
      for (const how of ['FIN', 'RST', 'destroy']) {
        const c = await RawConn.open(server.port);
        await c.write(Buffer.concat([
          requestBytes('POST', CHAT, server.port, undefined, { contentLength: declared, headers: { 'content-type': 'application/json' } }),
          Buffer.from(send),
        ]));
        await sleep(20);
        if (how === 'FIN') c.socket.end();
        else if (how === 'RST') c.reset();
        else c.destroy();
        let closed = true;
        try { await c.waitClosed(5000); } catch { closed = false; }
        const h = c.head();
        seen.push(`${name} + ${how}: ${h ? h.status : '-'}${closed ? '' : ' (still open)'}`);
        c.destroy();
        assert.ok(closed, `${name} + ${how}: the connection was still open 5 s after the client closed its side`);
        if (h) assert.ok([400, 413].includes(h.status), `${name} + ${how}: status ${h.status} ${JSON.stringify(c.text().slice(0, 300))}`);
        assert.equal(server.exited(), null, `${name} + ${how}: the server exited\n${server.log()}`);
      }
    }
    console.log(`short bodies: ${seen.join('; ')}`);
    const g = await waitGauges(server, idle, 5000, 'idle after the short bodies');
    assert.equal(g.running, 0);
    await assertAnswers(server, openai, reference, 'after the short bodies');
  });
});

describe('out of file descriptors (server run with ulimit -n 64)', () => {
  test('the server does not spin while it cannot accept, and recovers', { timeout: 40_000 }, async () => {
    const server = await startServer({ fdLimit: 64 });
    const conns = [];
    try {
      const pid = server.child.pid;
      assert.equal(openFileLimitOf(pid), 64, 'the fd limit did not reach the server');
      const openai = client(server);
      const reference = await assertAnswers(server, openai, undefined, 'before');
      // More connections than descriptors: the kernel completes them all (listen backlog), the
      // server accepts until accept() fails with EMFILE.
      for (let i = 0; i < 100; i++) conns.push(await RawConn.open(server.port));
      await sleep(300);
      const c0 = cpuTicks(pid);
      const t0 = performance.now();
      await sleep(1000);
      const busy = (cpuTicks(pid) - c0) / ((performance.now() - t0) / 1000); // % of one core (100 ticks/s)
      for (const c of conns) c.destroy();
      await Promise.all(conns.map((c) => c.waitClosed(5000)));
      // Recovery: /health answers again once descriptors are free.
      const t1 = performance.now();
      let status = 0;
      while (status !== 200 && performance.now() - t1 < 10_000) {
        status = await fetch(`${server.url}/health`, { signal: AbortSignal.timeout(1000) }).then((r) => r.status, () => 0);
        if (status !== 200) await sleep(100);
      }
      const recoverMs = performance.now() - t1;
      const c1 = cpuTicks(pid);
      const t2 = performance.now();
      await sleep(500);
      const busyAfter = (cpuTicks(pid) - c1) / ((performance.now() - t2) / 1000);
      console.log(`100 connections to a server limited to 64 descriptors: it used ${busy.toFixed(0)}% of a core for 1 s ` +
        `doing nothing else; after closing them /health ${status} in ${recoverMs.toFixed(0)} ms, then ${busyAfter.toFixed(0)}% CPU`);
      assert.equal(status, 200, `/health did not answer 200 within 10 s of freeing the descriptors\n${server.log()}`);
      await assertAnswers(server, openai, reference, 'after running out of descriptors');
      assert.ok(busy < 50, `the idle server used ${busy.toFixed(0)}% of a core while out of descriptors ` +
        '(accept() failing with EMFILE and retried at once, without a pause?)');
    } finally {
      for (const c of conns) c.destroy();
      await stopServer(server);
    }
  });
});

describe('SIGTERM with 8 open streams and 8 queued requests (--parallel 4)', () => {
  test('the server exits 0 within 10 s and every connection ends', { timeout: 60_000 }, async () => {
    const server = await startServer({ parallel: 4, ctx: 4096 });
    let conns = [];
    try {
      const long = (i, stream) => ({
        messages: user(PROMPTS[i % PROMPTS.length]), max_tokens: 3500, ignore_eos: true, temperature: 0.8, seed: i, stream,
      });
      // 8 streams: 4 decoding, 4 waiting for a slot (their response heads are sent already).
      for (let i = 0; i < 8; i++) {
        conns.push(await openRawStream(server, long(i, true)));
        if (i < 4) await waitGauges(server, (g) => g.running === i + 1, 10_000, `stream ${i} decoding`);
      }
      await waitGauges(server, (g) => g.running === 4 && g.waiting === 4, 10_000, '4 streams decoding and 4 waiting');
      // 8 more, not streamed: all queued.
      for (let i = 8; i < 16; i++) {
        const c = await RawConn.open(server.port);
        await c.write(requestBytes('POST', CHAT, server.port, { model: MODEL_ID, ...long(i, false) }));
        conns.push(c);
      }
      const before = await waitGauges(server, (g) => g.running === 4 && g.waiting === 12, 10_000, '4 decoding and 12 waiting');
      await Promise.all(conns.slice(0, 4).map((c, i) => c.waitFor(hasData, 10_000, `stream ${i} data`)));
      const headsBefore = conns.slice(0, 8).filter((c) => c.head()?.status === 200).length;
      assert.equal(conns.filter((c) => c.isClosed).length, 0, 'a connection closed before the signal');

      const exit = await server.stop();
      const ends = await Promise.all(conns.map((c, i) => c.waitClosed(15_000, `connection ${i} to end after SIGTERM`)
        .then(() => true, () => false)));
      const outcomes = conns.map((c, i) => {
        const r = responseOf(c);
        if (!r) return `${i}:${ends[i] ? 'closed, no response' : 'OPEN'}`;
        let finish = null;
        let done = false;
        if (i < 8) {
          const sse = parseSSE(r.body);
          done = sse.events.at(-1) === '[DONE]';
          finish = sse.json.flatMap((j) => (j.choices ?? []).map((ch) => ch.finish_reason)).filter(Boolean).at(-1) ?? null;
        } else {
          try { finish = JSON.parse(r.body).choices?.[0]?.finish_reason ?? JSON.parse(r.body).error?.code; } catch { finish = 'unparsable'; }
        }
        return `${i}:${r.status}${i < 8 ? (done ? '+DONE' : '') + (r.complete ? '' : ' cut') : ''} ${finish}${ends[i] ? '' : ' OPEN'}`;
      });
      console.log(`SIGTERM with ${JSON.stringify(before)} (${headsBefore} stream heads sent): exit ` +
        `${JSON.stringify(exit)}; connections: ${outcomes.join(', ')}`);
      assert.equal(exit.signal, null, `killed by ${exit.signal}\n${server.log()}`);
      assert.equal(exit.code, 0, `exit code ${exit.code}\n${server.log()}`);
      assert.ok(exit.ms <= 10_000, `exit took ${exit.ms} ms`);
      assert.equal(ends.filter((e) => !e).length, 0, `connections still open after the exit: ${outcomes.join(', ')}`);
      for (let i = 0; i < 16; i++) {
        const r = responseOf(conns[i]);
        if (r) assert.ok(r.status < 500 || r.status === 503, `connection ${i}: status ${r.status} ${r.body.slice(0, 200)}`);
      }
    } finally {
      for (const c of conns) c.destroy();
      conns = [];
      if (server.exited() === null) await server.stop().catch(() => {});
    }
  });
});

describe('the read timeout', () => {
  test('connections that never complete a request are closed after about 30 s', { timeout: 60_000 }, async () => {
    const results = await readTimeoutWatch;
    console.log(`read timeout: ${results.map((r) => `${r.name}: ${r.closed ? `closed after ${(r.ms / 1000).toFixed(1)} s` : 'STILL OPEN'}` +
      `${r.status ? ` (${r.status})` : ''}`).join('; ')}`);
    for (const r of results) {
      assert.ok(r.closed, `${r.name}: still open ${((READ_TIMEOUT_MS + 15_000) / 1000).toFixed(0)} s after connecting`);
      assert.ok(r.ms >= READ_TIMEOUT_MS - 2000, `${r.name}: closed after ${r.ms.toFixed(0)} ms, before the 30 s read timeout`);
      assert.ok(r.status === null || r.status === 408 || r.status === 400, `${r.name}: answered ${r.status}`);
    }
  });
});
