"""The real program of a conformance run (``python -m cowlab.conformance.worker``).

Reads a plan on stdin: {"pages", "shared", "align", "thp_sizes", "steps": [{"process", "op", "args"}]}
(``align``: pages the case's range is aligned to; ``thp_sizes``: the case's
mTHP sizes, set on the machine by the runner, here only asking the snapshots
for each page's folio boundaries)
(or, with ``--serve``, one plan per line, each run in a fork()ed process);
it coordinates the scenario's processes, each a forked process serving
commands on a socket (the first one forked at the start, a ``fork`` step
forking from it).  After every step it prints one JSON line with what the
step returned -- or how the kernel refused it (``errno``), killed its process
(``killed``), or that its process had died before (``not_run``) -- and what
every live process's page table and pages look like (pagemap, kpagecount,
kpageflags)."""
from __future__ import annotations

import json
import os
import sys
import traceback

from .probe import PAGE as PAGE_SIZE, Memory, Unsupported, compound_pages, die_with_parent, kpages, ksm_run_until, \
    pagemap


def _failure(e: Exception) -> dict:
    """A failed operation's line: ``errno`` when the kernel refused a call
    (an OSError with an errno: EFAULT, EINVAL ...), the text always."""
    out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    if isinstance(e, OSError) and e.errno:
        out["errno"] = e.errno
    return out


def _serve(mem: Memory, chan, cpus: dict, spare: dict) -> None:
    """A process of the scenario: run the coordinator's commands from its
    socket until told to exit (or the coordinator is gone).  ``fork`` forks a
    process that serves the child's socket (``spare``: the sockets of the
    processes not forked yet); ``thread`` runs the operation in another
    thread of this process on its own CPU."""
    rf = chan.makefile("r")
    wf = chan.makefile("w")
    for line in rf:
        req = json.loads(line)
        op, args = req["op"], req["args"]
        if op == "exit":
            wf.write(json.dumps({"ok": True}) + "\n")
            wf.flush()
            os._exit(0)
        try:
            if op == "_reap":         # a process this one forked has ended: its wait status
                val = os.waitpid(args["pid"], 0)[1]
            elif op == "fork":
                mine = spare.pop(args["child"])
                pid = os.fork()
                if pid == 0:
                    try:
                        for other in spare.values():
                            other.close()
                        rf.close()
                        wf.close()
                        chan.close()
                        _serve(mem, mine, cpus, {})
                    finally:
                        os._exit(1)     # a forked process never goes back to its parent's loop
                mine.close()
                val = pid
            elif req.get("thread"):
                val = _on_cpu(cpus[req["thread"]], lambda: mem.op(op, args))
            else:
                val = mem.op(op, args)
            wf.write(json.dumps({"ok": True, "value": val}) + "\n")
        except Unsupported as e:
            wf.write(json.dumps({"ok": False, "skip": str(e), "error": str(e)}) + "\n")
        except Exception as e:  # report, keep serving
            wf.write(json.dumps(_failure(e)) + "\n")
        wf.flush()
    os._exit(0)


def _snapshot(procs, base, pages, folios: bool = False):
    """Every live process's pages: pagemap, kpagecount, kpageflags; with
    ``folios`` (a case with ``thp_sizes``) also where each page's large folio
    begins and ends (``compound``: "head", "tail" or None; ``last``)."""
    snap = {}
    for name, p in procs.items():
        if p.get("dead"):
            continue
        entries = []
        pm = pagemap(p["pid"], base, pages)
        present_pfns = [pfn for present, _, pfn, _ in pm if present]
        kp = kpages(present_pfns)
        cp = compound_pages(present_pfns) if folios else {}
        for present, swapped, pfn, excl_mapped in pm:
            e = {"present": present, "swapped": swapped}
            if present:
                count, anon, anon_excl, ksm = kp[pfn]
                e.update(pfn=pfn, count=count, anon=anon, exclusive=anon_excl, ksm=ksm)
                if folios:
                    head, tail, last = cp[pfn]
                    e.update(compound="head" if head else ("tail" if tail else None), last=last)
            entries.append(e)
        snap[name] = entries
    return snap


