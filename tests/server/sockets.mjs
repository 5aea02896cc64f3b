// Raw TCP/HTTP pieces for the robustness tests: requests written byte by byte on a plain
// `net` socket (streams that are dropped, stalled or never finished, garbage on the wire),
// chunked-transfer decoding, and the server process's memory from /proc.
//
// Every socket goes to 127.0.0.1.

import net from 'node:net';
import fs from 'node:fs';

// Opens a TCP connection to 127.0.0.1:port; resolves to the socket once connected.
export function connect(port, { timeout = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`connect to 127.0.0.1:${port} timed out after ${timeout} ms`));
    }, timeout);
    s.once('connect', () => {
      clearTimeout(timer);
      s.removeListener('error', reject);
      resolve(s);
    });
    s.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

// The bytes of an HTTP/1.1 request. `body`: string, Buffer or object (JSON); `contentLength`
// overrides the Content-Length header (null: none).
export function requestBytes(method, route, port, body, { headers = {}, contentLength } = {}) {
  let payload = Buffer.alloc(0);
  if (body !== undefined) {
    payload = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  }
  const h = { host: `127.0.0.1:${port}`, ...headers };
  if (body !== undefined && !Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) {
    h['content-type'] = 'application/json';
  }
  const len = contentLength === undefined ? (body === undefined ? null : payload.length) : contentLength;
  if (len !== null) h['content-length'] = String(len);
  let head = `${method} ${route} HTTP/1.1\r\n`;
  for (const [k, v] of Object.entries(h)) head += `${k}: ${v}\r\n`;
  head += '\r\n';
  return Buffer.concat([Buffer.from(head, 'latin1'), payload]);
}

// One connection whose every received byte is kept. `closed` resolves (never rejects) when
// the socket is gone, with { error, hadError }; waitFor() waits for received bytes to
// satisfy a predicate.
export class RawConn {
  constructor(socket) {
    this.socket = socket;
    this.parts = [];
    this.bytes = 0;
    this.ended = false; // the peer sent FIN
    this.error = null;
    this.isClosed = false;
    this.waiters = new Set();
    socket.on('data', (d) => {
      this.parts.push(d);
      this.bytes += d.length;
      this.#wake();
    });
    socket.on('end', () => {
      this.ended = true;
      this.#wake();
    });
    socket.on('error', (e) => {
      this.error = e;
    });
    this.closed = new Promise((resolve) => {
      socket.on('close', (hadError) => {
        this.isClosed = true;
        this.#wake();
        resolve({ error: this.error, hadError });
      });
    });
  }

  static async open(port, opts) {
    return new RawConn(await connect(port, opts));
  }

  write(bytes) {
    return new Promise((resolve, reject) => {
      this.socket.write(bytes, (e) => (e ? reject(e) : resolve()));
    });
  }

  buffer() {
    if (this.parts.length > 1) this.parts = [Buffer.concat(this.parts)];
    return this.parts[0] ?? Buffer.alloc(0);
  }

  text() {
    return this.buffer().toString('latin1');
  }

  #wake() {
    for (const w of [...this.waiters]) w();
  }

  // Resolves true when pred(this) holds, false when the connection closed first; rejects after
  // `ms` (what: for the message).
  waitFor(pred, ms, what = 'data') {
    return new Promise((resolve, reject) => {
      let timer = null;
      const check = () => {
        let ok = false;
        try {
          ok = pred(this);
        } catch (e) {
          done();
          reject(e);
          return;
        }
        if (ok) {
          done();
          resolve(true);
        } else if (this.isClosed) {
          done();
          resolve(false);
        }
      };
      const done = () => {
        this.waiters.delete(check);
        if (timer) clearTimeout(timer);
      };
      timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${ms} ms waiting for ${what}; received ${this.bytes} bytes: ${JSON.stringify(this.text().slice(0, 300))}`));
      }, ms);
      this.waiters.add(check);
      check();
    });
  }

  // Waits until the socket is closed (by either side); rejects after `ms`.
  async waitClosed(ms, what = 'connection close') {
    let timer;
    const t = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}; received ${this.bytes} bytes`)), ms);
    });
    try {
      return await Promise.race([this.closed, t]);
    } finally {
      clearTimeout(timer);
    }
  }

  // The response head, once received: { status, headers (lowercased names), bodyStart } or null.
  head() {
    return parseHead(this.buffer());
  }

  destroy() {
    this.socket.destroy();
  }

  // Closes with a TCP reset (RST) instead of a FIN.
  reset() {
    if (typeof this.socket.resetAndDestroy === 'function') this.socket.resetAndDestroy();
    else this.socket.destroy();
  }
}

