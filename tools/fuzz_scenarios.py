#!/usr/bin/env python3
"""Fuzz scenario files: mutate valid TOML scenarios and run ``cowlab run``,
``cowlab explore`` (small limits) and ``cowlab explain`` on each, in process
(click's CliRunner).  A run fails when an exception other than a clean exit
escapes (a traceback) or when it exceeds its time bound (a hang).

Seeds are the valid files in ``examples/`` and ``tests/fuzz_seeds/``.  Each
mutated file gets one to three mutations: steps deleted, duplicated,
reordered or moved; a [[thread]] table added or duplicated; values of the
wrong type; huge or negative numbers; unknown or misspelled names (threads,
processes, pins, pipes, buffers, operations, arguments); control characters;
very long strings; and at the text level syntax errors, truncation, invalid
UTF-8 and deep nesting.

    python tools/fuzz_scenarios.py --count 5000 --seed 1 [--format json] [--out DIR]
    python tools/fuzz_scenarios.py --root /tmp/base ...   # fuzz another checkout's cowlab

Exit status 1 if any traceback or hang was found.  The first failing inputs
(``--keep``, default 20) are saved to ``--out`` with the command and the
traceback's last line.
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import os
import random
import signal
import sys
import tempfile
import time
import tomllib
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
SEED_DIRS = (HERE / "examples", HERE / "tests" / "fuzz_seeds")
DESIGNS = ("linux-5.7", "linux-5.9", "linux-5.11", "linux-5.19", "linux-6.18", "rfc-mapcount")
OPS = ("mmap", "munmap", "write", "read", "fork", "exit", "vmsplice", "pipe_read", "io_uring_register",
       "io_uring_read_fixed", "io_uring_write_fixed", "io_uring_unregister", "pin_longterm", "pin_read", "unpin",
       "get_user_pages", "put_user_pages", "mprotect", "madvise", "mremap", "pageout", "migrate", "ksm_merge",
       "lru_add_drain", "speculative_get", "speculative_put", "split_pmd", "free_swapcache", "clear_refs",
       "odirect_read", "odirect_write", "signal", "wait")
ARGS = ("addr", "pages", "other_addr", "new_addr", "prot", "advice", "pipe", "buf", "pin", "io", "who", "of",
        "child", "event", "fast", "write", "all", "thp", "hugetlb", "shared_ok", "value")
HUGE = (-1, -2 ** 63, 2 ** 31, 2 ** 63 - 1, 2 ** 63, 2 ** 64 + 1, 10 ** 30, 10 ** 400)
CONTROL = "\x00\x01\x07\x08\x1b[31m\x7f\x85\u2028\u202e"
MARKUP = ("[/]", "[bold]", "[/x]", ":100:", "[link=x]", "\\", "{", "<script>")     # rich markup, emoji codes, HTML


class Hang(BaseException):
    """Raised by the alarm when one command exceeds its time bound."""


# ----------------------------------------------------------------------------- TOML out
def _key(k) -> str:
    k = str(k)
    if k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k):
        return k
    return json.dumps(k, ensure_ascii=False)


def _val(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return {float("inf"): "inf", float("-inf"): "-inf"}.get(v, "nan" if math.isnan(v) else repr(v))
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_val(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_val(x)}" for k, x in v.items()) + " }"
    return json.dumps(str(v))


def dump(data: dict) -> str:
    """A scenario dict as TOML: scalars first, then [[step]] and [[thread]] tables."""
    out = []
    tables = {k: v for k, v in data.items() if k in ("step", "thread") and isinstance(v, list)
              and all(isinstance(x, dict) for x in v)}
    for k, v in data.items():
        if k not in tables:
            out.append(f"{_key(k)} = {_val(v)}")
    for name, rows in tables.items():
        for row in rows:
            out.append(f"\n[[{name}]]")
            for k, v in row.items():
                out.append(f"{_key(k)} = {_val(v)}")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- mutations
def _names(data) -> list[str]:
    names = set()
    for st in data.get("step", []):
        for k in ("thread", "process", "child", "pin", "pipe", "buf", "of", "who", "event"):
            if isinstance(st.get(k), str):
                names.add(st[k])
    return sorted(names) or ["parent"]


def _misspell(rng, s: str) -> str:
    if not s:
        return "x"
    i = rng.randrange(len(s))
    return rng.choice([s[:i] + s[i + 1:], s[:i] + s[i] + s[i:], s[:i] + rng.choice("abcxyz._") + s[i + 1:],
                       s + str(rng.randrange(10)), s.upper()])


def _wrong(rng, v):
    choices = [0, 1, -1, "x", "", True, 1.5, [], [1, 2], {"a": 1}, "0", "rw", "parent"]
    return rng.choice([c for c in choices if type(c) is not type(v)] or choices)


def _long(rng) -> str:
    return "n" * rng.choice([65, 200, 5000, 400_000])


def _ctrl(rng, s) -> str:
    s = s if isinstance(s, str) else "x"
    i = rng.randrange(len(s) + 1)
    return s[:i] + (rng.choice(CONTROL) if rng.random() < 0.6 else rng.choice(MARKUP)) + s[i:]


def _rand_op(rng, names) -> dict:
    op = {"op": rng.choice(OPS)}
    for k in rng.sample(ARGS, rng.randrange(4)):
        op[k] = rng.choice([rng.randrange(4), rng.choice(names), True, "r", "dontneed"])
    if rng.random() < 0.6:
        op["addr"] = rng.randrange(3)
    return op


def _step_table(data, rng):
    steps = data.get("step")
    if isinstance(steps, list) and steps and all(isinstance(s, dict) for s in steps):
        return steps
    return None


def m_delete_step(rng, data):
    s = _step_table(data, rng)
    if s:
        del s[rng.randrange(len(s))]


def m_duplicate_step(rng, data):
    s = _step_table(data, rng)
    if s:
        i = rng.randrange(len(s))
        for _ in range(rng.choice([1, 1, 2, 5])):
            s.insert(rng.randrange(len(s) + 1), dict(s[i]))


def m_reorder(rng, data):
    s = _step_table(data, rng)
    if s and len(s) > 1:
        if rng.random() < 0.3:
            rng.shuffle(s)
        else:
            i, j = rng.randrange(len(s)), rng.randrange(len(s))
            s[i], s[j] = s[j], s[i]


def m_change_op(rng, data):
    s = _step_table(data, rng)
    if s:
        st = rng.choice(s)
        st["op"] = rng.choice([rng.choice(OPS), _misspell(rng, str(st.get("op", "write")))])


def m_wrong_type(rng, data):
    s = _step_table(data, rng)
    if s and rng.random() < 0.8:
        st = rng.choice(s)
        k = rng.choice(list(st))
        st[k] = _wrong(rng, st[k])
    else:
        k = rng.choice(["id", "title", "source", "pages", "tags", "step", "thread"])
        data[k] = _wrong(rng, data.get(k))


def m_huge(rng, data):
    s = _step_table(data, rng)
    if s and rng.random() < 0.85:
        st = rng.choice(s)
        st[rng.choice(["addr", "pages", "new_addr", "other_addr", "value", "addr"])] = rng.choice(HUGE)
    else:
        data["pages"] = rng.choice(HUGE + (0, 65))


def m_unknown_name(rng, data):
    s = _step_table(data, rng)
    names = _names(data)
    if not s:
        return
    st = rng.choice(s)
    k = rng.choice(["thread", "thread", "process", "child", "pin", "pipe", "buf", "of", "who", "event", "op",
                    rng.choice(ARGS), "bogus"])
    old = st.get(k)
    st[k] = _misspell(rng, old) if isinstance(old, str) and rng.random() < 0.7 else rng.choice(
        names + ["ghost", "nobody", "__parallel__", "a:b", "p q"])


def m_control(rng, data):
    s = _step_table(data, rng)
    if s and rng.random() < 0.7:
        st = rng.choice(s)
        k = rng.choice([k for k, v in st.items() if isinstance(v, str)] or ["thread"])
        st[k] = _ctrl(rng, st.get(k))
    else:
        k = rng.choice(["title", "source", "id"])
        data[k] = _ctrl(rng, data.get(k))


def m_long(rng, data):
    s = _step_table(data, rng)
    if s and rng.random() < 0.7:
        st = rng.choice(s)
        k = rng.choice([k for k, v in st.items() if isinstance(v, str)] or ["thread"])
        st[k] = _long(rng)
    else:
        data[rng.choice(["title", "source", "id"])] = _long(rng)


def m_add_thread(rng, data):
    names = _names(data)
    th = data.setdefault("thread", [])
    if not isinstance(th, list):
        return
    if th and rng.random() < 0.3:
        th.append(dict(rng.choice(th)))            # a duplicate name
        return
    th.append({"name": rng.choice([f"t{rng.randrange(5)}", rng.choice(names)]),
               "process": rng.choice(names + ["ghost"]),
               "ops": [_rand_op(rng, names) for _ in range(rng.randrange(1, 4))]})


def m_mutate_thread(rng, data):
    th = data.get("thread")
    if not (isinstance(th, list) and th and isinstance(th[0], dict)):
        return m_add_thread(rng, data)
    t = rng.choice(th)
    r = rng.random()
    if r < 0.3:
        t["ops"] = rng.choice([3, "write", [3], [{"op": 3}], [{"addr": 0}], [{"op": "mremap", "addr": 0}]])
    elif r < 0.6 and isinstance(t.get("ops"), list):
        t["ops"].append(_rand_op(rng, _names(data)))
    else:
        t[rng.choice(["name", "process", "bogus"])] = rng.choice(["ghost", "parent", "child", 5, ""])


def m_add_arg(rng, data):
    s = _step_table(data, rng)
    if s:
        st = rng.choice(s)
        st[rng.choice(ARGS)] = rng.choice([0, 1, 2, "p", "b", True, "none", "parent"])


def m_delete_arg(rng, data):
    s = _step_table(data, rng)
    if s:
        st = rng.choice(s)
        if st:
            del st[rng.choice(list(st))]


STRUCT = [m_delete_step, m_duplicate_step, m_reorder, m_change_op, m_wrong_type, m_huge, m_unknown_name,
          m_control, m_long, m_add_thread, m_mutate_thread, m_add_arg, m_delete_arg]


def t_truncate(rng, b: bytes) -> bytes:
    return b[:rng.randrange(len(b) + 1)]


def t_syntax(rng, b: bytes) -> bytes:
    i = rng.randrange(len(b) + 1)
    r = rng.random()
    if r < 0.4:
        return b[:i] + rng.choice([b"[", b"]", b'"', b"=", b"{", b"\n[[step]\n", b"'''", b"\\", b"=="]) + b[i:]
    if r < 0.7:
        return b[:i] + b[i + rng.randrange(1, 20):]
    lines = b.split(b"\n")
    j = rng.randrange(len(lines))
    lines.insert(rng.randrange(len(lines) + 1), lines[j])        # a duplicated key or table line
    return b"\n".join(lines)


def t_bad_bytes(rng, b: bytes) -> bytes:
    i = rng.randrange(len(b) + 1)
    return b[:i] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\r", b"\x1b", b"\xef\xbb\xbf"]) + b[i:]


def t_nesting(rng, b: bytes) -> bytes:
    n = rng.choice([50, 500, 5000, 100_000])
    key = rng.choice([b"x", b"tags", b"value"])
    if rng.random() < 0.5:
        return b + b"\n" + key + b" = " + b"[" * n + b"]" * n + b"\n"
    return b"\n" + key + b" = " + b"{a = " * n + b"1" + b"}" * n + b"\n" + b


TEXT = [t_truncate, t_syntax, t_bad_bytes, t_nesting]


# plausible mutations: the file most likely stays valid, the scenario changes
ALLOWED: dict = {}          # op -> its argument names (from the fuzzed cowlab's registry)


def _plausible_value(rng, data, k):
    pages = data.get("pages") if isinstance(data.get("pages"), int) and 0 < data.get("pages") < 65 else 1
    if k in ("addr", "new_addr", "other_addr"):
        return rng.randrange(pages)
    if k == "pages":
        return rng.choice([1, 1, 2])
    if k == "prot":
        return rng.choice(["r", "rw", "none"])
    if k == "advice":
        return rng.choice(["dontneed", "dontfork", "dofork", "hugepage", "nohugepage", "mergeable"])
    if k in ("pipe", "buf", "pin", "io", "who"):
        return rng.choice(["p", "b", "ro", "g", "d", "walker", "gup_test", "buf"])
    if k == "of":
        return rng.choice(_procs(data))
    if k == "child":
        return rng.choice(["child", "child2", "grandchild"])
    if k == "event":
        return rng.choice(["ready", "e1"])
    if k == "value":
        return rng.choice(["same", "other", 5, 1, "[/]", "[bold]x"])
    return rng.random() < 0.5


def _procs(data) -> list[str]:
    out = []
    for st in data.get("step", []) if isinstance(data.get("step"), list) else []:
        if isinstance(st, dict):
            for k in ("process", "child"):
                if isinstance(st.get(k), str) and st[k] not in out:
                    out.append(st[k])
            if isinstance(st.get("thread"), str) and "process" not in st and st["thread"] not in out:
                out.append(st["thread"])
    return out or ["parent"]


def _plausible_op(rng, data) -> dict:
    op = rng.choice(sorted(ALLOWED)) if ALLOWED else rng.choice(OPS)
    d = {"op": op}
    for k in ALLOWED.get(op, ()):
        if k in ("addr", "pipe", "child", "event", "advice", "prot", "new_addr", "of") or rng.random() < 0.3:
            d[k] = _plausible_value(rng, data, k)
    return d


def p_new_step(rng, data):
    s = _step_table(data, rng)
    if s is None:
        return
    st = {"thread": rng.choice([x["thread"] for x in s if isinstance(x.get("thread"), str)] or ["parent"])}
    st.update(_plausible_op(rng, data))
    s.insert(rng.randrange(len(s) + 1), st)


def p_tweak_arg(rng, data):
    s = _step_table(data, rng)
    if s:
        st = rng.choice(s)
        args = ALLOWED.get(st.get("op"), ())
        if args:
            k = rng.choice(args)
            st[k] = _plausible_value(rng, data, k)


def p_retarget(rng, data):
    s = _step_table(data, rng)
    if s:
        st = rng.choice(s)
        st["thread"] = rng.choice(_procs(data))
        st.pop("process", None)


def p_concurrent(rng, data):
    th = data.setdefault("thread", [])
    if isinstance(th, list):
        th.append({"name": f"t{len(th)}", "process": rng.choice(_procs(data)),
                   "ops": [_plausible_op(rng, data) for _ in range(rng.randrange(1, 3))]})


PLAUSIBLE = [m_delete_step, m_duplicate_step, m_reorder, p_new_step, p_new_step, p_tweak_arg, p_tweak_arg,
             p_retarget, p_concurrent]


def mutate(rng: random.Random, seed_text: str) -> bytes:
    """One to three plausible mutations, then (most often) one that makes
    nonsense: a structural one or, a quarter of the time, one on the text."""
    data = tomllib.loads(seed_text)
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        rng.choice(PLAUSIBLE)(rng, data)
    r = rng.random()
    if r < 0.55:
        rng.choice(STRUCT)(rng, data)
    out = dump(data).encode("utf-8", "surrogatepass")
    if 0.55 <= r < 0.75:
        out = rng.choice(TEXT)(rng, out)
    return out


# ----------------------------------------------------------------------------- running
def _alarm(signum, frame):
    raise Hang()


def run_one(main, path: str, design: str, timeout: float) -> list[tuple]:
    """[(command, kind, detail)] for run, explore and explain of one file:
    kind is ok, error (a clean exit with one line naming the file and line),
    unclear (a clean exit with any other message), traceback or hang."""
    from click.testing import CliRunner
    cmds = [("run", ["run", path, "-d", design]),
            ("explore", ["explore", path, "-d", design, "--max-states", "300", "--max-seconds", "2",
                         "--max-depth", "300", "-q"]),
            ("explain", ["explain", path, "-d", design])]
    res = []
    for name, argv in cmds:
        runner = CliRunner()
        signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            r = runner.invoke(main, argv, catch_exceptions=True)
        except Hang:
            res.append((name, "hang", f"over {timeout:g}s"))
            continue
        except RecursionError as e:        # escaped even CliRunner
            res.append((name, "traceback", f"RecursionError: {e}"))
            continue
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            tb = traceback.extract_tb(r.exc_info[2])
            where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno} {tb[-1].name}" if tb else "?"
            res.append((name, "traceback", f"{type(r.exception).__name__}: {str(r.exception)[:200]} [{where}]"))
        elif r.exit_code in (0, 1, 3):       # nothing found, a COW found, inconclusive (cowlab.exitcodes)
            res.append((name, "ok", "model bug" if "model bug" in r.output else ""))
        else:
            msg = (r.stderr if hasattr(r, "stderr") else r.output).strip()
            clear = "\n" not in msg and msg.startswith(f"cowlab: error: {path}:")
            res.append((name, "error" if clear else "unclear", msg[:300]))
    return res


def seeds() -> list[tuple[str, str]]:
    out = []
    for d in SEED_DIRS:
        for p in sorted(d.glob("*.toml")):
            out.append((p.name, p.read_text()))
    return out


def fuzz(count: int, seed: int, timeout: float = 10.0, out_dir: str | None = None, keep: int = 20,
         root: str | None = None, progress=None) -> dict:
    if root:
        sys.path.insert(0, str(Path(root).resolve()))
    else:
        sys.path.insert(0, str(HERE))
    os.environ.setdefault("COLUMNS", "160")
    from cowlab.cli import main
    from cowlab.kernel import registry  # noqa: F401
    from cowlab.kernel.paths import OPS as ops
    ALLOWED.clear()
    ALLOWED.update({k: tuple(v[2]) for k, v in ops.items()})
    rng = random.Random(seed)
    pool = seeds()
    if not pool:
        raise SystemExit(f"fuzz_scenarios: no seed files in {', '.join(map(str, SEED_DIRS))}")
    counts = collections.Counter()
    kinds = collections.Counter()
    distinct = collections.Counter()
    failures, unclear = [], []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cowlab-fuzz-") as tmp:
        for i in range(count):
            sname, stext = rng.choice(pool)
            data = mutate(rng, stext)
            design = rng.choice(DESIGNS)
            path = os.path.join(tmp, f"f{i}.toml")
            with open(path, "wb") as f:
                f.write(data)
            results = run_one(main, path, design, timeout)
            counts["files"] += 1
            bad = [r for r in results if r[1] in ("traceback", "hang")]
            for cmd, kind, detail in results:
                kinds[f"{cmd}:{kind}"] += 1
            if all(k == "ok" for _, k, _ in results):
                counts["ran"] += 1
            if bad:
                counts["failing_files"] += 1
            counts["model_bug_files"] += any(r[2] == "model bug" for r in results)
            counts["unclear_errors"] += sum(1 for r in results if r[1] == "unclear")
            if any(r[1] == "unclear" for r in results) and len(unclear) < keep:
                unclear.append({"index": i, "design": design, "message": next(r[2] for r in results
                                                                              if r[1] == "unclear")[:200]})
            for cmd, kind, detail in bad:
                counts[kind + "s"] += 1
                distinct[f"{kind}: {detail.split(' [')[-1] if kind == 'traceback' else cmd}"] += 1
                if len(failures) < keep:
                    entry = {"index": i, "seed_file": sname, "design": design, "command": cmd, "kind": kind,
                             "detail": detail}
                    if out_dir:
                        os.makedirs(out_dir, exist_ok=True)
                        fn = os.path.join(out_dir, f"fail-{i}-{cmd}.toml")
                        with open(fn, "wb") as f:
                            f.write(data)
                        entry["file"] = fn
                    failures.append(entry)
            if progress:
                progress(i + 1, counts)
    return {"files": counts["files"], "ran_clean": counts["ran"], "tracebacks": counts["tracebacks"],
            "hangs": counts["hangs"], "failing_files": counts["failing_files"],
            "unclear_errors": counts["unclear_errors"], "unclear": unclear,
            "model_bug_files": counts["model_bug_files"],
            "seconds": round(time.monotonic() - t0, 1), "seed": seed, "timeout": timeout,
            "by_command": dict(sorted(kinds.items())), "distinct": dict(distinct.most_common()),
            "failures": failures}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per command before it counts as a hang")
    ap.add_argument("--format", choices=["text", "json"], default="text")
    ap.add_argument("--out", default="fuzz-failures", help="folder for the first failing inputs")
    ap.add_argument("--keep", type=int, default=20, help="how many failing inputs to save")
    ap.add_argument("--root", help="fuzz the cowlab package of this checkout (default: this repository)")
    a = ap.parse_args(argv)

    def prog(n, c):
        if sys.stderr.isatty() and n % 50 == 0:
            print(f"\r{n}/{a.count} files, {c['tracebacks']} tracebacks, {c['hangs']} hangs", end="",
                  file=sys.stderr, flush=True)
    try:
        rep = fuzz(a.count, a.seed, a.timeout, a.out, a.keep, a.root, prog)
    except KeyboardInterrupt:
        print("fuzz_scenarios: interrupted", file=sys.stderr)
        return 130
    if sys.stderr.isatty():
        print(file=sys.stderr)
    if a.format == "json":
        print(json.dumps(rep, indent=2))
    else:
        print(f"{rep['files']} files ({rep['ran_clean']} ran cleanly under all three commands), "
              f"{rep['tracebacks']} tracebacks, {rep['hangs']} hangs, {rep['failing_files']} failing files, "
              f"{rep['unclear_errors']} errors not naming the file and line, "
              f"{rep['model_bug_files']} files reporting a model bug, "
              f"{rep['seconds']}s (seed {rep['seed']})")
        for k, v in rep["distinct"].items():
            print(f"  {v:5d}  {k}")
        for f in rep["failures"][:10]:
            print(f"  #{f['index']} {f['command']} ({f['design']}, from {f['seed_file']}): {f['kind']}: "
                  f"{f['detail'][:160]}" + (f"  -> {f['file']}" if "file" in f else ""))
        for u in rep["unclear"][:5]:
            print(f"  #{u['index']} unclear error: {u['message'][:160]}")
    return 1 if rep["tracebacks"] or rep["hangs"] else 0


if __name__ == "__main__":
    sys.exit(main())