def stable_snapshot(procs, base, pages, tries: int = 5, folios: bool = False):
    """Read until two reads in a row agree: pagemap and kpageflags are read
    one after the other, and the kernel's own background work (khugepaged,
    deferred frees) may move a page in between."""
    prev = _snapshot(procs, base, pages, folios)
    for _ in range(tries):
        cur = _snapshot(procs, base, pages, folios)
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
    """Run one case's plan, one JSON line per step on ``stdout``.

    This process only coordinates (it maps nothing of the case): every
    process of the scenario, the first one too, is a forked process serving
    commands on a socket (``_serve``; the first maps the case's range and
    says where),
    so a process the kernel kills (SIGSEGV) is seen dying on its step while
    the others go on, as in the model.  Each process's socket is made here
    before the first process is forked; a process holds only its own once
    forked, so its death is the end of its socket.  A step's line says
    ``ok``, or the kernel's refusal (``errno``), or ``killed`` (the signal),
    or ``not_run`` (an operation of a process that had died)."""
    import signal
    import socket
    from .probe import libc
    libc.prctl(36, 1, 0, 0, 0)      # PR_SET_CHILD_SUBREAPER: the children of a first process that died are ours
    pages = plan["pages"]
    names = plan["processes"]
    first = names[0]
    ends = {n: socket.socketpair() for n in names}
    ours = {n: a for n, (a, _) in ends.items()}
    theirs = {n: b for n, (_, b) in ends.items()}
    coordinator = os.getpid()
    pid = os.fork()
    if pid == 0:
        try:
            # the first process dies with the coordinator; the processes it forks do not die with it (the
            # kernel can kill it, and they run on): they end when the coordinator's end of their socket does
            die_with_parent(coordinator)
            for a in ours.values():
                a.close()
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)                # the plan stream and the lines are the coordinator's
            os.dup2(null, 1)
            if plan.get("cpu") is not None:
                os.sched_setaffinity(0, {plan["cpu"]})     # one CPU for the whole case (and its processes)
            mem = Memory(pages, plan.get("shared", False), plan.get("align", 1))
            chan = theirs.pop(first)
            chan.sendall((json.dumps({"base": mem.base}) + "\n").encode())
            _serve(mem, chan, plan.get("thread_cpus") or {}, theirs)
        finally:
            os._exit(1)
    for b in theirs.values():
        b.close()
    procs = {first: {"pid": pid}}
    io = {n: (a.makefile("w"), a.makefile("r")) for n, a in ours.items()}
    hello = io[first][1].readline()
    if not hello:
        os.waitpid(pid, 0)
        raise RuntimeError("the first process died before it mapped the case's range")
    base = json.loads(hello)["base"]

    def reap(proc) -> int:
        """Wait for a process that ended: the first process is this one's
        child; the others are the first process's (it waits for them), or
        ours once it has died (the subreaper)."""
        p = procs[proc]
        p["dead"] = True
        if proc != first and not procs[first].get("dead"):
            r = command(first, "_reap", {"pid": p["pid"]})
            if r.get("ok"):
                return r["value"]
        return os.waitpid(p["pid"], 0)[1]

    def command(proc, op, args, thread=None) -> dict:
        cmd, res = io[proc]
        try:
            cmd.write(json.dumps({"op": op, "args": args, "thread": thread}) + "\n")
            cmd.flush()
            reply = res.readline()
        except OSError:
            reply = ""
        if not reply:               # the process died on this operation (a SIGSEGV, say)
            status = reap(proc)
            if os.WIFSIGNALED(status):
                sig = signal.Signals(os.WTERMSIG(status)).name
                return {"ok": False, "killed": sig, "error": f"process {proc} was killed by {sig}"}
            return {"ok": False, "error": f"process {proc} exited with status {os.WEXITSTATUS(status)}"}
        return json.loads(reply)

    for step in plan["steps"]:
        proc, op, args = step["process"], step["op"], step["args"]
        out = {"ok": True, "value": None}
        try:
            if proc in procs and procs[proc].get("dead"):
                out = {"ok": False, "not_run": True, "error": f"process {proc} had died: the operation was not run"}
            elif op == "ksm_merge":
                # ksmd runs until the two pages share a page frame (or gives up); the processes only wait
                a, other = args["addr"], args.get("of") or proc
                b = args.get("other_addr", a)

                def pfn_of(name, page):
                    present, _, pfn, _ = pagemap(procs[name]["pid"], base + page * PAGE_SIZE, 1)[0]
                    return pfn if present else None
                ksm_run_until(lambda: pfn_of(proc, a) is not None and pfn_of(proc, a) == pfn_of(other, b))
            elif op == "exit" and proc == first:
                out = {"ok": False, "error": "the first process cannot exit in a conformance run"}
            else:
                out = command(proc, op, args, step.get("thread"))
                if op == "fork" and out.get("ok"):
                    procs[args["child"]] = {"pid": out.pop("value")}
                    out["value"] = None
                elif op == "exit" and out.get("ok"):
                    reap(proc)
        except Unsupported as e:
            out = {"ok": False, "skip": str(e), "error": str(e)}
        except Exception as e:
            out = dict(_failure(e), trace=traceback.format_exc(limit=2))
        out["snapshot"] = stable_snapshot(procs, base, pages, folios=bool(plan.get("thp_sizes")))
        stdout.write(json.dumps(out) + "\n")
        stdout.flush()
        if not out["ok"] and not (out.get("errno") or out.get("killed") or out.get("not_run")):
            break       # the program itself failed: nothing after this step is the kernel's answer
    for name in sorted(procs, key=lambda n: n == first):        # the first process last: it waits for the others
        if not procs[name].get("dead"):
            try:
                if command(name, "exit", {}).get("ok"):
                    reap(name)
            except Exception:
                pass
    for cmd, res in io.values():
        cmd.close()
        res.close()
    for a in ours.values():
        a.close()


def serve() -> None:
    """``--serve``: one plan per line on stdin, each coordinated by this
    process (``run_plan``: the case's processes are fresh fork()s of it, so
    every case starts from a clean address space without a new interpreter),
    its lines streamed to stdout, then ``{"done": status}``."""
    for line in sys.stdin:
        if not line.strip():
            continue
        plan = json.loads(line)
        status = 0
        try:
            run_plan(plan, sys.stdout)
        except Exception as e:       # reported as a failed step; the server goes on
            sys.stdout.write(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}", "snapshot": {}}) + "\n")
            status = 1
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
