// Authentication, parameter validation, malformed requests and limits. Every error must have
// OpenAI's shape {"error": {"message", "type", "param", "code"}} and the server must survive
// all of it.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  OpenAI, startServer, stopServer, client, MODEL_ID, rawRequest, rawChunked, assertErrorShape, words,
} from './helpers.mjs';

const T = { timeout: 30_000 };
const MSGS = [{ role: 'user', content: 'Once upon a time' }];
const CHAT = '/v1/chat/completions';

// Awaits a promise that must reject; returns the error.
async function rejects(p) {
  try {
    const r = await p;
    assert.fail(`expected an error, got ${JSON.stringify(r).slice(0, 300)}`);
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    return e;
  }
}

describe('authentication (--api-key secret)', () => {
  let server;
  before(async () => {
    server = await startServer({ args: ['--api-key', 'secret'], apiKey: 'secret' });
  });
  after(async () => {
    await stopServer(server);
  });

  test('a wrong key is AuthenticationError 401', T, async () => {
    const bad = client(server, { apiKey: 'wrong' });
    const e = await rejects(bad.chat.completions.create({ model: MODEL_ID, messages: MSGS, max_tokens: 4 }));
    assert.ok(e instanceof OpenAI.AuthenticationError, `got ${e?.constructor?.name}: ${e}`);
    assert.equal(e.status, 401);
    assertErrorShape({ error: e.error }, 'wrong key');
    const e2 = await rejects(bad.models.list());
    assert.equal(e2.status, 401);
  });

  test('the right key works', T, async () => {
    const good = client(server, { apiKey: 'secret' });
    const r = await good.chat.completions.create({ model: MODEL_ID, messages: MSGS, max_tokens: 4, temperature: 0 });
    assert.equal(r.choices[0].message.role, 'assistant');
    const m = await good.models.list();
    assert.equal(m.data[0].id, MODEL_ID);
  });

  test('no Authorization header is 401 in OpenAI shape', T, async () => {
    const r = await rawRequest(server, 'POST', CHAT, { body: { model: MODEL_ID, messages: MSGS, max_tokens: 4 } });
    assert.equal(r.status, 401, r.text);
    assertErrorShape(r.json, 'no auth header');
    const r2 = await rawRequest(server, 'POST', CHAT, {
      body: { model: MODEL_ID, messages: MSGS, max_tokens: 4 }, headers: { authorization: 'Basic c2VjcmV0' },
    });
    assert.equal(r2.status, 401, `Basic auth: ${r2.text}`);
  });
});

