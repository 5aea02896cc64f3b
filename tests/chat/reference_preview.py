#!/usr/bin/python3
"""Renders every shared chat template x every conversation in tests/chat/conversations with
jinja2 alone (through reference_render.py) and prints which renders fail and why: a quick look
at the reference side of templates_test.cpp without building anything.

    /usr/bin/python3 tests/chat/reference_preview.py [SHARED_DIR] [--show TEMPLATE CONV GEN]

The variables are built as ChatTemplate::variables() builds them, approximately: tool-call
arguments given as a JSON string are parsed, and content parts are joined with "\\n" unless the
template looks at message content as a list (a rough pattern match standing in for
Template::inspects_field). templates_test.cpp uses the real variables().
"""

import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def templates(shared):
    """[(name, source)] in the order templates_test.cpp enumerates them."""
    root = os.path.join(shared, "models", "templates")
    out = []
    for f in sorted(os.listdir(root)):
        if f.endswith(".jinja"):
            out.append((f, open(os.path.join(root, f), encoding="utf-8").read()))
    mrs = os.path.join(root, "mistral.rs")
    for f in sorted(os.listdir(mrs)):
        path = os.path.join(mrs, f)
        if f.endswith(".jinja"):
            out.append(("mistral.rs/" + f, open(path, encoding="utf-8").read()))
        elif f.endswith(".json"):
            value = json.load(open(path, encoding="utf-8"))["chat_template"]
            if isinstance(value, str):
                out.append(("mistral.rs/" + f, value))
            else:
                for named in value:
                    out.append(("mistral.rs/%s:%s" % (f, named["name"]), named["template"]))
    with open(os.path.join(root, "ollama", "templates.jsonl"), encoding="utf-8") as f:
        for i, line in enumerate(l for l in f if l.strip()):
            for name, src in json.loads(line).items():
                out.append(("ollama/%02d-%s" % (i + 1, name), src))
    return out


def takes_parts(src):
    return bool(re.search(r"for \w+ in [\w.\[\]'\"]*content", src) or
                re.search(r"content['\"]?\]? is (not )?(string|iterable|mapping|sequence)", src))


def normalize(messages, parts):
    out = []
    for m in messages:
        m = dict(m)
        c = m.get("content")
        if isinstance(c, list) and not parts:
            m["content"] = "\n".join(p["text"] for p in c if p.get("type") == "text")
        if "tool_calls" in m:
            calls = []
            for tc in m["tool_calls"]:
                tc = json.loads(json.dumps(tc))
                args = tc.get("function", {}).get("arguments")
                if isinstance(args, str):
                    tc["function"]["arguments"] = json.loads(args)
                calls.append(tc)
            m["tool_calls"] = calls
        out.append(m)
    return out


def main(argv):
    shared = argv[1] if len(argv) > 1 and not argv[1].startswith("--") else \
        os.path.join(HERE, "..", "..", "..", "shared")
    show = argv[argv.index("--show") + 1:] if "--show" in argv else None
    convdir = os.path.join(HERE, "conversations")
    convs = [(f[:-5], json.load(open(os.path.join(convdir, f), encoding="utf-8")))
             for f in sorted(os.listdir(convdir)) if f.endswith(".json")]
    tmpls = templates(shared)
    jobs, keys = [], []
    for tname, src in tmpls:
        parts = takes_parts(src)
        for cname, conv in convs:
            for gen in (True, False):
                v = {"messages": normalize(conv["messages"], parts),
                     "tools": conv.get("tools"), "add_generation_prompt": gen,
                     "bos_token": "<s>", "eos_token": "</s>", "documents": None}
                v.update(conv.get("extra", {}))
                jobs.append({"template": src, "vars": v})
                keys.append((tname, cname, gen))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(jobs, f)
    res = json.loads(subprocess.run(["/usr/bin/python3", os.path.join(HERE, "reference_render.py"),
                                     f.name], check=True, capture_output=True).stdout)
    os.unlink(f.name)
    if show:
        for (t, c, g), r in zip(keys, res):
            if t == show[0] and c == show[1] and str(g).lower() == show[2].lower():
                print(r.get("ok", r.get("error")))
        return 0
    errors = {}
    for (t, c, g), r in zip(keys, res):
        if "error" in r:
            errors.setdefault((t, r["error"]), []).append("%s/%s" % (c, "gen" if g else "nogen"))
    print("%d templates x %d conversations x 2 = %d renders, %d errors" %
          (len(tmpls), len(convs), len(res), sum(len(v) for v in errors.values())))
    for (t, e), where in sorted(errors.items()):
        print("%-55s %3d  %s\n      %s" % (t, len(where), e[:150], " ".join(where)))
    per_conv = {}
    for (t, c, g), r in zip(keys, res):
        per_conv.setdefault(c, [0, 0])[0 if "ok" in r else 1] += 1
    for c, (ok, bad) in sorted(per_conv.items()):
        print("%-32s ok %4d  error %4d" % (c, ok, bad))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
