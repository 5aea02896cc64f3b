// The OpenAI Responses API (POST /v1/responses) through the openai SDK and
// the Anthropic Messages API (POST /v1/messages, /v1/messages/count_tokens) through
// @anthropic-ai/sdk: plain answers against chat completions, a tool round trip each (streamed and
// not), and 400s in each API's error shape.
//
// stories260K never calls a tool by itself, so the calls here are forced by tool_choice (a named
// function / tool), which the server turns into a grammar.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { startServer, stopServer, client, MODEL_ID, rawRequest, rawSSE, words } from './helpers.mjs';

const T = { timeout: 30_000 };
const weatherSchema = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] };

function anthropicClient(server, opts = {}) {
  // The SDK adds /v1/messages itself, and sends the key as x-api-key.
  return new Anthropic({ baseURL: server.url, apiKey: 'sk-no-key', maxRetries: 0, timeout: 30_000, ...opts });
}

describe('responses API', () => {
  let server;
  let openai;
  before(async () => {
    server = await startServer({ ctx: 2048, parallel: 2 });
    openai = client(server);
  });
  after(async () => {
    await stopServer(server);
  });

  const tools = [{ type: 'function', name: 'get_weather', description: 'Weather of a city', parameters: weatherSchema, strict: false }];

  test('text answer: the same text as chat completions, usage, status', T, async () => {
    const q = 'Once upon a time';
    const r = await openai.responses.create({ model: MODEL_ID, input: q, temperature: 0, max_output_tokens: 20 });
    assert.equal(r.object, 'response');
    assert.match(r.id, /^resp_/);
    assert.ok(['completed', 'incomplete'].includes(r.status), `status ${r.status}`);
    if (r.status === 'incomplete') assert.equal(r.incomplete_details?.reason, 'max_output_tokens');
    const msg = r.output.find((i) => i.type === 'message');
    assert.ok(msg, JSON.stringify(r.output));
    assert.equal(msg.role, 'assistant');
    assert.equal(msg.content[0].type, 'output_text');
    assert.equal(r.output_text, msg.content[0].text);  // computed by the SDK
    const chat = await openai.chat.completions.create({
      model: MODEL_ID, messages: [{ role: 'user', content: q }], temperature: 0, max_tokens: 20,
    });
    assert.equal(r.output_text, chat.choices[0].message.content);
    assert.equal(r.usage.input_tokens, chat.usage.prompt_tokens);
    assert.equal(r.usage.output_tokens, chat.usage.completion_tokens);
    assert.equal(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens);
    assert.equal(typeof r.usage.input_tokens_details.cached_tokens, 'number');
  });

  test('forced function call, then function_call_output', T, async () => {
    const input = [{ role: 'user', content: 'What is the weather in Oslo?' }];
    const r1 = await openai.responses.create({
      model: MODEL_ID, input, tools, tool_choice: { type: 'function', name: 'get_weather' }, temperature: 0, max_output_tokens: 200,
    });
    const call = r1.output.find((i) => i.type === 'function_call');
    assert.ok(call, `no function_call in ${JSON.stringify(r1.output)}`);
    assert.equal(call.name, 'get_weather');
    assert.match(call.id, /^fc_/);
    assert.equal(typeof call.call_id, 'string');
    assert.equal(typeof JSON.parse(call.arguments).city, 'string', call.arguments);
    // The client sends the whole conversation back (the server stores nothing).
    const r2 = await openai.responses.create({
      model: MODEL_ID, tools, temperature: 0, max_output_tokens: 16,
      input: [...input, ...r1.output, { type: 'function_call_output', call_id: call.call_id, output: 'Rain, 8 C' }],
    });
    assert.ok(['completed', 'incomplete'].includes(r2.status));
    assert.equal(typeof r2.output_text, 'string');
  });

  test('streaming: sequence numbers, deltas add up, same as non-streamed', T, async () => {
    const req = { model: MODEL_ID, input: 'Tom had a little dog', temperature: 0, max_output_tokens: 20 };
    const full = await openai.responses.create(req);
    const events = [];
    for await (const e of await openai.responses.create({ ...req, stream: true })) events.push(e);
    assert.equal(events[0].type, 'response.created');
    assert.equal(events[1].type, 'response.in_progress');
    events.forEach((e, i) => assert.equal(e.sequence_number, i, JSON.stringify(e)));
    const last = events.at(-1);
    assert.ok(['response.completed', 'response.incomplete'].includes(last.type), last.type);
    const text = events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('');
    assert.equal(text, full.output_text);
    assert.deepEqual(last.response.output.map((i) => i.content?.[0]?.text), full.output.map((i) => i.content?.[0]?.text));
    assert.equal(last.response.usage.output_tokens, full.usage.output_tokens);
    const done = events.filter((e) => e.type === 'response.output_item.done');
    for (const d of done) assert.deepEqual(d.item, last.response.output[d.output_index]);
  });

  test('streaming a forced call: arguments deltas and output_item.done (what Codex CLI reads)', T, async () => {
    const events = [];
    const stream = await openai.responses.create({
      model: MODEL_ID, input: 'Weather in Rome?', tools, tool_choice: 'required', parallel_tool_calls: false, temperature: 0, max_output_tokens: 200, stream: true,
    });
    for await (const e of stream) events.push(e);
    const done = events.find((e) => e.type === 'response.output_item.done' && e.item.type === 'function_call');
    assert.ok(done, events.map((e) => e.type).join(' '));
    const args = events.filter((e) => e.type === 'response.function_call_arguments.delta' && e.item_id === done.item.id)
      .map((e) => e.delta).join('');
    assert.equal(args, done.item.arguments);
    JSON.parse(done.item.arguments);
    assert.equal(events.at(-1).type, 'response.completed');
  });

  test('a streamed prompt over the context is response.failed with context_length_exceeded', T, async () => {
    const raw = await rawSSE(server, '/v1/responses', { model: MODEL_ID, input: words(3000), stream: true });
    assert.equal(raw.status, 200, raw.raw);
    const failed = raw.json.find((e) => e.type === 'response.failed');
    assert.ok(failed, raw.raw);
    assert.equal(failed.response.error.code, 'context_length_exceeded');
    assert.equal(typeof failed.response.id, 'string');
  });

  test('400s name the parameter', T, async () => {
    const cases = [
      [{ model: MODEL_ID, input: 'x', previous_response_id: 'resp_123' }, 'previous_response_id'],
      [{ model: MODEL_ID, input: 'x', tools: [{ type: 'web_search' }] }, 'tools[0].type'],
      [{ model: MODEL_ID, input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'http://x/y.png' }] }] }, 'input[0].content[0].type'],
    ];
    for (const [body, param] of cases) {
      await assert.rejects(openai.responses.create(body), (e) => {
        assert.equal(e.status, 400, String(e));
        assert.equal(e.param, param, JSON.stringify(e.error));
        return true;
      });
    }
  });
});

