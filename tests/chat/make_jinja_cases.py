#!/usr/bin/python3
"""Fills in the expectations of the Jinja language cases from jinja2 itself.

    /usr/bin/python3 tests/chat/make_jinja_cases.py tests/chat/jinja_cases_src.json \
        tests/chat/jinja_cases.json

The source is a JSON list of {"name", "template", "vars" (optional), "error" (optional)}.
"error": true states that jinja2 must reject the case (at parse or render time); without it
jinja2 must render it. A case that does otherwise stops the generator, so a typo in a case
cannot silently turn into an expectation.

Each case is rendered by reference_render.py (the environment of HF apply_chat_template) and
written out with "expect": RENDERED, or "error": true plus "error_message" (for reading only:
the C++ test checks just that an error is raised). Object keys keep their order (the C++ side
reads the variables as ordered JSON, as Python's dicts keep insertion order). One case per
line, so diffs stay readable.
"""

import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def render_all(jobs):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as f:
        json.dump(jobs, f, ensure_ascii=False)
    try:
        out = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "reference_render.py"),
                              f.name], check=True, capture_output=True).stdout
    finally:
        os.unlink(f.name)
    return json.loads(out)


def write_list(path, items):
    with open(path, "w", encoding="utf-8") as f:
        f.write("[\n")
        f.write(",\n".join(json.dumps(c, ensure_ascii=False) for c in items))
        f.write("\n]\n")


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: make_jinja_cases.py SRC.json OUT.json\n")
        return 2
    with open(argv[1], encoding="utf-8") as f:
        src = json.load(f)
    names = set()
    for c in src:
        if c["name"] in names:
            sys.stderr.write("duplicate case name %s\n" % c["name"])
            return 1
        names.add(c["name"])
    jobs = [{"template": c["template"], "vars": c.get("vars", {})} for c in src]
    results = render_all(jobs)
    out, bad = [], 0
    for c, job, r in zip(src, jobs, results):
        case = {"name": c["name"], "template": c["template"], "vars": job["vars"]}
        if "ok" in r:
            if c.get("error"):
                sys.stderr.write("%s: meant to fail, but jinja2 renders %r\n" % (c["name"], r["ok"]))
                bad += 1
            case["expect"] = r["ok"]
        else:
            if not c.get("error"):
                sys.stderr.write("%s: meant to render, but jinja2 says %s\n" % (c["name"], r["error"]))
                bad += 1
            case["error"] = True
            case["error_message"] = r["error"]
        out.append(case)
    if bad:
        sys.stderr.write("%d case(s) do not do what they say; nothing written\n" % bad)
        return 1
    write_list(argv[2], out)
    print("%d cases (%d errors) -> %s" % (len(out), sum(1 for c in out if c.get("error")), argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
