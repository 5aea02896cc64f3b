// Shared pieces of the `tokenfab serve` end-to-end tests: starting and stopping the server,
// an OpenAI SDK client pointed at it, raw HTTP for what the SDK cannot send, SSE parsing and
// Prometheus text parsing.
//
// Environment (set by run.sh): TOKENFAB_BIN (the tokenfab binary), TOKENFAB_SHARED (the
// shared/ directory holding models/gguf/stories260K.gguf).

import { spawn } from 'node:child_process';
import path from 'node:path';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

export { OpenAI };

export const BIN = process.env.TOKENFAB_BIN;
export const SHARED = process.env.TOKENFAB_SHARED;
if (!BIN || !SHARED) throw new Error('TOKENFAB_BIN and TOKENFAB_SHARED must be set (use tests/server/run.sh)');

export const MODEL_PATH = path.join(SHARED, 'models', 'gguf', 'stories260K.gguf');
export const MODEL_ID = 'stories260K';

const STARTUP_LISTEN_MS = 30_000;
const STARTUP_HEALTH_MS = 30_000;
const STOP_MS = 10_000;

const live = new Set();
process.on('exit', () => {
  for (const child of live) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Rejects after `ms` with `what` in the message; clears its timer when `p` settles.
export async function withTimeout(p, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

// Starts `tokenfab serve` on a free port and waits until GET /health answers 200 (`apiKey`:
// sent with those polls, for a server started with --api-key).
// `fdLimit`: run it with that many open files at most (soft and hard limit, set by sh's ulimit
// before exec, so the pid is the server's).
// Returns { url, port, child, log(), stop() }; stop() sends SIGTERM and resolves to
// { code, signal, ms } (it kills the process and throws if it is still running after 10 s).
export async function startServer({ args = [], ctx = 512, parallel = 4, apiKey = null, fdLimit = null } = {}) {
  const argv = ['serve', '-m', MODEL_PATH, '--host', '127.0.0.1', '--port', '0',
    '--parallel', String(parallel), '-c', String(ctx), ...args];
  const child = fdLimit
    ? spawn('/bin/sh', ['-c', `ulimit -n ${Number(fdLimit)} && exec "$0" "$@"`, BIN, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(BIN, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let output = '';
  const keep = (chunk) => {
    output += chunk.toString('utf8');
    if (output.length > 256 * 1024) output = output.slice(-128 * 1024);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited = null;
  const exitPromise = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      live.delete(child);
      resolve(exited);
    });
  });
  const log = () => output.slice(-8000);
  const fail = async (msg) => {
    if (!exited) {
      child.kill('SIGKILL');
      await withTimeout(exitPromise, 5000, 'kill').catch(() => {});
    }
    throw new Error(`${msg}\ncommand: ${BIN} ${argv.join(' ')}\nserver output:\n${log()}`);
  };

  // 1. The port, from "listening on http://127.0.0.1:PORT".
  const t0 = Date.now();
  let port = null;
  while (port === null) {
    const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(output);
    if (m) port = Number(m[1]);
    else if (exited) await fail(`server exited (${JSON.stringify(exited)}) before listening`);
    else if (Date.now() - t0 > STARTUP_LISTEN_MS) await fail('no "listening on http://127.0.0.1:PORT" line within 30 s');
    else await sleep(20);
  }
  const url = `http://127.0.0.1:${port}`;

  // 2. Ready: /health 200 (503 while the model loads).
  const t1 = Date.now();
  for (;;) {
    if (exited) await fail(`server exited (${JSON.stringify(exited)}) before /health answered 200`);
    let status = 0;
    let body = '';
    try {
      const r = await fetch(`${url}/health`, {
        signal: AbortSignal.timeout(2000),
        headers: apiKey ? { authorization: `Bearer ${apiKey}` } : {},
      });
      status = r.status;
      body = await r.text();
    } catch {
      /* not accepting yet */
    }
    if (status === 200) break;
    if (status !== 0 && status !== 503) await fail(`GET /health answered ${status} while starting: ${body}`);
    if (Date.now() - t1 > STARTUP_HEALTH_MS) await fail('GET /health did not answer 200 within 30 s');
    await sleep(50);
  }

  let stopping = null;
  const stop = () => {
    if (stopping) return stopping;
    stopping = (async () => {
      const ts = Date.now();
      if (!exited) child.kill('SIGTERM');
      try {
        const r = await withTimeout(exitPromise, STOP_MS, 'server exit after SIGTERM');
        return { ...r, ms: Date.now() - ts };
      } catch (e) {
        child.kill('SIGKILL');
        await withTimeout(exitPromise, 5000, 'kill').catch(() => {});
        throw new Error(`server still running 10 s after SIGTERM (killed)\nserver output:\n${log()}`);
      }
    })();
    return stopping;
  };
  return { url, port, child, log, stop, exitPromise, exited: () => exited };
}

// Stops the server and asserts a clean exit (code 0 within 10 s).
export async function stopServer(server) {
  if (!server) return;
  const r = await server.stop();
  assert.equal(r.signal, null, `server died by signal ${r.signal}\n${server.log()}`);
  assert.equal(r.code, 0, `server exit code ${r.code} after SIGTERM\n${server.log()}`);
}

// An OpenAI SDK client for the server. No retries: a 5xx or 429 must show as it is.
export function client(server, opts = {}) {
  return new OpenAI({
    baseURL: `${server.url}/v1`,
    apiKey: 'sk-no-key',
    maxRetries: 0,
    timeout: 30_000,
    ...opts,
  });
}

// Raw HTTP for what the SDK cannot send. `body` may be a string, Buffer or object (JSON).
// Resolves to { status, headers, text, json } (json undefined when the body is not JSON).
export async function rawRequest(server, method, route, { body, headers = {}, timeout = 15_000 } = {}) {
  let payload = body;
  const h = { ...headers };
  if (body !== undefined && typeof body !== 'string' && !Buffer.isBuffer(body)) {
    payload = JSON.stringify(body);
  }
  if (payload !== undefined && !Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) {
    h['content-type'] = 'application/json';
  }
  const r = await fetch(`${server.url}${route}`, {
    method, headers: h, body: payload, signal: AbortSignal.timeout(timeout),
  });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, headers: r.headers, text, json };
}

// POSTs `chunks` as a streamed body (Transfer-Encoding: chunked, no Content-Length).
// Resolves to { status, headers, text, json }.
export async function rawChunked(server, route, chunks, { timeout = 20_000 } = {}) {
  const enc = new TextEncoder();
  let i = 0;
  const body = new ReadableStream({
    pull(controller) {
      if (i < chunks.length) controller.enqueue(enc.encode(chunks[i++]));
      else controller.close();
    },
  });
  const r = await fetch(`${server.url}${route}`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body, duplex: 'half',
    signal: AbortSignal.timeout(timeout),
  });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, headers: r.headers, text, json };
}

