"""``cowlab explain``: a counterexample told as a short story.

What each thread did (its operations, in order, with the kernel path that
ran), why the design decided to reuse or copy (the counts it looked at), and
which observer saw what.  Built from the trace document (``trace.build``)."""
from __future__ import annotations

import re

from .trace import VERDICT_KINDS


def _page(state, pfn):
    return next((p for p in state["pages"] if p["pfn"] == pfn), None)


def _state_before(doc, i):
    """The state as step i began (what a hook running in step i saw)."""
    return doc["initial"] if i <= 0 else doc["steps"][i - 1]["state"]


def _decision_context(prev_state, text, decisions=(), step=None, op_of=None):
    """What the design looked at, as it was when it looked: the page's counts
    in the state the decision's first read saw (``prev_state``), and every
    value the hook read, with the step it read it in when that is an earlier
    step (a decision made of separate loads)."""
    m = re.search(r"pfn (\d+)", text)
    if not m or prev_state is None:
        return ""
    p = _page(prev_state, int(m.group(1)))
    if p is None or p.get("zero"):
        return ""
    flags = [f for f in p["flags"] if f in ("ksm", "swapcache", "lru", "locked")]
    reads = [r for d in decisions for r in d["reads"]]
    read = ""
    if reads:
        read = "; read " + ", ".join(f"{r['call']} = {r['value']}"
                                     + (f" at step {r['step']}" + (f" (in {op_of[r['step']]}.)" if op_of and
                                                                      r["step"] in op_of else "")
                                        if step is not None and r["step"] != step else "")
                                     for r in reads)
        read += " -> " + "/".join(d["answer"] for d in decisions)
    return (f" [page_count {p['refcount']}, mapcount {'/'.join(map(str, p['mapcount']))}"
            f"{'+' + str(p['entire_mapcount']) + ' PMD' if p['entire_mapcount'] else ''}"
            f", PageAnonExclusive {'yes' if all(p['exclusive']) else 'no'}"
            f"{', ' + ', '.join(flags) if flags else ''}{read}]")


DECIDING = ("wp_anon", "huge_pmd_wp", "hugetlb_wp_reuse", "copy_present_anon", "copy_huge_anon", "gup_must_unshare")


def story(doc: dict) -> str:
    out = []
    c, d = doc["case"], doc["design"]
    out.append(f"{c['id']}: {c['title']}")
    out.append(f"  source: {c['source']}")
    sets = ", ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}"
                     for k, v in (d.get("settings") or {}).items())
    out.append(f"  design: {d['name']} ({d['kernel']}): {d['summary']}" + (f"; settings {sets}" if sets else ""))
    mode = doc.get("mode", "sequential")
    ex = doc.get("explored")
    if mode == "explore":
        what = f"the shortest interleaving the explorer found to the {doc.get('kind', 'first')} COW"
        if ex and len(ex.get("found", ())) > 1:
            what += f" (it also found: {', '.join(k for k in ex['found'] if k != doc.get('kind'))})"
    elif ex:
        what = (f"sequential; every interleaving was explored ({ex['states']} states, {ex['status']}"
                f"{': ' + ex['reason'] if ex.get('reason') else ''}) and "
                + ("none shows a missed, unnecessary or wrong COW" if ex["status"] == "complete"
                   else "none found so far"))
    elif doc.get("race"):
        what = "sequential, one schedule of a race case (--schedule explore searches every interleaving)"
    else:
        what = "sequential"
    out.append(f"  schedule: {what} ({len(doc['steps'])} atomic steps)")
    out.append("")
    current = None
    n = 0
    op_of = {}                 # atomic step -> the number of the operation told with it
    for st in doc["steps"]:
        if st["label"].startswith("sync.") or st["label"] == "exited":
            continue
        key = (st["thread"], st["op"])
        if key != current:
            n += 1
            out.append(f"{n}. {st['thread']}: {st['op']}")
            current = key
        op_of[st["i"]] = n
        for eff in st["effects"]:
            if eff.split(" ")[1:2] == ["reuses"] or ": " in eff and "gets a copy" in eff:
                ds = [x for x in st.get("decisions", ()) if x["hook"] in DECIDING]
                first = min((x["from_step"] for x in ds), default=st["i"])
                ctx = _decision_context(_state_before(doc, first), eff, ds, st["i"], op_of)
                out.append(f"     {st['function']}: {eff}{ctx}")
        for ev in st["events"]:
            tag = ev["kind"].upper() if ev["kind"] in VERDICT_KINDS else "ok"
            out.append(f"     -> {tag}: {ev['text']}")
        for b in st.get("bugs", []):
            out.append(f"     -> MODEL BUG: {b}")
    out.append("")
    v = doc["verdicts"]
    if any(v.values()):
        first = doc["steps"][doc["verdict_step"]]
        out.append("Verdict: " + ", ".join(f"{k} COW x{n}" for k, n in v.items() if n) +
                   f"; first at step {first['i']} ({first['thread']}, {first['function']}).")
    else:
        out.append("Verdict: no missed, unnecessary or wrong COW on this schedule.")
    return "\n".join(out)
