"""A self-contained HTML page for a trace: no network, all assets inline.

Per step it draws every process's page table, the pages with their
counters and flags, the swap slots and every reference holder, with arrows
from ptes, holders and swap entries to what they point at; threads as swim
lanes; a step slider and keyboard stepping (left/right, Home/End, v: the
verdict step); the step where the verdict happens is highlighted with its
explanation; what the step changed and what each design hook read (and
when) are told for every step; docstrings' ``code`` markup is shown as
code, never as markup.  ``#step=N`` in the address opens step N (and
stepping updates it); below 1000 px the lanes go above the board.  The trace travels as JSON in a ``<script type="application/json">``
element and every user-supplied string is inserted with ``textContent``.
"""
from __future__ import annotations

import html as _html
import json

CSS = """
body{font:13px/1.35 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{padding:10px 16px;background:#263238;color:#eee}
header h1{font-size:16px;margin:0 0 4px}
header .sub{color:#b0bec5}
#controls{padding:8px 16px;display:flex;gap:10px;align-items:center;background:#eceff1;position:sticky;top:0;z-index:5}
#controls input[type=range]{flex:1}
button{font:inherit;padding:2px 8px}
main{display:grid;grid-template-columns:minmax(260px,28%) 1fr;gap:10px;padding:10px 16px}
#lanes{overflow:auto;max-height:78vh;background:#fff;border:1px solid #ccc}
#lanes table{border-collapse:collapse;width:100%}
#lanes td,#lanes th{border-bottom:1px solid #eee;padding:1px 4px;font-size:11px;white-space:nowrap}
#lanes th{position:sticky;top:0;background:#fff}
#lanes tr.cur td{background:#fff59d}
#lanes tr.bad td{color:#b71c1c;font-weight:bold}
#lanes tr.verdict td{outline:2px solid #d32f2f}
#lanes tr{cursor:pointer}
#right{position:relative}
#stepinfo{background:#fff;border:1px solid #ccc;padding:6px 10px;margin-bottom:8px}
#stepinfo .fn{font-family:monospace;font-weight:bold}
#stepinfo .ev{margin:2px 0}
#stepinfo .ev.missed,#stepinfo .ev.wrong{color:#b71c1c;font-weight:bold}
#stepinfo .ev.unnecessary{color:#e65100;font-weight:bold}
#stepinfo .ev.correct{color:#2e7d32}
#stepinfo.verdict{border:2px solid #d32f2f;background:#ffebee}
#board{position:relative;display:grid;grid-template-columns:1fr 1fr 1fr;gap:28px;background:#fff;border:1px solid #ccc;padding:10px}
#board h3{margin:0 0 6px;font-size:13px}
.box{border:1px solid #90a4ae;border-radius:4px;padding:4px 6px;margin:0 0 8px;background:#f5f7f8}
.box .t{font-weight:bold}
.row{font-family:monospace;font-size:12px;padding:1px 2px;border-radius:3px}
.row.w{background:#c8e6c9}
.row.swap{background:#e1bee7}
.page{font-family:monospace;font-size:12px}
.page.excl{border-color:#2e7d32}
.page.changed,.row.changed{box-shadow:0 0 0 2px #ffb300}
.ref.transient{opacity:.65}
svg#arrows{position:absolute;left:0;top:0;pointer-events:none;overflow:visible}
.legend{color:#555;font-size:11px;margin-top:4px}
code{font-family:monospace;font-size:12px;background:#eceff1;padding:0 2px;border-radius:2px}
#stepinfo .doc{color:#37474f;margin:2px 0 4px}
#stepinfo .chg{font-family:monospace;font-size:12px;color:#4e342e}
#stepinfo .dec{font-family:monospace;font-size:12px;color:#0d47a1}
#stepinfo a.perma{float:right;font-size:11px;color:#546e7a}
#lanes tr.target td{background:#ffe082}
#board>div{min-width:0}
.box,.row{overflow-wrap:anywhere}
@media (max-width: 1000px){
  main{grid-template-columns:1fr;padding:8px}
  #lanes{max-height:32vh}
  #board{grid-template-columns:1fr 1fr;gap:16px}
  #side{grid-column:1 / -1}
  header,#controls{padding-left:8px;padding-right:8px}
}
@media (max-width: 560px){ #board{grid-template-columns:1fr} }
"""

