// The factory's books through the official clients: the meter's figures in every API's usage
// (usage.tokenfab), and adding up to the server's totals in /metrics; tenants from an
// --api-keys file (401, 403, 429 with Retry-After for budgets, rate and concurrency limits
// under 32 parallel clients, SIGHUP reload, counters that survive a restart, a clear startup
// error for a bad file); and the audit log (one JSON line per request, no text by default,
// rotation by size).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import Anthropic from '@anthropic-ai/sdk';
import {
  BIN, MODEL_PATH, startServer, stopServer, client, MODEL_ID, metricsText, rawRequest, sleep,
} from './helpers.mjs';

const T = { timeout: 60_000 };
const WATTS = 40;
const meterArgs = ['--watts', String(WATTS), '--no-rapl', '--price-kwh', '0.2', '--hardware-cost-per-hour', '3.6'];

const sha = (k) => createHash('sha256').update(k).digest('hex');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tf-books-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

// Prometheus text -> Map("name{labels}" -> value) and Map(name -> sum).
function metrics(text) {
  const exact = new Map();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)$/.exec(line);
    if (m) exact.set(m[1], Number(m[2]));
  }
  return exact;
}
async function books(server) {
  return metrics((await metricsText(server)).text);
}

function checkMeter(m, what) {
  assert.ok(m && typeof m === 'object', `${what}: no usage.tokenfab`);
  assert.equal(m.energy_source, 'model', what);
  assert.ok(m.joules > 0 && m.cost_usd > 0, `${what}: ${JSON.stringify(m)}`);
  assert.ok(Math.abs(m.joules - (m.input.joules + m.output.joules)) < 1e-9, what);
  assert.ok(Math.abs(m.cost_usd - (m.input.cost_usd + m.output.cost_usd)) < 1e-12, what);
  // The power model: joules are watts x the request's share of the steps' time.
  const secs = m.input.compute_seconds + m.output.compute_seconds;
  assert.ok(Math.abs(m.joules - WATTS * secs) <= 1e-6 * m.joules + 1e-12, `${what}: ${m.joules} vs ${WATTS * secs}`);
  // $0.2/kWh and $3.6/h: dollars = J / 3.6e6 * 0.2 + s * 0.001.
  const usd = (m.joules / 3.6e6) * 0.2 + secs * 0.001;
  assert.ok(Math.abs(m.cost_usd - usd) <= 1e-6 * usd, `${what}: $${m.cost_usd} vs $${usd}`);
  assert.ok(m.step_share > 0, what);
}

describe('metering in usage and /metrics', () => {
  let server;
  let openai;
  before(async () => {
    server = await startServer({ ctx: 1024, parallel: 4, args: meterArgs });
    openai = client(server);
  });
  after(async () => {
    await stopServer(server);
  });

  test('chat, streamed chat, completions, Responses and Messages carry usage.tokenfab', T, async () => {
    const chat = await openai.chat.completions.create({
      model: MODEL_ID, messages: [{ role: 'user', content: 'Tell me a story' }], max_tokens: 16, temperature: 0,
    });
    checkMeter(chat.usage.tokenfab, 'chat');
    assert.ok(chat.usage.tokenfab.output.usd_per_mtok > 0);
    const stream = await openai.chat.completions.create({
      model: MODEL_ID, messages: [{ role: 'user', content: 'Tell me a story' }], max_tokens: 16, temperature: 0,
      stream: true, stream_options: { include_usage: true },
    });
    let usage = null;
    for await (const c of stream) if (c.usage) usage = c.usage;
    checkMeter(usage?.tokenfab, 'streamed chat');
    const comp = await openai.completions.create({ model: MODEL_ID, prompt: 'Once upon a time', max_tokens: 16 });
    checkMeter(comp.usage.tokenfab, 'completions');
    const resp = await openai.responses.create({ model: MODEL_ID, input: 'Once upon a time', max_output_tokens: 16 });
    checkMeter(resp.usage.tokenfab, 'responses');
    const anthropic = new Anthropic({ baseURL: server.url, apiKey: 'sk-no-key', maxRetries: 0, timeout: 30_000 });
    const msg = await anthropic.messages.create({
      model: 'claude-x', max_tokens: 16, messages: [{ role: 'user', content: 'Once upon a time' }],
    });
    checkMeter(msg.usage.tokenfab, 'messages');
    const ms = anthropic.messages.stream({
      model: 'claude-x', max_tokens: 16, messages: [{ role: 'user', content: 'Once upon a time' }],
    });
    // The SDK's accumulated message keeps only the usage fields it knows; the figures are in
    // the message_delta event, as its raw events show.
    let delta = null;
    for await (const ev of ms) if (ev.type === 'message_delta') delta = ev.usage;
    checkMeter(delta?.tokenfab, 'streamed messages');
  });

  test('what the requests were charged adds up to the server\'s totals', T, async () => {
    const before = await books(server);
    const prompts = ['Once upon a time', 'The little dog', 'Lily and Ben', 'The sun was', 'Tom had a red ball', 'She said'];
    const rs = await Promise.all(prompts.map((p, i) => openai.completions.create({
      model: MODEL_ID, prompt: p, max_tokens: 24 + i, temperature: 0,
    })));
    const after = await books(server);
    const sum = (k) => rs.reduce((a, r) => a + r.usage.tokenfab[k], 0);
    const d = (name) => after.get(name) - (before.get(name) ?? 0);
    const near = (a, b, what) => assert.ok(Math.abs(a - b) <= 1e-6 * Math.max(a, b) + 1e-12, `${what}: ${a} vs ${b}`);
    near(sum('joules'), d('tokenfab_energy_joules_total'), 'joules');
    near(sum('cost_usd'), d('tokenfab_cost_usd_total'), 'cost');
    near(sum('step_share'), d('tokenfab_engine_steps_total'), 'steps');
    near(sum('joules'), d('tokenfab_tenant_energy_joules_total{tenant="default"}'), 'tenant joules');
    assert.equal(d('tokenfab_tenant_requests_total{tenant="default"}'), prompts.length);
    assert.equal(after.get('tokenfab_energy_source{source="model"}'), 1);
  });
});