// POSTs a streaming request with fetch and returns the raw SSE text and its parsed events:
// { status, contentType, raw, events: [string data...], json: [parsed chunks] }.
export async function rawSSE(server, route, body, { timeout = 30_000 } = {}) {
  const r = await fetch(`${server.url}${route}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(timeout),
  });
  const raw = await r.text();
  return { status: r.status, contentType: r.headers.get('content-type') ?? '', raw, ...parseSSE(raw) };
}

// Splits SSE text into the data payloads of its events.
export function parseSSE(raw) {
  const events = [];
  for (const block of raw.split(/\r?\n\r?\n/)) {
    if (block.trim() === '') continue;
    const data = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    }
    if (data.length) events.push(data.join('\n'));
  }
  const json = [];
  for (const e of events) {
    if (e === '[DONE]') continue;
    try { json.push(JSON.parse(e)); } catch { json.push({ __unparsable: e }); }
  }
  return { events, json };
}

// GET /metrics as text.
export async function metricsText(server) {
  const r = await fetch(`${server.url}/metrics`, { signal: AbortSignal.timeout(5000) });
  assert.equal(r.status, 200, 'GET /metrics status');
  return { text: await r.text(), contentType: r.headers.get('content-type') ?? '' };
}

// Prometheus text → Map(name → sum of its samples' values) and the declared TYPEs.
export function parseMetrics(text) {
  const values = new Map();
  const types = new Map();
  for (const line of text.split('\n')) {
    if (line.startsWith('# TYPE ')) {
      const [, , name, type] = line.split(/\s+/);
      types.set(name, type);
      continue;
    }
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const v = Number(m[3]);
    values.set(m[1], (values.get(m[1]) ?? 0) + v);
  }
  return { values, types };
}

// The first metric name matching `re` (tokenfab's names are matched loosely).
export function findMetric(parsed, re) {
  for (const name of parsed.values.keys()) if (re.test(name)) return name;
  for (const name of parsed.types.keys()) if (re.test(name)) return name;
  return null;
}

// Asserts an OpenAI-shaped error body: {"error": {message, type, param, code}}.
export function assertErrorShape(body, what = '') {
  const ctx = `${what}: ${JSON.stringify(body)}`;
  assert.ok(body && typeof body === 'object', `error body is not a JSON object (${ctx})`);
  const e = body.error;
  assert.ok(e && typeof e === 'object', `no "error" object (${ctx})`);
  assert.equal(typeof e.message, 'string', `error.message must be a string (${ctx})`);
  assert.ok(e.message.length > 0, `error.message is empty (${ctx})`);
  assert.equal(typeof e.type, 'string', `error.type must be a string (${ctx})`);
  assert.ok('param' in e, `error.param missing (${ctx})`);
  assert.ok(e.param === null || typeof e.param === 'string', `error.param must be string|null (${ctx})`);
  assert.ok('code' in e, `error.code missing (${ctx})`);
  assert.ok(e.code === null || typeof e.code === 'string', `error.code must be string|null (${ctx})`);
  return e;
}

// Collects a chat stream from the SDK: { content, chunks, finishReason, usage }.
export async function collectChatStream(stream) {
  const chunks = [];
  let content = '';
  for await (const chunk of stream) {
    chunks.push(chunk);
    for (const c of chunk.choices ?? []) {
      if (c.index === 0 && typeof c.delta?.content === 'string') content += c.delta.content;
    }
  }
  const withChoices = chunks.filter((c) => (c.choices ?? []).length > 0);
  const last = withChoices.at(-1);
  const usageChunk = chunks.find((c) => c.usage);
  return {
    content,
    chunks,
    finishReason: last?.choices?.at(-1)?.finish_reason ?? null,
    usage: usageChunk?.usage ?? null,
  };
}

// A long text of `n` words (prompt-too-long tests).
export function words(n) {
  const w = ['the', 'little', 'dog', 'ran', 'to', 'park', 'and', 'saw', 'a', 'big', 'red', 'ball'];
  const out = [];
  for (let i = 0; i < n; i++) out.push(w[i % w.length]);
  return out.join(' ');
}