JS = r"""
const doc = JSON.parse(document.getElementById('trace').textContent);
const steps = doc.steps;
let cur = doc.verdict_step !== null ? doc.verdict_step : 0;
const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text; return e; };
// a docstring as text: ``code``, `code` and :role:`code` become <code> (never markup passed through)
function rst(cls, text) {
  const d = el('div', cls);
  const t = (text || '').replace(/\s+/g, ' ').trim();
  const re = /(?::[\w:.-]+:)?``?([^`]+?)``?_?/g;
  let last = 0, m;
  while ((m = re.exec(t)) !== null) {
    if (m.index > last) d.appendChild(document.createTextNode(t.slice(last, m.index)));
    d.appendChild(el('code', '', m[1]));
    last = re.lastIndex;
  }
  if (last < t.length) d.appendChild(document.createTextNode(t.slice(last)));
  return d;
}
function lanes() {
  const t = document.getElementById('lanetable');
  const hr = el('tr'); hr.appendChild(el('th', '', '#'));
  doc.threads.forEach(n => hr.appendChild(el('th', '', n)));
  t.appendChild(hr);
  steps.forEach((s, i) => {
    const tr = el('tr'); tr.dataset.i = i;
    const bad = s.events.some(e => e.kind !== 'correct') || s.bugs.length;
    if (bad) tr.classList.add('bad');
    if (i === doc.verdict_step) tr.classList.add('verdict');
    tr.appendChild(el('td', '', String(i)));
    doc.threads.forEach((n, ti) => tr.appendChild(el('td', '', ti === s.tid ? s.function : '')));
    tr.onclick = () => go(i);
    t.appendChild(tr);
  });
}
function state(i) { return i < 0 ? doc.initial : steps[i].state; }
function render() {
  const s = steps[cur], st = state(cur), prev = state(cur - 1);
  document.getElementById('slider').value = cur;
  document.getElementById('pos').textContent = `step ${cur} / ${steps.length - 1}`;
  document.querySelectorAll('#lanetable tr').forEach(r => r.classList.toggle('cur', Number(r.dataset.i) === cur));
  const cr = document.querySelector(`#lanetable tr[data-i="${cur}"]`); if (cr) cr.scrollIntoView({block: 'nearest'});
  const info = document.getElementById('stepinfo'); info.textContent = '';
  info.classList.toggle('verdict', cur === doc.verdict_step);
  const h = el('div'); h.appendChild(el('span', '', `${s.thread}: ${s.op} — `)); h.appendChild(el('span', 'fn', s.function));
  const a = el('a', 'perma', `#step=${cur}`); a.href = `#step=${cur}`; a.title = 'a link to this step';
  info.appendChild(a);
  info.appendChild(h); info.appendChild(rst('doc', s.doc));
  const changed = s.changed || [];
  if (changed.length) info.appendChild(el('div', 'chg', 'changed: ' + changed.join('; ')));
  else if (!s.effects.length && !s.events.length)
    info.appendChild(el('div', 'chg', 'changed: nothing in the page tables, pages, swap slots or references ' +
      '(this step takes or drops a lock, checks, or waits)'));
  (s.decisions || []).forEach(d => info.appendChild(el('div', 'dec', `design ${d.hook}() -> ${d.answer}` +
    (d.reads.length ? ': read ' + d.reads.map(r => `${r.call} = ${r.value}` + (r.step !== cur ? ` (at step ${r.step})` : '')).join(', ') : ''))));
  s.effects.forEach(e => info.appendChild(el('div', 'ev', '• ' + e)));
  s.events.forEach(e => info.appendChild(el('div', 'ev ' + e.kind, (e.kind === 'correct' ? 'copy ok: ' : e.kind.toUpperCase() + ' COW: ') + e.text)));
  s.bugs.forEach(b => info.appendChild(el('div', 'ev missed', 'MODEL BUG: ' + b)));
  if (cur === doc.verdict_step) info.appendChild(el('div', 'ev missed', 'This is the step where the verdict happens.'));
  board(st, prev);
}
function board(st, prev) {
  const procs = document.getElementById('procs'), pages = document.getElementById('pages'), side = document.getElementById('side');
  [procs, pages, side].forEach(x => { while (x.children.length > 1) x.removeChild(x.lastChild); });
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
  st.processes.forEach((p, pi) => {
    const b = el('div', 'box'); b.appendChild(el('div', 't', p.name + (p.alive ? '' : ' (exited)')));
    const old = prev.processes[pi];
    p.pmds.forEach(m => { const r = el('div', 'row' + (m.write ? ' w' : ''), `pmd@${m.addr}: pfn ${m.pfn} ${m.write ? 'RW' : 'RO'}`);
      r.dataset.to = 'pfn' + m.pfn; b.appendChild(r); });
    p.ptes.forEach(e => {
      let txt, cls = 'row';
      if (e.kind === 'present') { txt = `pte ${e.addr}: pfn ${e.pfn}${e.idx ? '/' + e.idx : ''} ${e.write ? 'RW' : 'RO'}${e.dirty ? ' D' : ''}`; if (e.write) cls += ' w'; }
      else if (e.kind === 'swap') { txt = `pte ${e.addr}: swap slot ${e.slot}${e.excl ? ' excl' : ''}`; cls += ' swap'; }
      else { txt = `pte ${e.addr}: migration of pfn ${e.pfn}`; }
      const r = el('div', cls, txt);
      r.dataset.to = e.kind === 'swap' ? 'slot' + e.slot : 'pfn' + e.pfn;
      if (!old || !old.ptes.some(o => same(o, e))) r.classList.add('changed');
      b.appendChild(r);
    });
    if (!p.ptes.length && !p.pmds.length) b.appendChild(el('div', 'row', '(no mappings)'));
    procs.appendChild(b);
  });
  st.pages.forEach(pg => {
    if (pg.zero) return;
    const b = el('div', 'box page' + (doc.design.anon_exclusive && pg.exclusive.every(x => x) ? ' excl' : ''));
    b.id = 'pfn' + pg.pfn;
    b.appendChild(el('div', 't', `pfn ${pg.pfn}` + (pg.mapcount.length > 1 ? ` (THP x${pg.mapcount.length})` : '')));
    b.appendChild(el('div', '', `refcount ${pg.refcount}  mapcount ${pg.mapcount.join('/')}${pg.entire_mapcount ? ' +' + pg.entire_mapcount + ' PMD' : ''}${pg.pincount ? '  pincount ' + pg.pincount : ''}`));
    b.appendChild(el('div', '', `flags ${pg.flags.join(' ') || '-'}` + (doc.design.anon_exclusive ?
      `  PageAnonExclusive ${pg.exclusive.map(x => x ? 'Y' : 'n').join('')}` : '')));
    b.appendChild(el('div', '', `data ${pg.data.join(' ')}`));
    const o = prev.pages.find(x => x.pfn === pg.pfn); if (!o || !same(o, pg)) b.classList.add('changed');
    pages.appendChild(b);
  });
  st.swap.forEach(sl => { const b = el('div', 'box', `swap slot ${sl.slot}: count ${sl.count}, data ${sl.data}` + (sl.cache >= 0 ? `, swap cache pfn ${sl.cache}` : ''));
    b.id = 'slot' + sl.slot; if (sl.cache >= 0) b.dataset.to = 'pfn' + sl.cache; side.appendChild(b); });
  st.refs.forEach(r => { const b = el('div', 'box ref' + (r.transient ? ' transient' : ''),
      `${r.kind} ${r.owner}${r.process ? ' (' + r.process + ' page ' + r.addr + ')' : ''}: pfn ${r.pfn}${r.idx ? '/' + r.idx : ''} ${r.flags !== '0' ? r.flags : ''}`);
    b.dataset.to = 'pfn' + r.pfn; side.appendChild(b); });
  requestAnimationFrame(arrows);
}
function arrows() {
  const svg = document.getElementById('arrows'), bd = document.getElementById('board').getBoundingClientRect();
  svg.setAttribute('width', bd.width); svg.setAttribute('height', bd.height); svg.innerHTML = '';
  const ns = 'http://www.w3.org/2000/svg';
  document.querySelectorAll('#board [data-to]').forEach(src => {
    const dst = document.getElementById(src.dataset.to); if (!dst) return;
    const a = src.getBoundingClientRect(), b = dst.getBoundingClientRect();
    const fromRight = b.left >= a.right;
    const x1 = (fromRight ? a.right : a.left) - bd.left, y1 = a.top + a.height / 2 - bd.top;
    const x2 = (fromRight ? b.left : b.right) - bd.left, y2 = b.top + Math.min(10, b.height / 2) - bd.top;
    const line = document.createElementNS(ns, 'line');
    line.setAttribute('x1', x1); line.setAttribute('y1', y1); line.setAttribute('x2', x2); line.setAttribute('y2', y2);
    line.setAttribute('stroke', src.classList.contains('ref') ? '#6a1b9a' : '#1565c0'); line.setAttribute('stroke-width', '1.3');
    line.setAttribute('marker-end', 'url(#head)'); svg.appendChild(line);
  });
  const defs = document.createElementNS(ns, 'defs'), m = document.createElementNS(ns, 'marker');
  m.setAttribute('id', 'head'); m.setAttribute('markerWidth', '8'); m.setAttribute('markerHeight', '8');
  m.setAttribute('refX', '7'); m.setAttribute('refY', '4'); m.setAttribute('orient', 'auto');
  const p = document.createElementNS(ns, 'path'); p.setAttribute('d', 'M0,0 L8,4 L0,8 z'); p.setAttribute('fill', '#455a64');
  m.appendChild(p); defs.appendChild(m); svg.appendChild(defs);
}
function go(i, fromHash) {
  cur = Math.max(0, Math.min(steps.length - 1, i)); render();
  if (!fromHash && location.hash !== `#step=${cur}`) history.replaceState(null, '', `#step=${cur}`);
}
function fromHash() {
  const m = /^#step=(\d+)$/.exec(location.hash); if (!m) return false;
  go(Number(m[1]), true);
  document.querySelectorAll('#lanetable tr.target').forEach(r => r.classList.remove('target'));
  const row = document.querySelector(`#lanetable tr[data-i="${cur}"]`);
  if (row) { row.classList.add('target'); row.scrollIntoView({block: 'center'}); }
  document.getElementById('stepinfo').scrollIntoView({block: 'nearest'});
  return true;
}
window.addEventListener('hashchange', fromHash);
document.addEventListener('keydown', e => {
  if (e.key === 'ArrowRight' || e.key === 'n') go(cur + 1);
  else if (e.key === 'ArrowLeft' || e.key === 'p') go(cur - 1);
  else if (e.key === 'Home') go(0);
  else if (e.key === 'End') go(steps.length - 1);
  else if (e.key === 'v' && doc.verdict_step !== null) go(doc.verdict_step);
});
window.addEventListener('resize', () => requestAnimationFrame(arrows));
const sl = document.getElementById('slider'); sl.max = steps.length - 1; sl.oninput = () => go(Number(sl.value));
document.getElementById('prev').onclick = () => go(cur - 1);
document.getElementById('next').onclick = () => go(cur + 1);
document.getElementById('toverdict').onclick = () => { if (doc.verdict_step !== null) go(doc.verdict_step); };
document.getElementById('toverdict').disabled = doc.verdict_step === null;
const vs = Object.entries(doc.verdicts).filter(([k, n]) => n).map(([k, n]) => `${k} COW x${n}`).join(', ');
document.getElementById('verdict').textContent = vs ? 'Verdict: ' + vs : 'Verdict: no missed, unnecessary or wrong COW';
lanes(); if (!fromHash()) render();
"""