function writeKeys(file, tenants) {
  fs.writeFileSync(file, JSON.stringify({ tenants }, null, 1));
}

describe('tenants', () => {
  const keys = path.join(tmp, 'keys.json');
  const usage = path.join(tmp, 'usage.json');
  const audit = path.join(tmp, 'audit.jsonl');
  const base = [
    { name: 'acme', key_sha256: sha('key-acme'), tokens_per_day: 100000, concurrency: 3 },
    { name: 'small', key_sha256: sha('key-small'), tokens_per_day: 60 },
    { name: 'slow', key_sha256: [sha('key-slow'), sha('key-slow-2')], requests_per_minute: 2 },
    { name: 'other', key_sha256: sha('key-other'), models: ['another-model'] },
  ];
  let server;
  const args = () => ['--api-keys', keys, '--usage-file', usage, '--audit-log', audit, ...meterArgs];
  const as = (key) => client(server, { apiKey: key });
  before(async () => {
    writeKeys(keys, base);
    server = await startServer({ ctx: 2048, parallel: 4, args: args(), apiKey: 'key-acme' });
  });
  after(async () => {
    await stopServer(server);
  });

  test('a wrong or missing key is 401; a model the tenant may not use is 403', T, async () => {
    await assert.rejects(as('key-nobody').completions.create({ model: MODEL_ID, prompt: 'Hi', max_tokens: 2 }),
      (e) => e.status === 401 && e.code === 'invalid_api_key');
    const r = await rawRequest(server, 'POST', '/v1/completions', { body: { prompt: 'Hi', max_tokens: 2 } });
    assert.equal(r.status, 401);
    await assert.rejects(as('key-other').completions.create({ model: MODEL_ID, prompt: 'Hi', max_tokens: 2 }),
      (e) => e.status === 403 && e.code === 'model_not_allowed');
    // Anthropic's client sends x-api-key.
    const anthropic = new Anthropic({ baseURL: server.url, apiKey: 'key-acme', maxRetries: 0, timeout: 30_000 });
    const m = await anthropic.messages.create({ model: 'x', max_tokens: 4, messages: [{ role: 'user', content: 'Hi' }] });
    assert.equal(m.type, 'message');
  });

  test('an exhausted token budget is 429 naming the limit, with Retry-After until midnight UTC', T, async () => {
    const small = as('key-small');
    const r = await small.completions.create({ model: MODEL_ID, prompt: 'Once upon a time', max_tokens: 64, ignore_eos: true });
    assert.ok(r.usage.total_tokens >= 60);
    const e = await small.completions.create({ model: MODEL_ID, prompt: 'Hi', max_tokens: 2 }).catch((x) => x);
    assert.equal(e.status, 429, String(e));
    assert.equal(e.code, 'tokens_per_day');
    assert.match(e.message, /60 tokens per day/);
    const after = Number(e.headers.get('retry-after'));
    const now = new Date();
    const midnight = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1);
    assert.ok(Math.abs(after - (midnight - now.getTime()) / 1000) < 5, `Retry-After ${after}`);
  });

  test('requests per minute: the third in a minute is 429 with Retry-After', T, async () => {
    const slow = as('key-slow');
    await slow.completions.create({ model: MODEL_ID, prompt: 'Hi', max_tokens: 2 });
    await as('key-slow-2').completions.create({ model: MODEL_ID, prompt: 'Hi', max_tokens: 2 });  // same tenant
    const e = await slow.completions.create({ model: MODEL_ID, prompt: 'Hi', max_tokens: 2 }).catch((x) => x);
    assert.equal(e.status, 429);
    assert.equal(e.code, 'requests_per_minute');
    const after = Number(e.headers.get('retry-after'));
    assert.ok(after >= 1 && after <= 61, `Retry-After ${after}`);
  });

  test('a concurrency limit of 3 holds under 32 parallel clients', T, async () => {
    const before = await books(server);
    const results = await Promise.all(Array.from({ length: 32 }, (_, i) => as('key-acme').completions.create({
      model: MODEL_ID, prompt: `Once upon a time ${i}`, max_tokens: 1000, ignore_eos: true,
    }).then(() => 200, (e) => {
      if (e.status === 429) {
        assert.equal(e.code, 'concurrency');
        assert.equal(e.headers.get('retry-after'), '1');
      }
      return e.status;
    })));
    const ok = results.filter((s) => s === 200).length;
    const refused = results.filter((s) => s === 429).length;
    assert.equal(ok + refused, 32, `statuses ${results}`);
    assert.ok(ok >= 3 && refused >= 1, `${ok} served, ${refused} refused`);
    const after = await books(server);
    assert.ok(after.get('tokenfab_tenant_requests_in_flight_peak{tenant="acme"}') <= 3);
    assert.equal(after.get('tokenfab_tenant_requests_in_flight{tenant="acme"}'), 0);
    const key = 'tokenfab_tenant_refused_total{tenant="acme",limit="concurrency"}';
    assert.equal(after.get(key) - (before.get(key) ?? 0), refused);
  });

  test('SIGHUP reloads the keys file: a new key works, a removed one is refused', T, async () => {
    const fresh = as('key-fresh');
    await assert.rejects(fresh.completions.create({ model: MODEL_ID, prompt: 'Hi', max_tokens: 2 }), (e) => e.status === 401);
    writeKeys(keys, [...base.filter((t) => t.name !== 'other'), { name: 'fresh', key_sha256: sha('key-fresh') }]);
    server.child.kill('SIGHUP');
    let ok = false;
    for (let i = 0; i < 100 && !ok; ++i) {
      await sleep(50);
      ok = /SIGHUP: .* reloaded/.test(server.log());
    }
    assert.ok(ok, server.log());
    const r = await fresh.completions.create({ model: MODEL_ID, prompt: 'Hi', max_tokens: 2 });
    assert.equal(r.object, 'text_completion');
    await assert.rejects(as('key-other').completions.create({ model: MODEL_ID, prompt: 'Hi', max_tokens: 2 }),
      (e) => e.status === 401);
    // A broken file keeps the keys in force.
    fs.writeFileSync(keys, '{"tenants": [');
    server.child.kill('SIGHUP');
    for (let i = 0; i < 100 && !/previous keys stay in force/.test(server.log()); ++i) await sleep(50);
    assert.match(server.log(), /not valid JSON; the previous keys stay in force/);
    await fresh.completions.create({ model: MODEL_ID, prompt: 'Hi', max_tokens: 2 });
    writeKeys(keys, [...base, { name: 'fresh', key_sha256: sha('key-fresh') }]);
  });

  test('the audit log: one JSON line per request, without text', T, async () => {
    const lines = fs.readFileSync(audit, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
    assert.ok(lines.length >= 40, `${lines.length} lines`);
    for (const l of lines) {
      assert.match(l.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.equal(typeof l.status, 'number');
      assert.ok(!('request' in l) && !('output' in l));
    }
    assert.ok(!fs.readFileSync(audit, 'utf8').includes('Once upon a time'), 'prompt text in the audit log');
    const served = lines.filter((l) => l.status === 200 && l.tenant === 'acme');
    assert.ok(served.length >= 3);
    for (const l of served) {
      assert.equal(l.model, MODEL_ID);
      assert.ok(l.completion_tokens > 0 && l.joules > 0 && l.cost_usd > 0 && l.latency_ms > 0, JSON.stringify(l));
    }
    assert.ok(lines.some((l) => l.status === 401 && l.tenant === null));
    assert.ok(lines.some((l) => l.status === 429 && l.tenant === 'small'));
  });

  test('usage counters survive a restart: the spent budget stays spent', T, async () => {
    const before = await books(server);
    await stopServer(server);
    const saved = JSON.parse(fs.readFileSync(usage, 'utf8'));
    assert.ok(saved.tenants.acme.completion_tokens > 0);
    server = await startServer({ ctx: 2048, parallel: 4, args: args(), apiKey: 'key-acme' });
    const after = await books(server);
    for (const k of ['tokenfab_tenant_completion_tokens_total{tenant="acme"}', 'tokenfab_tenant_energy_joules_total{tenant="acme"}',
      'tokenfab_tenant_requests_total{tenant="small"}', 'tokenfab_tenant_day_tokens{tenant="small"}']) {
      assert.ok(before.get(k) > 0, k);
      assert.ok(Math.abs(after.get(k) - before.get(k)) <= 1e-9 * before.get(k), `${k}: ${before.get(k)} -> ${after.get(k)}`);
    }
    const e = await as('key-small').completions.create({ model: MODEL_ID, prompt: 'Hi', max_tokens: 2 }).catch((x) => x);
    assert.equal(e.status, 429);
    assert.equal(e.code, 'tokens_per_day');
  });
});

describe('startup errors and the audit log\'s options', () => {
  const serveArgs = (extra) => ['serve', '-m', MODEL_PATH, '--port', '0', ...extra];
  test('a malformed keys file is a clear startup error', T, () => {
    const bad = path.join(tmp, 'bad-keys.json');
    const cases = [
      ['{"tenants": [', /not valid JSON/],
      ['{"tenants": [{"name": "a", "key": "plain"}]}', /keys are stored hashed/],
      ['{"tenants": [{"name": "a", "key_sha256": "abc"}]}', /64 hex digits/],
      [`{"tenants": [{"name": "a", "key_sha256": "${sha('x')}", "concurrency": -1}]}`, /non-negative integer/],
      [`{"tenants": [{"name": "a", "key_sha256": "${sha('x')}"}, {"name": "a", "key_sha256": "${sha('y')}"}]}`, /two tenants are named/],
    ];
    for (const [text, re] of cases) {
      fs.writeFileSync(bad, text);
      const r = spawnSync(BIN, serveArgs(['--api-keys', bad]), { encoding: 'utf8', timeout: 20_000 });
      assert.equal(r.status, 1, `${text}: exit ${r.status}\n${r.stderr}`);
      assert.match(r.stderr, re, text);
      assert.match(r.stderr, /bad-keys\.json/);
    }
    const r = spawnSync(BIN, serveArgs(['--api-keys', path.join(tmp, 'missing.json')]), { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /cannot read the keys file/);
  });

  test('--audit-content logs the text; the log rotates by size', T, async () => {
    const log = path.join(tmp, 'rot.jsonl');
    const server = await startServer({ args: ['--audit-log', log, '--audit-content', '--audit-max-bytes', '4096', '--audit-keep', '2'] });
    try {
      const openai = client(server);
      for (let i = 0; i < 30; ++i)
        await openai.completions.create({ model: MODEL_ID, prompt: `Once upon a time number ${i}`, max_tokens: 8 });
    } finally {
      await stopServer(server);
    }
    const files = [log, `${log}.1`, `${log}.2`];
    for (const f of files) assert.ok(fs.existsSync(f), `${f} missing`);
    assert.ok(!fs.existsSync(`${log}.3`), 'kept more than --audit-keep');
    let all = [];
    for (const f of files) {
      assert.ok(fs.statSync(f).size <= 4096, `${f} is ${fs.statSync(f).size} bytes`);
      all = all.concat(fs.readFileSync(f, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l)));
    }
    const withText = all.filter((l) => l.request?.prompt?.startsWith('Once upon a time number'));
    assert.ok(withText.length >= 3, `${withText.length} lines with their prompt`);
    assert.ok(withText.every((l) => Array.isArray(l.output) && typeof l.output[0] === 'string'));
  });
});
