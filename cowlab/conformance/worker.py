"""The real program of a conformance run (``python -m cowlab.conformance.worker``).

Reads a plan on stdin: {"pages", "shared", "steps": [{"process", "op", "args"}]}
(or, with ``--serve``, one plan per line, each run in a fork()ed process);
it is the scenario's first process; a ``fork`` step forks a process that
serves commands on a pipe.  After every step it prints one JSON line with what
the step returned and what every live process's page table and pages look
like (pagemap, kpagecount, kpageflags)."""
from __future__ import annotations

import json
import os
import sys
import traceback

from .probe import PAGE as PAGE_SIZE, Memory, Unsupported, die_with_parent, kpages, ksm_run_until, pagemap


def _serve(mem: Memory, cmd_r: int, res_w: int) -> None:
    """A forked process: run commands until told to exit."""
    rf = os.fdopen(cmd_r, "r")
    wf = os.fdopen(res_w, "w")
    for line in rf:
        req = json.loads(line)
        if req["op"] == "exit":
            wf.write(json.dumps({"ok": True}) + "\n")
            wf.flush()
            os._exit(0)
        try:
            val = mem.op(req["op"], req["args"])
            wf.write(json.dumps({"ok": True, "value": val}) + "\n")
        except Unsupported as e:
            wf.write(json.dumps({"ok": False, "skip": str(e), "error": str(e)}) + "\n")
        except Exception as e:  # report, keep serving
            wf.write(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}) + "\n")
        wf.flush()
    os._exit(0)


def _snapshot(procs, base, pages):
    snap = {}
    for name, p in procs.items():
        if p.get("dead"):
            continue
        entries = []
        pm = pagemap(p["pid"], base, pages)
        kp = kpages([pfn for present, _, pfn, _ in pm if present])
        for present, swapped, pfn, excl_mapped in pm:
            e = {"present": present, "swapped": swapped}
            if present:
                count, anon, anon_excl, ksm = kp[pfn]
                e.update(pfn=pfn, count=count, anon=anon, exclusive=anon_excl, ksm=ksm)
            entries.append(e)
        snap[name] = entries
    return snap


def stable_snapshot(procs, base, pages, tries: int = 5):
    """Read until two reads in a row agree: pagemap and kpageflags are read
    one after the other, and the kernel's own background work (khugepaged,
    deferred frees) may move a page in between."""
    prev = _snapshot(procs, base, pages)
    for _ in range(tries):
        cur = _snapshot(procs, base, pages)
        if cur == prev:
            return cur
        prev = cur
    return prev


