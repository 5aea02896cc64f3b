// Tool calling, structured output and reasoning through /v1/chat/completions with the official
// openai SDK, on the real stories260K model. It never calls a tool by itself, so calls are forced
// with tool_choice "required" or a named function (the server turns the tools' schemas into a
// grammar); structured output comes from response_format. Run with the model's own template
// (no tool syntax: the generic JSON format) and with real templates of tool-calling families
// (Hermes/Qwen <tool_call>, Mistral [TOOL_CALLS], Llama 3.x JSON), whose native syntax must
// never reach `content`.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { startServer, stopServer, client, MODEL_ID, SHARED, rawRequest, assertErrorShape } from './helpers.mjs';

const T = { timeout: 60_000 };
const weather = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather of a city',
    parameters: {
      type: 'object',
      properties: {
        city: { type: 'string', maxLength: 24 },
        unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
        days: { type: 'integer', minimum: 1, maximum: 7 },
      },
      required: ['city', 'unit'],
    },
  },
};
const search = {
  type: 'function',
  function: {
    name: 'search',
    description: 'Search the web',
    parameters: { type: 'object', properties: { query: { type: 'string', maxLength: 30 } }, required: ['query'] },
  },
};
const question = [{ role: 'user', content: 'What is the weather in Oslo?' }];

function checkWeatherArgs(text) {
  const a = JSON.parse(text);
  assert.equal(typeof a.city, 'string', text);
  assert.ok([...a.city].length <= 24, text);
  assert.ok(['celsius', 'fahrenheit'].includes(a.unit), text);
  if ('days' in a) assert.ok(Number.isInteger(a.days) && a.days >= 1 && a.days <= 7, text);
  for (const k of Object.keys(a)) assert.ok(['city', 'unit', 'days'].includes(k), `extra key ${k}: ${text}`);
  return a;
}

