"""JUnit XML for CI systems (matrix, explore, selftest results)."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from ..verdict import MISSED, WRONG


def suite(name: str, cases: list[dict]) -> str:
    """cases: [{"classname", "name", "time", "failure": text|None, "skipped": text|None, "out": text}]"""
    ts = ET.Element("testsuite", name=name, tests=str(len(cases)),
                    failures=str(sum(1 for c in cases if c.get("failure"))),
                    skipped=str(sum(1 for c in cases if c.get("skipped"))))
    for c in cases:
        tc = ET.SubElement(ts, "testcase", classname=c["classname"], name=c["name"], time=f"{c.get('time', 0):.3f}")
        if c.get("failure"):
            f = ET.SubElement(tc, "failure", message=c["failure"][:200])
            f.text = c["failure"]
        if c.get("skipped"):
            ET.SubElement(tc, "skipped", message=c["skipped"])
        if c.get("out"):
            ET.SubElement(tc, "system-out").text = c["out"]
    return ET.tostring(ET.ElementTree(ts).getroot(), encoding="unicode", xml_declaration=True)


def from_results(name: str, results, bad=(MISSED, WRONG)) -> str:
    """matrix / explore results: a case x design fails when it shows a missed
    or wrong COW (unnecessary COWs are reported in system-out)."""
    cases = []
    for r in results:
        j = r if isinstance(r, dict) else r.as_json()
        o = j["outcomes"]
        fail = [f"{k} COW x{o[k]}" for k in bad if o.get(k)]
        texts = [w["text"] for w in j.get("witnesses", [])] or [v["text"] for v in j.get("verdicts", {}).values()]
        cases.append({"classname": j["design"], "name": j["case"], "time": j.get("seconds", 0),
                      "failure": "; ".join(fail + texts[:3]) if fail else None,
                      "skipped": f"inconclusive: {j.get('reason', '')}" if j["status"] != "complete" else None,
                      "out": f"outcomes {o}"})
    return suite(name, cases)
