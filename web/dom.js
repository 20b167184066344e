// SPDX-License-Identifier: LGPL-2.1-or-later
// dom.js: building elements without markup strings, and timers that do not keep node alive.

// Build an element. props: class, text, dataset, on<event> handlers, other
// attributes by fixed name. Children may be nodes or strings (which become
// Text nodes, never markup).
export function h(doc, tag, props = {}, ...children) {
  const e = doc.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = String(v);
    else if (k === 'dataset') for (const [dk, dv] of Object.entries(v)) e.dataset[dk] = String(dv);
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) e.append(c);
  return e;
}

export function later(fn, ms) {
  const t = setTimeout(fn, ms);
  // Under node (tests) a pending timer must not keep the process alive.
  if (t && typeof t.unref === 'function') t.unref();
  return t;
}

export function str(v) {
  return typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v);
}