def _json_for_script(doc: dict) -> str:
    return (json.dumps(doc, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _settings_text(d: dict) -> str:
    sets = ", ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in (d.get("settings") or {}).items())
    return _html.escape(f"; settings {sets}") if sets else ""


def render(doc: dict) -> str:
    c, d = doc["case"], doc["design"]
    e = _html.escape
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>cowlab: {e(c['id'])} under {e(d['name'])}</title>
<style>{CSS}</style></head>
<body>
<header><h1>{e(c['id'])}: {e(c['title'])}</h1>
<div class="sub">design {e(d['name'])} ({e(d['kernel'])}): {e(d['summary'])}{_settings_text(d)} &middot; source: {e(c['source'])}</div>
<div id="verdict"></div></header>
<div id="controls"><button id="prev" title="previous step (left arrow)">&larr;</button>
<input type="range" id="slider" min="0" value="0" aria-label="step">
<button id="next" title="next step (right arrow)">&rarr;</button><span id="pos"></span>
<button id="toverdict" title="the verdict step (v)">verdict step</button></div>
<main><div id="lanes"><table id="lanetable"></table></div>
<div id="right"><div id="stepinfo"></div>
<div id="board"><svg id="arrows"></svg>
<div id="procs"><h3>page tables</h3></div><div id="pages"><h3>pages</h3></div>
<div id="side"><h3>swap slots and references</h3></div></div>
<div class="legend">green rows: writable ptes; purple: swap entries; amber outline: changed by this step;
faded references are transient (LRU batch, speculative, isolation, in-flight).</div></div></main>
<script id="trace" type="application/json">{_json_for_script(doc)}</script>
<script>{JS}</script>
</body></html>
"""
