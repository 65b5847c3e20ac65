"""Running one unit of work: a case under a design with settings, on the
default sequential schedule (each operation runs to completion; the first
thread in declaration order that can run goes next).

``WorkUnit`` is self-contained and picklable, so sweeps can be spread over
processes or a cluster without touching the model."""
from __future__ import annotations

from dataclasses import dataclass, field

from .kernel.effects import Error
from .model import CowModel
from .schedule import sequential
from .verdict import MISSED, UNNECESSARY, WRONG


@dataclass(frozen=True)
class WorkUnit:
    case: str
    design: str
    settings: tuple = ()
    seed: int = 0
    max_steps: int = 20000


@dataclass
class Result:
    case: str
    design: str
    outcomes: dict
    status: str                 # complete | inconclusive
    reason: str = ""
    steps: int = 0
    copies: dict = field(default_factory=dict)
    events: list = field(default_factory=list)     # (step index, kind, text) of counted incidents
    bugs: list = field(default_factory=list)
    trace: list = field(default_factory=list)
    explored: dict = field(default_factory=dict)   # states / transitions / seconds of an exhaustive search
    #: (step index, call, errno) of every system call that failed (the ``Error`` effects), as a selftest reads
    #: its return values: cow.c skips a collapse test when madvise(MADV_COLLAPSE) fails
    errors: list = field(default_factory=list)

    def as_json(self, with_trace=False) -> dict:
        d = {"case": self.case, "design": self.design, "outcomes": self.outcomes, "status": self.status,
             "steps": self.steps, "copies": self.copies,
             "witnesses": [{"step": i, "kind": k, "text": t} for i, k, t in self.events],
             "model_bugs": self.bugs}
        if self.reason:
            d["reason"] = self.reason
        if self.errors:
            d["errors"] = [{"step": i, "call": c, "errno": n} for i, c, n in self.errors]
        if self.explored:
            d["mode"] = "explore"
            d.update(self.explored)
        else:
            d["mode"] = "sequential"
        if with_trace:
            d["trace"] = self.trace
        return d


def run_sequential(model: CowModel, max_steps: int = 20000) -> Result:
    counts = {MISSED: 0, UNNECESSARY: 0, WRONG: 0}
    copies = {"correct": 0, "unnecessary": 0, "wrong": 0}
    seen = set()
    events, bugs, trace, errors = [], [], [], []
    status, reason = "complete", ""
    run = sequential(model, max_steps)
    for i, tr in enumerate(run):
        trace.append({"step": i, "thread": model.thread_name(tr.tid), "op": tr.op, "label": tr.label,
                      "function": tr.func, "doc": tr.doc, "events": [e.kind + ": " + e.text for e in tr.events],
                      "bugs": list(tr.bugs)})
        for e in tr.events:
            if e.what == "copy":
                copies[e.kind] = copies.get(e.kind, 0) + 1
            if e.kind in counts and (e.key is None or e.key not in seen):
                if e.key is not None:
                    seen.add(e.key)
                counts[e.kind] += 1
                events.append((i, e.kind, e.text))
        errors.extend((i, e.call, e.errno) for e in tr.effects if type(e) is Error)
        bugs.extend(f"step {i}: {b}" for b in tr.bugs)
        if tr.bugs and tr.state is run.before:
            status, reason = "inconclusive", "model bug"
            break
    if run.end == "stuck":
        s = run.state
        waiting = ", ".join(f"{model.thread_name(t)} at "
                            f"{model.ops[t][s.threads[t].pc] if s.threads[t].pc < len(model.ops[t]) else 'end'}"
                            for t in run.unfinished())
        if model.case.expect_stuck:
            reason = f"stuck as the case expects: no thread can run ({waiting})"
        else:
            status, reason = "inconclusive", f"deadlock: no thread can run ({waiting})"
    elif run.end == "limit":
        status, reason = "inconclusive", f"step limit {max_steps} reached"
    return Result(model.case.id, model.design.name, counts, status, reason, len(trace), copies, events, bugs, trace,
                  errors=errors)


def run_unit(unit: WorkUnit) -> Result:
    from . import catalog, designs
    case = catalog.get(unit.case)
    design = designs.load(unit.design, dict(unit.settings))
    return run_sequential(CowModel(case, design), unit.max_steps)
