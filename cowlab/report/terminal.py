"""The trace on a terminal (rich): one line per atomic step with the thread,
the kernel function, what the step changed (ptes, refcount / mapcount / pins
/ flags, swap slots, references) and what an observer read or the oracle said."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text


def _pte(e):
    if e["kind"] == "present":
        return f"pfn{e['pfn']}{'/' + str(e['idx']) if e['idx'] else ''} {'RW' if e['write'] else 'RO'}"
    if e["kind"] == "swap":
        return f"swap{e['slot']}{' excl' if e['excl'] else ''}"
    return f"migr pfn{e['pfn']}"


def changes(prev: dict, cur: dict) -> list[str]:
    out = []
    for p0, p1 in zip(prev["processes"], cur["processes"]):
        a = {e["addr"]: _pte(e) for e in p0["ptes"]} | {("pmd", e["addr"]): f"PMD pfn{e['pfn']}" for e in p0["pmds"]}
        b = {e["addr"]: _pte(e) for e in p1["ptes"]} | {("pmd", e["addr"]): f"PMD pfn{e['pfn']}" for e in p1["pmds"]}
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                addr = k[1] if isinstance(k, tuple) else k
                out.append(f"{p1['name']}[{addr}] {a.get(k, '-')} -> {b.get(k, '-')}")
    pa = {p["pfn"]: p for p in prev["pages"]}
    for p in cur["pages"]:
        if p.get("zero"):
            continue
        o = pa.get(p["pfn"])
        if o is None:
            out.append(f"pfn{p['pfn']} new (ref {p['refcount']})")
            continue
        d = []
        for key, name in (("refcount", "ref"), ("mapcount", "map"), ("entire_mapcount", "pmdmap"), ("pincount", "pins"),
                          ("exclusive", "excl"), ("data", "data")):
            if o[key] != p[key]:
                fmt = lambda v: "/".join(map(str, v)) if isinstance(v, list) else str(v)
                d.append(f"{name} {fmt(o[key])}->{fmt(p[key])}")
        fl = set(p["flags"]) ^ set(o["flags"])
        if fl:
            d.append(" ".join(("+" if f in p["flags"] else "-") + f for f in sorted(fl)))
        if d:
            out.append(f"pfn{p['pfn']} " + ", ".join(d))
    for pfn in set(pa) - {p["pfn"] for p in cur["pages"]}:
        out.append(f"pfn{pfn} freed")
    sa = {s["slot"]: s for s in prev["swap"]}
    sb = {s["slot"]: s for s in cur["swap"]}
    for k in sorted(set(sa) | set(sb)):
        if sa.get(k) != sb.get(k):
            s = sb.get(k)
            out.append(f"swap{k} " + (f"count {s['count']} cache {s['cache']}" if s else "freed"))
    ra = {(r["kind"], r["owner"], r["pfn"]) for r in prev["refs"]}
    rb = {(r["kind"], r["owner"], r["pfn"]) for r in cur["refs"]}
    out += [f"+{k} {o} pfn{p}" for k, o, p in sorted(rb - ra)] + [f"-{k} {o} pfn{p}" for k, o, p in sorted(ra - rb)]
    return out


def table(doc: dict, title: str = "") -> Table:
    t = Table(title=Text(title) if title else None)
    for col in ("#", "thread", "operation", "kernel function", "changed", "observed / verdict"):
        t.add_column(col, overflow="fold")
    prev = doc["initial"]
    for st in doc["steps"]:
        ch = changes(prev, st["state"])
        prev = st["state"]
        if st["label"].startswith("sync.") and not st["events"]:
            continue
        what = [e for e in st["effects"] if " reads " in e or "reuses" in e or "gets a copy" in e]
        what += [f"{e['kind'].upper()}: {e['text']}" for e in st["events"]] + [f"MODEL BUG: {b}" for b in st["bugs"]]
        bad = any(e["kind"] != "correct" for e in st["events"]) or st["bugs"]
        # Text, not markup: the cells hold the scenario's own strings (names, values)
        t.add_row(*(Text(c) for c in (str(st["i"]), st["thread"], st["op"], st["function"], "; ".join(ch),
                                      "; ".join(what))), style="red" if bad else None)
    return t
