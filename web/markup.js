// SPDX-License-Identifier: LGPL-2.1-or-later
// markup.js: message text to DOM: links, mentions and a small Markdown subset, built as nodes, never as HTML.
//
// Supported: ```code blocks```, "> " quotes, `inline code`, **bold**,
// *italic* / _italic_, http(s) links and @mentions. Anything else is text.
// Nesting is bounded so a hostile message cannot make the renderer recurse deeply.

import { h } from './dom.js';

const MAX_DEPTH = 3;
const NAME_CHAR = /[A-Za-z0-9._-]/;
const NAME = /^[A-Za-z0-9._][A-Za-z0-9._-]{0,63}/;
const URL_RE = /^https?:\/\/[^\s<>"'`]+/i;
const WORD = /[\p{L}\p{N}]/u;

// A mention is "@name" not glued to a preceding name character or "@"
// (so alice@example.org mentions nobody); a trailing "." ends the sentence.
function mentionAt(s, i) {
  if (s[i] !== '@') return null;
  if (i > 0 && (NAME_CHAR.test(s[i - 1]) || s[i - 1] === '@')) return null;
  const m = NAME.exec(s.slice(i + 1));
  if (!m) return null;
  const name = m[0].replace(/\.+$/, '');
  return name === '' ? null : name;
}

// The usernames a text mentions, each once, in order, at most 20 (the protocol's rule).
export function mentionsIn(text) {
  const out = [];
  const s = String(text);
  for (let i = s.indexOf('@'); i >= 0 && out.length < 20; i = s.indexOf('@', i + 1)) {
    const name = mentionAt(s, i);
    if (name !== null && !out.includes(name)) out.push(name);
  }
  return out;
}

// A link's target, or null unless it is a well-formed http(s) URL.
export function safeUrl(raw) {
  let u;
  try {
    u = new URL(raw);
  } catch {
    return null;
  }
  return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
}

function urlAt(s, i) {
  if (i > 0 && WORD.test(s[i - 1])) return null;
  const m = URL_RE.exec(s.slice(i, i + 2048));
  if (!m) return null;
  let url = m[0];
  // Sentence punctuation after a link is not part of it; a ")" is only when the link opened one.
  for (;;) {
    const last = url[url.length - 1];
    if ('.,;:!?*_'.includes(last)) url = url.slice(0, -1);
    else if (last === ')' && (url.match(/\(/g) || []).length < (url.match(/\)/g) || []).length) url = url.slice(0, -1);
    else break;
  }
  return url.length > 'https://'.length ? url : null;
}

// The end of a *emphasis* run opened at i by marker (1 or 2 chars), or -1.
function closingAt(s, i, marker) {
  const from = i + marker.length;
  if (from >= s.length || /\s/.test(s[from])) return -1;
  let j = s.indexOf(marker, from + 1);
  while (j > 0) {
    const okBefore = !/\s/.test(s[j - 1]);
    const okAfter = marker.length === 2 || j + 1 >= s.length || !WORD.test(s[j + 1]);
    if (okBefore && okAfter && !(marker === '*' && s[j + 1] === '*')) return j;
    j = s.indexOf(marker, j + 1);
  }
  return -1;
}

function inline(doc, s, parent, opts, depth) {
  let text = '';
  const flush = () => {
    if (text !== '') parent.append(text);
    text = '';
  };
  let i = 0;
  while (i < s.length) {
    const c = s[i];
    if (c === '`') {
      const j = s.indexOf('`', i + 1);
      if (j > i + 1) {
        flush();
        parent.append(h(doc, 'code', { text: s.slice(i + 1, j) }));
        i = j + 1;
        continue;
      }
    }
    if ((c === '*' || c === '_') && depth < MAX_DEPTH) {
      const marker = c === '*' && s[i + 1] === '*' ? '**' : c;
      // A single * or _ inside a word (snake_case, 2*3*4) is not emphasis.
      const leftOk = marker.length === 2 || i === 0 || !WORD.test(s[i - 1]);
      const j = leftOk ? closingAt(s, i, marker) : -1;
      if (j > 0) {
        flush();
        const el = h(doc, marker === '**' ? 'strong' : 'em');
        inline(doc, s.slice(i + marker.length, j), el, opts, depth + 1);
        parent.append(el);
        i = j + marker.length;
        continue;
      }
    }
    if (c === 'h' || c === 'H') {
      const url = urlAt(s, i);
      const href = url && safeUrl(url);
      if (href) {
        flush();
        parent.append(h(doc, 'a', { href, rel: 'noopener noreferrer', target: '_blank', class: 'msg-link', text: url }));
        i += url.length;
        continue;
      }
    }
    if (c === '@') {
      const name = mentionAt(s, i);
      if (name !== null) {
        flush();
        const me = opts.self !== null && opts.self !== undefined && name === opts.self;
        parent.append(h(doc, 'span', { class: me ? 'mention mention-me' : 'mention', text: `@${name}` }));
        i += 1 + name.length;
        continue;
      }
    }
    text += c;
    i++;
  }
  flush();
}

// Split into blocks: fenced code, quotes (runs of "> " lines), and plain runs.
export function blocks(text) {
  const lines = String(text).split('\n');
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (line.startsWith('```')) {
      const body = [];
      i++;
      while (i < lines.length && !lines[i].startsWith('```')) body.push(lines[i++]);
      i++;
      out.push({ kind: 'code', text: body.join('\n') });
    } else if (line.startsWith('>')) {
      const body = [];
      while (i < lines.length && lines[i].startsWith('>')) body.push(lines[i++].replace(/^> ?/, ''));
      out.push({ kind: 'quote', text: body.join('\n') });
    } else {
      const body = [];
      while (i < lines.length && !lines[i].startsWith('```') && !lines[i].startsWith('>')) body.push(lines[i++]);
      out.push({ kind: 'text', text: body.join('\n') });
    }
  }
  return out;
}

// The message text as a DocumentFragment. opts.self: the reader's username (highlighted mentions).
export function renderText(doc, text, opts = {}) {
  const frag = doc.createDocumentFragment();
  const o = { self: opts.self ?? null };
  for (const b of blocks(text)) {
    if (b.kind === 'code') {
      frag.append(h(doc, 'pre', { class: 'msg-code' }, h(doc, 'code', { text: b.text })));
    } else if (b.kind === 'quote') {
      const q = h(doc, 'blockquote', { class: 'msg-quote' });
      inline(doc, b.text, q, o, 0);
      frag.append(q);
    } else {
      const span = h(doc, 'span', { class: 'msg-para' });
      inline(doc, b.text, span, o, 0);
      frag.append(span);
    }
  }
  return frag;
}