describe('errors', () => {
  let server;
  let openai;
  before(async () => {
    server = await startServer();
    openai = client(server);
  });
  after(async () => {
    await stopServer(server);
  });

  // [name, request body changes, the field error.param must name]
  const bad = [
    ['temperature: "hot"', { temperature: 'hot' }, 'temperature'],
    ['temperature: -1', { temperature: -1 }, 'temperature'],
    ['max_tokens: -5', { max_tokens: -5 }, 'max_tokens'],
    ['top_p: 2', { top_p: 2 }, 'top_p'],
    ['n: 0', { n: 0 }, 'n'],
    ['messages missing', { messages: undefined }, 'messages'],
    ['messages: "x"', { messages: 'x' }, 'messages'],
    ['a message without role', { messages: [{ content: 'hi' }] }, 'messages'],
    ['stop: 5', { stop: 5 }, 'stop'],
    ['logprobs: "yes"', { logprobs: 'yes' }, 'logprobs'],
    ['top_logprobs: 50', { logprobs: true, top_logprobs: 50 }, 'top_logprobs'],
  ];
  // error.param is the field itself, or a path inside it (messages[0].role).
  const names = (param, field) => param === field || param?.startsWith(`${field}[`) || param?.startsWith(`${field}.`);

  for (const [name, change, field] of bad) {
    test(`400 naming the field: ${name}`, T, async () => {
      const body = { model: MODEL_ID, messages: MSGS, max_tokens: 4, ...change };
      for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
      const e = await rejects(openai.chat.completions.create(body));
      assert.ok(e instanceof OpenAI.BadRequestError, `got ${e?.constructor?.name}: ${e}`);
      assert.equal(e.status, 400);
      assertErrorShape({ error: e.error }, name);
      assert.ok(names(e.param, field), `error.param ${JSON.stringify(e.param)} does not name ${field}: ${JSON.stringify(e.error)}`);
      assert.equal(e.type, 'invalid_request_error');
    });
  }

  test('completions: bad parameters are 400 naming the field', T, async () => {
    const cases = [[{ prompt: undefined }, 'prompt'], [{ prompt: 5 }, 'prompt'], [{ temperature: 'hot' }, 'temperature'],
      [{ max_tokens: -5 }, 'max_tokens'], [{ logprobs: 50 }, 'logprobs']];
    for (const [change, field] of cases) {
      const body = { model: MODEL_ID, prompt: 'Once upon a time', max_tokens: 4, ...change };
      for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
      const e = await rejects(openai.completions.create(body));
      assert.equal(e.status, 400, `${JSON.stringify(change)}: ${e}`);
      assertErrorShape({ error: e.error }, JSON.stringify(change));
      assert.ok(names(e.param, field), `${JSON.stringify(change)}: error.param ${JSON.stringify(e.param)}`);
    }
  });

  test('unknown fields are ignored', T, async () => {
    const r = await openai.chat.completions.create({
      model: MODEL_ID, messages: MSGS, max_tokens: 4, temperature: 0,
      user: 'someone', metadata: { a: 'b' }, totally_unknown_field: { nested: [1, 2, 3] }, store: false,
    });
    assert.equal(r.choices[0].message.role, 'assistant');
  });

  test('malformed JSON is 400', T, async () => {
    for (const body of ['{"model": "stories260K", "messages": [', 'not json', '', '[1, 2', '{"a": 1}}']) {
      const r = await rawRequest(server, 'POST', CHAT, { body });
      assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.status} ${r.text}`);
      assertErrorShape(r.json, `malformed ${JSON.stringify(body)}`);
    }
    // Valid JSON that is not an object.
    for (const body of ['[]', '"x"', '42', 'null']) {
      const r = await rawRequest(server, 'POST', CHAT, { body });
      assert.equal(r.status, 400, `${body}: ${r.status} ${r.text}`);
      assertErrorShape(r.json, `non-object ${body}`);
    }
  });

  test('invalid UTF-8 in the body is 400', T, async () => {
    const head = Buffer.from('{"model": "stories260K", "max_tokens": 4, "messages": [{"role": "user", "content": "abc');
    const tail = Buffer.from('"}]}');
    for (const badBytes of [[0xff], [0xc3, 0x28], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xc0, 0xaf]]) {
      const r = await rawRequest(server, 'POST', CHAT, { body: Buffer.concat([head, Buffer.from(badBytes), tail]) });
      assert.equal(r.status, 400, `bytes ${badBytes.map((b) => b.toString(16))}: ${r.status} ${r.text}`);
      assertErrorShape(r.json, 'invalid utf-8');
    }
  });

  test('a body over 10 MiB is 413 (SDK, Content-Length)', T, async () => {
    // The SDK writes the whole body before it reads the answer: the server has to read (and
    // drop) the rest of the body, or shut down its side gently, for the 413 to arrive
    // instead of a connection reset.
    const e = await rejects(openai.chat.completions.create({
      model: MODEL_ID, max_tokens: 4, messages: [{ role: 'user', content: 'a'.repeat(11 << 20) }],
    }));
    assert.ok(e instanceof OpenAI.APIError, `got ${e?.constructor?.name}: ${e}`);
    assert.equal(e.status, 413, `${e?.constructor?.name}: ${e} (cause: ${e?.cause?.cause?.code ?? e?.cause?.code ?? e?.cause})`);
    assertErrorShape({ error: e.error }, '413');
  });

  test('a body over 10 MiB is 413 (chunked)', T, async () => {
    const piece = 'a'.repeat(1 << 20);
    const chunks = ['{"model": "stories260K", "messages": [{"role": "user", "content": "'];
    for (let i = 0; i < 11; i++) chunks.push(piece);
    chunks.push('"}]}');
    const r = await rawChunked(server, CHAT, chunks);
    assert.equal(r.status, 413, r.text.slice(0, 300));
    assertErrorShape(r.json, '413 chunked');
  });

  test('unknown route is 404', T, async () => {
    for (const [m, route] of [['GET', '/v1/nothing'], ['POST', '/v1/chat/complete'], ['GET', '/']]) {
      const r = await rawRequest(server, m, route, m === 'POST' ? { body: {} } : {});
      assert.equal(r.status, 404, `${m} ${route}: ${r.status} ${r.text}`);
      assertErrorShape(r.json, `${m} ${route}`);
    }
  });

  test('GET on /v1/chat/completions is 405', T, async () => {
    for (const [m, route] of [['GET', CHAT], ['GET', '/v1/completions'], ['DELETE', CHAT], ['POST', '/v1/models']]) {
      const r = await rawRequest(server, m, route);
      assert.equal(r.status, 405, `${m} ${route}: ${r.status} ${r.text}`);
      assertErrorShape(r.json, `${m} ${route}`);
    }
  });

  test('a 405 names the allowed methods in an Allow header (RFC 9110 15.5.6)', T, async () => {
    const r = await rawRequest(server, 'GET', CHAT);
    assert.equal(r.status, 405);
    assert.match(r.headers.get('allow') ?? '', /POST/, `GET ${CHAT}: Allow header ${JSON.stringify(r.headers.get('allow'))}`);
  });

  test('unknown model is 404 model_not_found', T, async () => {
    const e = await rejects(openai.chat.completions.create({ model: 'gpt-4o', messages: MSGS, max_tokens: 4 }));
    assert.ok(e instanceof OpenAI.NotFoundError, `got ${e?.constructor?.name}: ${e}`);
    assert.equal(e.status, 404);
    assert.equal(e.code, 'model_not_found', JSON.stringify(e.error));
    assertErrorShape({ error: e.error }, 'unknown model');
    const e2 = await rejects(openai.completions.create({ model: 'gpt-4o', prompt: 'hi', max_tokens: 4 }));
    assert.equal(e2.status, 404);
    assert.equal(e2.code, 'model_not_found');
  });

  test('a prompt longer than the context is 400 context_length_exceeded', T, async () => {
    const long = words(3000);
    const e = await rejects(openai.chat.completions.create({ model: MODEL_ID, messages: [{ role: 'user', content: long }], max_tokens: 4 }));
    assert.ok(e instanceof OpenAI.BadRequestError, `got ${e?.constructor?.name}: ${e}`);
    assert.equal(e.code, 'context_length_exceeded', JSON.stringify(e.error));
    assertErrorShape({ error: e.error }, 'long prompt');
    const e2 = await rejects(openai.completions.create({ model: MODEL_ID, prompt: long, max_tokens: 4 }));
    assert.equal(e2.status, 400);
    assert.equal(e2.code, 'context_length_exceeded', JSON.stringify(e2.error));
    // Streaming requests are refused the same way, before any event.
    const r = await rawRequest(server, 'POST', CHAT, {
      body: { model: MODEL_ID, messages: [{ role: 'user', content: long }], max_tokens: 4, stream: true },
    });
    assert.equal(r.status, 400, r.text.slice(0, 300));
    assert.equal(assertErrorShape(r.json, 'long prompt stream').code, 'context_length_exceeded');
  });

  test('max_tokens 100000 is 400 context_length_exceeded', T, async () => {
    const e = await rejects(openai.chat.completions.create({ model: MODEL_ID, messages: MSGS, max_tokens: 100000 }));
    assert.equal(e.status, 400);
    assert.equal(e.code, 'context_length_exceeded', JSON.stringify(e.error));
  });

  test('the server survived all of it', T, async () => {
    const h = await rawRequest(server, 'GET', '/health');
    assert.equal(h.status, 200);
    const r = await openai.chat.completions.create({ model: MODEL_ID, messages: MSGS, max_tokens: 8, temperature: 0 });
    assert.ok(r.choices[0].message.content.length > 0);
    assert.equal(server.exited(), null);
  });
});