describe('messages API', () => {
  let server;
  let anthropic;
  let openai;
  before(async () => {
    server = await startServer({ ctx: 2048, parallel: 2 });
    anthropic = anthropicClient(server);
    openai = client(server);
  });
  after(async () => {
    await stopServer(server);
  });

  const tools = [{ name: 'get_weather', description: 'Weather of a city', input_schema: weatherSchema }];

  test('text answer: the same text as chat completions, stop_reason, usage', T, async () => {
    const q = 'Once upon a time';
    const m = await anthropic.messages.create({ model: MODEL_ID, max_tokens: 20, temperature: 0, messages: [{ role: 'user', content: q }] });
    assert.equal(m.type, 'message');
    assert.equal(m.role, 'assistant');
    assert.ok(['end_turn', 'max_tokens'].includes(m.stop_reason), m.stop_reason);
    assert.equal(m.content[0].type, 'text');
    const chat = await openai.chat.completions.create({
      model: MODEL_ID, messages: [{ role: 'user', content: q }], temperature: 0, max_tokens: 20,
    });
    assert.equal(m.content[0].text, chat.choices[0].message.content);
    // Anthropic counts cache reads apart from input_tokens.
    assert.equal(m.usage.input_tokens + m.usage.cache_read_input_tokens, chat.usage.prompt_tokens);
    assert.equal(m.usage.output_tokens, chat.usage.completion_tokens);
  });

  test('forced tool_use, then tool_result', T, async () => {
    const messages = [{ role: 'user', content: 'What is the weather in Oslo?' }];
    const m1 = await anthropic.messages.create({
      model: MODEL_ID, max_tokens: 200, temperature: 0, messages, tools, tool_choice: { type: 'tool', name: 'get_weather', disable_parallel_tool_use: true },
    });
    assert.equal(m1.stop_reason, 'tool_use');
    const use = m1.content.find((b) => b.type === 'tool_use');
    assert.ok(use, JSON.stringify(m1.content));
    assert.equal(use.name, 'get_weather');
    assert.equal(typeof use.input.city, 'string', JSON.stringify(use.input));
    const m2 = await anthropic.messages.create({
      model: MODEL_ID, max_tokens: 16, temperature: 0, tools,
      messages: [...messages, { role: 'assistant', content: m1.content },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: 'Rain, 8 C' }] }],
    });
    assert.equal(m2.type, 'message');
  });

  test('streaming: finalMessage equals the non-streamed message; raw events are named', T, async () => {
    const req = { model: MODEL_ID, max_tokens: 20, temperature: 0, messages: [{ role: 'user', content: 'Tom had a little dog' }] };
    const full = await anthropic.messages.create(req);
    const streamed = await anthropic.messages.stream(req).finalMessage();
    assert.deepEqual(streamed.content, full.content);
    assert.equal(streamed.stop_reason, full.stop_reason);
    assert.equal(streamed.usage.output_tokens, full.usage.output_tokens);
    const raw = await rawSSE(server, '/v1/messages', { ...req, stream: true });
    assert.equal(raw.status, 200, raw.raw);
    const names = [...raw.raw.matchAll(/^event: (\S+)$/gm)].map((x) => x[1]).filter((n) => n !== 'ping');
    assert.equal(names[0], 'message_start');
    assert.equal(names.at(-1), 'message_stop');
    assert.equal(names.length, raw.json.filter((j) => j.type !== 'ping').length);
  });

  test('streaming a forced tool_use: input_json_delta adds up to the input', T, async () => {
    const stream = anthropic.messages.stream({
      model: MODEL_ID, max_tokens: 200, temperature: 0, tools, tool_choice: { type: 'any', disable_parallel_tool_use: true },
      messages: [{ role: 'user', content: 'Weather in Rome?' }],
    });
    let json = '';
    stream.on('inputJson', (partial) => { json += partial; });
    const m = await stream.finalMessage();
    const use = m.content.find((b) => b.type === 'tool_use');
    assert.ok(use, JSON.stringify(m.content));
    assert.deepEqual(JSON.parse(json), use.input);
    assert.equal(m.stop_reason, 'tool_use');
  });

  test('max_tokens past the context (as Claude Code sends) is a limit, not an error', T, async () => {
    const m = await anthropic.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 32000, temperature: 0,
      messages: [{ role: 'user', content: 'Once upon a time' }] });
    assert.ok(['end_turn', 'max_tokens'].includes(m.stop_reason), m.stop_reason);
    assert.equal(m.content[0].type, 'text');
  });

  test('count_tokens equals the prompt of the same request', T, async () => {
    const req = { model: MODEL_ID, system: 'Be brief.', messages: [{ role: 'user', content: 'A bird in the sky' }], tools };
    const { input_tokens: n } = await anthropic.messages.countTokens(req);
    const m = await anthropic.messages.create({ ...req, max_tokens: 1 });
    assert.equal(n, m.usage.input_tokens + m.usage.cache_read_input_tokens);
  });

  test('400s in Anthropic\'s error shape', T, async () => {
    const cases = [
      { model: MODEL_ID, messages: [{ role: 'user', content: 'x' }] },  // no max_tokens
      { model: MODEL_ID, max_tokens: 5, messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AA==' } }] }] },
      { model: MODEL_ID, max_tokens: 5, messages: [{ role: 'user', content: 'x' }], tools: [{ type: 'web_search_20250305', name: 'web_search' }] },
    ];
    for (const body of cases) {
      const r = await rawRequest(server, 'POST', '/v1/messages', { body });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json?.type, 'error', r.text);
      assert.equal(r.json.error.type, 'invalid_request_error', r.text);
      assert.equal(typeof r.json.error.message, 'string');
    }
  });
});

describe('messages API with --api-key', () => {
  let server;
  before(async () => {
    server = await startServer({ args: ['--api-key', 'secret'], apiKey: 'secret' });
  });
  after(async () => {
    await stopServer(server);
  });

  test('x-api-key is accepted; a wrong key is a 401 authentication_error', T, async () => {
    const ok = await anthropicClient(server, { apiKey: 'secret' }).messages.create({
      model: MODEL_ID, max_tokens: 4, messages: [{ role: 'user', content: 'Hi' }],
    });
    assert.equal(ok.type, 'message');
    await assert.rejects(anthropicClient(server, { apiKey: 'wrong' }).messages.create({
      model: MODEL_ID, max_tokens: 4, messages: [{ role: 'user', content: 'Hi' }],
    }), (e) => {
      assert.equal(e.status, 401);
      assert.equal(e.error?.error?.type, 'authentication_error', JSON.stringify(e.error));
      return true;
    });
  });
});