// Reassembles a streamed chat completion: content, reasoning and tool calls by index.
async function collect(stream) {
  let content = '';
  let reasoning = '';
  let finish = null;
  const calls = [];
  for await (const chunk of stream) {
    for (const c of chunk.choices ?? []) {
      const d = c.delta ?? {};
      if (typeof d.content === 'string') content += d.content;
      if (typeof d.reasoning_content === 'string') reasoning += d.reasoning_content;
      for (const tc of d.tool_calls ?? []) {
        assert.equal(typeof tc.index, 'number');
        if (!calls[tc.index]) {
          assert.ok(tc.id, 'the first delta of a call carries its id');
          assert.equal(tc.type, 'function');
          calls[tc.index] = { id: tc.id, type: 'function', function: { name: tc.function.name, arguments: '' } };
        }
        calls[tc.index].function.arguments += tc.function?.arguments ?? '';
      }
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  return { content, reasoning, calls, finish };
}

function templateArgs(file) {
  return ['--chat-template', path.join(SHARED, 'models', 'templates', file)];
}

// The same checks under the model's own template and under real tool-calling templates.
const setups = [
  { name: 'own template (generic JSON calls)', args: [] },
  { name: 'Hermes 3 template (<tool_call>)', args: templateArgs('NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja'), marker: '<tool_call>' },
  // Thinking off: a forced call may follow a think block, which this model would never close.
  { name: 'Qwen3 template (<tool_call>, thinking off)', args: templateArgs('Qwen-Qwen3-0.6B.jinja'), marker: '<tool_call>',
    extra: { chat_template_kwargs: { enable_thinking: false } } },
  { name: 'Mistral Nemo template ([TOOL_CALLS])', args: templateArgs('mistralai-Mistral-Nemo-Instruct-2407.jinja'), marker: '[TOOL_CALLS]' },
  { name: 'Llama 3.1 template (JSON calls)', args: templateArgs('meta-llama-Llama-3.1-8B-Instruct.jinja'), marker: '"parameters"' },
];

for (const setup of setups) {
  describe(`tool calls: ${setup.name}`, () => {
    let server;
    let openai;
    before(async () => {
      server = await startServer({ args: setup.args, ctx: 2048, parallel: 2 });
      openai = client(server);
    });
    const create = (body) => openai.chat.completions.create({ ...body, ...(setup.extra ?? {}) });
    after(async () => {
      await stopServer(server);
    });

    test('named tool_choice: a valid call, then the tool result gives an answer', T, async () => {
      const r1 = await create({
        model: MODEL_ID, messages: question, tools: [weather, search], temperature: 0, max_tokens: 300,
        tool_choice: { type: 'function', function: { name: 'get_weather' } }, parallel_tool_calls: false,
      });
      const ch = r1.choices[0];
      assert.equal(ch.finish_reason, 'tool_calls', JSON.stringify(ch));
      assert.equal(ch.message.tool_calls.length, 1, JSON.stringify(ch.message));
      const call = ch.message.tool_calls[0];
      assert.equal(call.type, 'function');
      assert.equal(call.function.name, 'get_weather');
      assert.ok(call.id);
      checkWeatherArgs(call.function.arguments);
      if (setup.marker) assert.ok(!(ch.message.content ?? '').includes(setup.marker), ch.message.content);
      // Round trip: the call and its result go back through the template.
      const r2 = await create({
        model: MODEL_ID, tools: [weather, search], temperature: 0, max_tokens: 24,
        messages: [...question, ch.message, { role: 'tool', tool_call_id: call.id, content: '{"temp": 8, "sky": "rain"}' }],
      });
      assert.equal(typeof r2.choices[0].message.content, 'string');
      assert.ok(['stop', 'length', 'tool_calls'].includes(r2.choices[0].finish_reason));
    });

    test('required with parallel calls: every complete call names a tool and has valid arguments', T, async () => {
      for (const seed of [1, 2, 3]) {
        const r = await create({
          model: MODEL_ID, messages: question, tools: [weather, search], tool_choice: 'required',
          temperature: 1, seed, max_tokens: 400,
        });
        const ch = r.choices[0];
        // This model may go on calling until max_tokens. A cut call stays text, as any cut
        // output (Mistral Nemo's calls are one JSON array: cut, none of them is whole).
        assert.ok(['tool_calls', 'length'].includes(ch.finish_reason), JSON.stringify(ch));
        const calls = ch.message.tool_calls ?? [];
        if (ch.finish_reason === 'tool_calls') {
          assert.ok(calls.length >= 1, JSON.stringify(ch.message));
          assert.equal(ch.message.content, null);
        }
        for (const c of calls) {
          if (c.function.name === 'get_weather') checkWeatherArgs(c.function.arguments);
          else assert.equal(typeof JSON.parse(c.function.arguments).query, 'string');
        }
        const ids = new Set(calls.map((c) => c.id));
        assert.equal(ids.size, calls.length, 'call ids are unique');
      }
    });

    test('parallel_tool_calls false: exactly one call', T, async () => {
      const r = await create({
        model: MODEL_ID, messages: question, tools: [weather, search], tool_choice: 'required',
        parallel_tool_calls: false, temperature: 1, seed: 5, max_tokens: 300,
      });
      assert.equal(r.choices[0].finish_reason, 'tool_calls', JSON.stringify(r.choices[0]));
      assert.equal(r.choices[0].message.tool_calls.length, 1);
    });

    test('streamed tool calls reassemble into the non-streamed result', T, async () => {
      const req = {
        model: MODEL_ID, messages: question, tools: [weather, search], tool_choice: 'required',
        parallel_tool_calls: false, temperature: 0, max_tokens: 300,
      };
      const full = await create(req);
      const got = await collect(await create({ ...req, stream: true }));
      const m = full.choices[0].message;
      assert.equal(got.finish, full.choices[0].finish_reason);
      assert.equal(got.content, m.content ?? '');
      assert.equal(got.calls.length, m.tool_calls.length);
      for (let i = 0; i < got.calls.length; i++) {
        assert.equal(got.calls[i].function.name, m.tool_calls[i].function.name);
        assert.equal(got.calls[i].function.arguments, m.tool_calls[i].function.arguments);
      }
    });

    test('tool_choice none: no calls parsed, plain content', T, async () => {
      const r = await create({
        model: MODEL_ID, messages: question, tools: [weather], tool_choice: 'none', temperature: 0, max_tokens: 16,
      });
      assert.equal(r.choices[0].message.tool_calls, undefined);
      assert.equal(typeof r.choices[0].message.content, 'string');
    });
  });
}

describe('structured output and reasoning', () => {
  let server;
  let openai;
  before(async () => {
    server = await startServer({ ctx: 2048, parallel: 2 });
    openai = client(server);
  });
  after(async () => {
    await stopServer(server);
  });

  const person = {
    type: 'object',
    properties: {
      name: { type: 'string', minLength: 1, maxLength: 20 },
      age: { type: 'integer', minimum: 0, maximum: 120 },
      pets: { type: 'array', items: { type: 'string', enum: ['cat', 'dog', 'fish'] }, maxItems: 3 },
      email: { type: 'string', pattern: '^[a-z]{1,8}@[a-z]{1,8}\\.com$' },
    },
    required: ['name', 'age', 'email'],
    additionalProperties: false,
  };

  test('response_format json_schema: every output parses and validates', T, async () => {
    for (const seed of [1, 2, 3, 4]) {
      const r = await openai.chat.completions.create({
        model: MODEL_ID, messages: [{ role: 'user', content: 'Describe a person.' }], temperature: 1, seed,
        max_tokens: 300, response_format: { type: 'json_schema', json_schema: { name: 'person', schema: person, strict: true } },
      });
      const text = r.choices[0].message.content;
      assert.equal(r.choices[0].finish_reason, 'stop', text);
      const v = JSON.parse(text);
      assert.equal(typeof v.name, 'string');
      assert.ok([...v.name].length >= 1 && [...v.name].length <= 20, text);
      assert.ok(Number.isInteger(v.age) && v.age >= 0 && v.age <= 120, text);
      assert.match(v.email, /^[a-z]{1,8}@[a-z]{1,8}\.com$/, text);
      if ('pets' in v) {
        assert.ok(Array.isArray(v.pets) && v.pets.length <= 3, text);
        for (const p of v.pets) assert.ok(['cat', 'dog', 'fish'].includes(p), text);
      }
      for (const k of Object.keys(v)) assert.ok(k in person.properties, `extra key ${k}`);
    }
  });

  test('response_format json_object gives a JSON object; streamed equals non-streamed', T, async () => {
    const req = {
      model: MODEL_ID, messages: [{ role: 'user', content: 'A dog' }], temperature: 0, max_tokens: 120,
      response_format: { type: 'json_object' },
    };
    const r = await openai.chat.completions.create(req);
    const text = r.choices[0].message.content;
    if (r.choices[0].finish_reason === 'stop') assert.equal(typeof JSON.parse(text), 'object');
    const got = await collect(await openai.chat.completions.create({ ...req, stream: true }));
    assert.equal(got.content, text);
  });

  test('an unsupported schema keyword is a 400 that names it', T, async () => {
    const res = await rawRequest(server, 'POST', '/v1/chat/completions', {
      body: {
        model: MODEL_ID, messages: [{ role: 'user', content: 'x' }],
        response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', patternProperties: { '^a': {} } } } },
      },
    });
    assert.equal(res.status, 400);
    const e = assertErrorShape(res.json);
    assert.equal(e.param, 'response_format');
    assert.match(e.message, /patternProperties/);
  });

  test('grammar on /v1/completions, and a bad grammar is a 400 with its line and column', T, async () => {
    const r = await openai.completions.create({
      model: MODEL_ID, prompt: 'Once upon a time', max_tokens: 40, temperature: 1, seed: 3,
      grammar: 'root ::= " " ("yes" | "no") (", " ("yes" | "no")){2} "."',
    });
    assert.match(r.choices[0].text, /^ (yes|no)(, (yes|no)){2}\.$/);
    assert.equal(r.choices[0].finish_reason, 'stop');
    const bad = await rawRequest(server, 'POST', '/v1/completions', {
      body: { model: MODEL_ID, prompt: 'x', grammar: 'root ::= [0-9' },
    });
    assert.equal(bad.status, 400);
    assert.match(assertErrorShape(bad.json).message, /line 1, column/);
  });

  test('tool_choice naming an unknown function is a 400', T, async () => {
    const res = await rawRequest(server, 'POST', '/v1/chat/completions', {
      body: { model: MODEL_ID, messages: question, tools: [weather], tool_choice: { type: 'function', function: { name: 'nope' } } },
    });
    assert.equal(res.status, 400);
    assert.equal(assertErrorShape(res.json).param, 'tool_choice');
  });
});

describe('reasoning (Qwen3 template: <think>)', () => {
  let server;
  let openai;
  before(async () => {
    server = await startServer({ args: templateArgs('Qwen-Qwen3-0.6B.jinja'), ctx: 1024, parallel: 2 });
    openai = client(server);
  });
  after(async () => {
    await stopServer(server);
  });
  // The model cannot think by itself: a grammar makes it write a think block, then an answer.
  const grammar = 'root ::= "<think>\\n" [a-z ]{3,30} "\\n</think>\\n\\n" [a-z ]{3,30}';

  test('reasoning_content holds the think block; content the answer; streamed the same', T, async () => {
    const req = { model: MODEL_ID, messages: [{ role: 'user', content: 'hi' }], temperature: 1, seed: 9, max_tokens: 120, grammar };
    const r = await openai.chat.completions.create(req);
    const m = r.choices[0].message;
    assert.match(m.reasoning_content, /^[a-z ]{3,30}$/, JSON.stringify(m));
    assert.match(m.content, /^[a-z ]{3,30}$/, JSON.stringify(m));
    const got = await collect(await openai.chat.completions.create({ ...req, stream: true }));
    assert.equal(got.reasoning, m.reasoning_content);
    assert.equal(got.content, m.content);
  });

  test('reasoning_format none leaves the text as generated', T, async () => {
    const r = await openai.chat.completions.create({
      model: MODEL_ID, messages: [{ role: 'user', content: 'hi' }], temperature: 1, seed: 9, max_tokens: 120, grammar,
      reasoning_format: 'none',
    });
    const m = r.choices[0].message;
    assert.equal(m.reasoning_content, undefined);
    assert.match(m.content, /^<think>\n[a-z ]{3,30}\n<\/think>\n\n[a-z ]{3,30}$/);
  });
});
