#!/usr/bin/python3
"""The reference for tokenfab's Jinja interpreter: renders templates with jinja2 in the
environment Hugging Face transformers builds in apply_chat_template.

Run with Debian's /usr/bin/python3 (python3-jinja2):

    /usr/bin/python3 tests/chat/reference_render.py JOBS.json > RESULTS.json

JOBS.json is a list of {"template": SOURCE, "vars": {NAME: VALUE, ...}}. The output is a list
of the same length: {"ok": RENDERED} or {"error": "ExceptionType: message"} per job. Every
exception of a job (a syntax error while compiling the template included) is caught and
reported for that job alone. The output is pure ASCII JSON (non-ASCII as \\u escapes), so no
locale or stdout encoding can change its bytes.

The environment, as transformers sets it up:
  - jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
  - extensions: a `{% generation %}...{% endgeneration %}` block that renders its body (the
    assistant-token tracker, inactive), and jinja2.ext.loopcontrols (break / continue)
  - the tojson filter is json.dumps(x, ensure_ascii=False, indent=None, separators=None,
    sort_keys=False), each overridable as a keyword argument
  - globals raise_exception(message) -> jinja2.exceptions.TemplateError(message), and
    strftime_now(format) -> datetime.now().strftime(format)
"""

import json
import signal
import sys
from datetime import datetime

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.sandbox

JOB_TIMEOUT_SECONDS = 20


class GenerationBlock(jinja2.ext.Extension):
    """`{% generation %}BODY{% endgeneration %}` renders BODY unchanged."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        call = self.call_method("_render_body")
        return jinja2.nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _render_body(self, caller):
        return caller()


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def _strftime_now(fmt):
    return datetime.now().strftime(fmt)


def make_environment():
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True,
        extensions=[GenerationBlock, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


class JobTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise JobTimeout("rendering took more than %d s" % JOB_TIMEOUT_SECONDS)


def render_job(env, cache, job):
    source = job["template"]
    try:
        signal.alarm(JOB_TIMEOUT_SECONDS)
        try:
            compiled = cache.get(source)
            if compiled is None:
                compiled = env.from_string(source)
                cache[source] = compiled
            return {"ok": compiled.render(**job.get("vars", {}))}
        finally:
            signal.alarm(0)
    except Exception as e:  # every failure belongs to its job alone
        return {"error": "%s: %s" % (type(e).__name__, e)}


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: reference_render.py JOBS.json\n")
        return 2
    with open(argv[1], "rb") as f:
        jobs = json.loads(f.read().decode("utf-8"))
    signal.signal(signal.SIGALRM, _on_alarm)
    env = make_environment()
    cache = {}  # template source -> compiled template (compile errors are not cached)
    results = [render_job(env, cache, job) for job in jobs]
    sys.stdout.buffer.write(json.dumps(results, ensure_ascii=True).encode("ascii"))
    sys.stdout.buffer.write(b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
