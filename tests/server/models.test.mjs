// GET /v1/models, /health and /metrics.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, stopServer, client, MODEL_ID, rawRequest, metricsText, parseMetrics, findMetric, sleep,
} from './helpers.mjs';

const T = { timeout: 30_000 };

describe('models, health, metrics', () => {
  let server;
  let openai;
  before(async () => {
    server = await startServer();
    openai = client(server);
  });
  after(async () => {
    await stopServer(server);
  });

  test('models.list() returns the one model, named by the file stem', T, async () => {
    const page = await openai.models.list();
    const models = page.data;
    assert.equal(models.length, 1, `models: ${JSON.stringify(models)}`);
    assert.equal(models[0].id, MODEL_ID);
    assert.equal(models[0].object, 'model');
    // Iterating the page (the SDK's auto-pagination) sees the same single model.
    const ids = [];
    for await (const m of openai.models.list()) ids.push(m.id);
    assert.deepEqual(ids, [MODEL_ID]);
  });

  test('GET /v1/models raw shape', T, async () => {
    const r = await rawRequest(server, 'GET', '/v1/models');
    assert.equal(r.status, 200);
    assert.equal(r.json.object, 'list', r.text);
    assert.ok(Array.isArray(r.json.data), r.text);
    assert.equal(r.json.data[0].id, MODEL_ID);
    assert.equal(typeof r.json.data[0].owned_by, 'string', r.text);
    assert.equal(typeof r.json.data[0].created, 'number', r.text);
  });

  test('GET /health is 200 {"status":"ok"}', T, async () => {
    const r = await rawRequest(server, 'GET', '/health');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /application\/json/);
    assert.deepEqual(r.json, { status: 'ok' });
  });

  test('GET /metrics is Prometheus text with the vLLM gauges and tokenfab counters', T, async () => {
    const { text, contentType } = await metricsText(server);
    assert.match(contentType, /^text\/plain/, `content-type ${contentType}`);
    const m = parseMetrics(text);
    for (const name of ['vllm:num_requests_waiting', 'vllm:num_requests_running', 'vllm:kv_cache_usage_perc']) {
      assert.ok(m.values.has(name), `${name} missing from /metrics:\n${text}`);
      assert.equal(m.types.get(name), 'gauge', `${name} TYPE`);
      assert.ok(Number.isFinite(m.values.get(name)), `${name} value`);
    }
    const kv = m.values.get('vllm:kv_cache_usage_perc');
    assert.ok(kv >= 0 && kv <= 1, `vllm:kv_cache_usage_perc ${kv} not in [0, 1]`);
    for (const re of [/^tokenfab_\w*requests\w*_total$/, /^tokenfab_\w*prompt_tokens\w*_total$/,
      /^tokenfab_\w*completion_tokens\w*_total$/]) {
      const name = findMetric(m, re);
      assert.ok(name, `no metric matching ${re} in /metrics:\n${text}`);
      assert.equal(m.types.get(name), 'counter', `${name} TYPE`);
    }
    // Every sample line is `name{labels} value`; every name has a TYPE.
    for (const line of text.split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      assert.match(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? ([-+0-9.eE]+|NaN|[+-]Inf)$/, `bad sample line: ${line}`);
    }
  });

  test('the completion-token counter grows after a completion', T, async () => {
    const before = parseMetrics((await metricsText(server)).text);
    const ctName = findMetric(before, /^tokenfab_\w*completion_tokens\w*_total$/);
    const ptName = findMetric(before, /^tokenfab_\w*prompt_tokens\w*_total$/);
    const rqName = findMetric(before, /^tokenfab_\w*requests\w*_total$/);
    assert.ok(ctName && ptName && rqName, 'tokenfab counters missing');
    const c0 = before.values.get(ctName) ?? 0;
    const p0 = before.values.get(ptName) ?? 0;
    const r0 = before.values.get(rqName) ?? 0;
    const res = await openai.chat.completions.create({
      model: MODEL_ID, messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 8, temperature: 0,
    });
    assert.ok(res.usage.completion_tokens > 0);
    // Counters may be published a moment after the response: poll up to 2 s.
    let after;
    const t0 = Date.now();
    do {
      after = parseMetrics((await metricsText(server)).text);
      if ((after.values.get(ctName) ?? 0) >= c0 + res.usage.completion_tokens) break;
      await sleep(50);
    } while (Date.now() - t0 < 2000);
    const c1 = after.values.get(ctName) ?? 0;
    const p1 = after.values.get(ptName) ?? 0;
    const r1 = after.values.get(rqName) ?? 0;
    assert.ok(c1 > c0, `${ctName} did not grow: ${c0} -> ${c1}`);
    assert.equal(c1 - c0, res.usage.completion_tokens, `${ctName} grew by ${c1 - c0}, usage.completion_tokens ${res.usage.completion_tokens}`);
    assert.equal(p1 - p0, res.usage.prompt_tokens, `${ptName} grew by ${p1 - p0}, usage.prompt_tokens ${res.usage.prompt_tokens}`);
    assert.ok(r1 > r0, `${rqName} did not grow: ${r0} -> ${r1}`);
  });
});