// Parses an HTTP response head from `buf`: { status, headers, bodyStart } or null if incomplete.
export function parseHead(buf) {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
  if (!m) return { status: NaN, headers: {}, bodyStart: end + 4, statusLine: lines[0] };
  const headers = {};
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return { status: Number(m[1]), headers, bodyStart: end + 4, statusLine: lines[0] };
}

// Decodes a chunked body: { body: Buffer, complete: bool (the last, zero-size chunk was seen) }.
export function dechunk(buf) {
  const out = [];
  let i = 0;
  for (;;) {
    const eol = buf.indexOf('\r\n', i);
    if (eol < 0) return { body: Buffer.concat(out), complete: false };
    const size = parseInt(buf.subarray(i, eol).toString('latin1').split(';')[0], 16);
    if (!Number.isFinite(size)) throw new Error(`bad chunk size line ${JSON.stringify(buf.subarray(i, eol).toString('latin1'))}`);
    if (size === 0) return { body: Buffer.concat(out), complete: true };
    if (eol + 2 + size + 2 > buf.length) return { body: Buffer.concat(out), complete: false };
    out.push(buf.subarray(eol + 2, eol + 2 + size));
    i = eol + 2 + size + 2;
  }
}

// The decoded body of a response received on a RawConn (chunked or Content-Length):
// { status, headers, body: string, complete }.
export function responseOf(conn) {
  const buf = conn.buffer();
  const h = parseHead(buf);
  if (!h) return null;
  const rest = buf.subarray(h.bodyStart);
  if ((h.headers['transfer-encoding'] ?? '').toLowerCase() === 'chunked') {
    const { body, complete } = dechunk(rest);
    return { ...h, body: body.toString('utf8'), complete };
  }
  const len = Number(h.headers['content-length'] ?? NaN);
  if (Number.isFinite(len)) {
    return { ...h, body: rest.subarray(0, len).toString('utf8'), complete: rest.length >= len };
  }
  return { ...h, body: rest.toString('utf8'), complete: conn.ended };
}

// The process's resident set and its peak, in KiB, from /proc/<pid>/status.
export function memoryKiB(pid) {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const get = (k) => {
    const m = new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s);
    return m ? Number(m[1]) : NaN;
  };
  return { rss: get('VmRSS'), hwm: get('VmHWM') };
}

// CPU time the process has used (user + system), in clock ticks (USER_HZ, 100 a second on
// Linux), from /proc/<pid>/stat.
export function cpuTicks(pid) {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}

// The soft limit on open files of a process (default: this one), from /proc/<pid>/limits.
export function openFileLimitOf(pid) {
  const s = fs.readFileSync(`/proc/${pid}/limits`, 'utf8');
  const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(s);
  if (!m) return Infinity;
  return m[1] === 'unlimited' ? Infinity : Number(m[1]);
}

// The soft limit on open files of this (node) process, from /proc/self/limits.
export function openFileLimit() {
  const s = fs.readFileSync('/proc/self/limits', 'utf8');
  const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(s);
  if (!m) return Infinity;
  return m[1] === 'unlimited' ? Infinity : Number(m[1]);
}

// Descriptors this process has open now.
export function openFileCount() {
  try {
    return fs.readdirSync('/proc/self/fd').length;
  } catch {
    return 0;
  }
}

// Runs `task(i)` for i in 0..n-1, at most `width` at a time; resolves to the results in order.
export async function pool(n, width, task) {
  const out = new Array(n);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      out[i] = await task(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, n) }, worker));
  return out;
}