def _on_cpu(cpu: int, fn):
    """Run fn in a new thread of this process pinned to ``cpu``; its result
    (or its exception) comes back here."""
    import threading
    box = {}

    def body():
        try:
            os.sched_setaffinity(threading.get_native_id(), {cpu})
            box["value"] = fn()
        except BaseException as e:      # re-raised in the caller
            box["error"] = e
    t = threading.Thread(target=body)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def run_plan(plan: dict, stdout) -> None:
    """Run one case's plan in this process, one JSON line per step on ``stdout``."""
    if plan.get("cpu") is not None:
        os.sched_setaffinity(0, {plan["cpu"]})     # one CPU for the whole case (and its children)
    pages = plan["pages"]
    mem = Memory(pages, plan.get("shared", False), plan.get("align", 1))
    first = plan["processes"][0]
    procs = {first: {"pid": os.getpid()}}
    for step in plan["steps"]:
        proc, op, args = step["process"], step["op"], step["args"]
        out = {"ok": True, "value": None}
        try:
            if op == "ksm_merge":
                # ksmd runs until the two pages share a page frame (or gives up); the processes only wait
                a, other = args["addr"], args.get("of") or proc
                b = args.get("other_addr", a)

                def pfn_of(name, page):
                    present, _, pfn, _ = pagemap(procs[name]["pid"], mem.base + page * PAGE_SIZE, 1)[0]
                    return pfn if present else None
                ksm_run_until(lambda: pfn_of(proc, a) is not None and pfn_of(proc, a) == pfn_of(other, b))
            elif "thread" in step:
                # another thread of the first process, on its own CPU (its own lru_add batch)
                out["value"] = _on_cpu(plan["thread_cpus"][step["thread"]], lambda: mem.op(op, args))
            elif proc == first:
                if op == "fork":
                    cr, cw = os.pipe()
                    rr, rw = os.pipe()
                    parent = os.getpid()
                    pid = os.fork()
                    if pid == 0:
                        try:
                            die_with_parent(parent)
                            os.close(cw)
                            os.close(rr)
                            _serve(mem, cr, rw)
                        finally:
                            os._exit(1)      # a forked process never goes on as the first one
                    os.close(cr)
                    os.close(rw)
                    procs[args["child"]] = {"pid": pid, "cmd": os.fdopen(cw, "w"), "res": os.fdopen(rr, "r")}
                elif op == "exit":
                    out = {"ok": False, "error": "the first process cannot exit in a conformance run"}
                else:
                    out["value"] = mem.op(op, args)
            else:
                p = procs[proc]
                p["cmd"].write(json.dumps({"op": op, "args": args}) + "\n")
                p["cmd"].flush()
                reply = p["res"].readline()
                if not reply:               # the process died on this operation (a SIGSEGV, say)
                    _, status = os.waitpid(p["pid"], 0)
                    p["dead"] = True
                    import signal
                    how = (f"killed by {signal.Signals(os.WTERMSIG(status)).name}" if os.WIFSIGNALED(status)
                           else f"exited with status {os.WEXITSTATUS(status)}")
                    raise OSError(0, f"process {proc} was {how}")
                out = json.loads(reply)
                if op == "exit":
                    os.waitpid(p["pid"], 0)
                    p["dead"] = True
        except Unsupported as e:
            out = {"ok": False, "skip": str(e), "error": str(e)}
        except Exception as e:
            out = {"ok": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc(limit=2)}
        out["snapshot"] = stable_snapshot(procs, mem.base, pages)
        stdout.write(json.dumps(out) + "\n")
        stdout.flush()
        if not out["ok"]:
            break
    for name, p in procs.items():
        if name != first and not p.get("dead"):
            p["cmd"].write(json.dumps({"op": "exit", "args": {}}) + "\n")
            p["cmd"].flush()
            os.waitpid(p["pid"], 0)


def serve() -> None:
    """``--serve``: one plan per line on stdin; each runs in a fresh fork()ed
    process (so every case starts from a clean address space without a new
    interpreter), its lines streamed to stdout, then ``{"done": status}``."""
    for line in sys.stdin:
        if not line.strip():
            continue
        plan = json.loads(line)
        r, w = os.pipe()
        server = os.getpid()
        pid = os.fork()
        if pid == 0:
            die_with_parent(server)
            os.close(r)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)     # the command stream is the server's
            with os.fdopen(w, "w") as out:
                try:
                    run_plan(plan, out)
                except BaseException as e:       # reported as a failed step; the server goes on
                    out.write(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}", "snapshot": {}}) + "\n")
                    out.flush()
            os._exit(0)
        os.close(w)
        last = "\n"
        with os.fdopen(r) as res:
            for out_line in res:
                sys.stdout.write(out_line)
                sys.stdout.flush()
                last = out_line[-1:]
        _, status = os.waitpid(pid, 0)
        if last != "\n":
            sys.stdout.write("\n")          # a plan process killed mid-line: "done" stays a line of its own
        sys.stdout.write(json.dumps({"done": status}) + "\n")
        sys.stdout.flush()


def main() -> int:
    if os.environ.get("COWLAB_PARENT_PID"):
        die_with_parent(int(os.environ["COWLAB_PARENT_PID"]))
    if "--serve" in sys.argv[1:]:
        serve()
    else:
        run_plan(json.load(sys.stdin), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
