// SPDX-License-Identifier: LGPL-2.1-or-later
// render.js: turns protocol events into DOM: the room sidebar, one conversation at a time, unread counts and the outbox.
//
// Everything that came over the network reaches the DOM through textContent,
// Text nodes or setAttribute() of attribute names fixed here, never through
// innerHTML, so a username or message can never become markup. Every function
// takes the document it builds in, so node + jsdom can test it without a browser.

import { h, later, str } from './dom.js';
import { mentionsIn, renderText } from './markup.js';

export const MSG_MESSAGE = 0;
export const MSG_WARNING = 1;
export const MSG_ALERT = 2;
export const MSG_MUTED = 3;
export const MSG_ENTER = 4;
export const MSG_LEAVE = 5;

const ERROR_TEXT = {
  USER_HAS_TO_LOGIN: 'Your session has ended. Please log in again.',
  ROOM_INVALID: 'That room does not exist.',
  ROOM_ACCESS_DENIED: 'You are not allowed in that room.',
  BAD_REQUEST: 'The server did not understand the request.',
  MESSAGE_TOO_LONG: 'That message is too long.',
  RATE_LIMITED: 'You are sending too fast. Please wait a moment.',
  NOT_FOUND: 'That message no longer exists.',
  FORBIDDEN: 'You can only change your own messages.',
  UNAVAILABLE: 'The chat is temporarily unavailable; nothing was sent.',
  OUTCOME_UNKNOWN: 'The chat did not answer in time; sending again.',
};

const TYPING_MS = 4000;
const TYPING_SEND_MS = 3000;
const CONFIRM_MS = 4000;
// The DOM holds at most WINDOW messages of a room; scrolling moves the window
// PAGE at a time, EDGE pixels before the end, so a long room scrolls like a short one.
export const WINDOW = 150;
const PAGE = 50;
const EDGE = 600;
// What a room keeps in memory; older messages are asked for again when scrolled to.
export const MAX_KEPT = 20000;

function cmpDigits(x, y) {
  x = x.replace(/^0+(?=\d)/, '');
  y = y.replace(/^0+(?=\d)/, '');
  if (x.length !== y.length) return x.length < y.length ? -1 : 1;
  return x < y ? -1 : x > y ? 1 : 0;
}

const STREAM_ID = /^(\d+)-(\d+)$/;
const NUMBER_ID = /^\d+$/;

// Order message ids: Redis stream ids ("1700000000000-3") and plain numbers
// compare numerically at any length, anything else as strings.
export function compareIds(a, b) {
  a = String(a);
  b = String(b);
  const ma = STREAM_ID.exec(a);
  const mb = STREAM_ID.exec(b);
  if (ma && mb) return cmpDigits(ma[1], mb[1]) || cmpDigits(ma[2], mb[2]);
  if (NUMBER_ID.test(a) && NUMBER_ID.test(b)) return cmpDigits(a, b);
  return a < b ? -1 : a > b ? 1 : 0;
}

// Reconnect delay for the n-th consecutive failure (0-based): doubles from
// 0.5 s up to 10 s, with jitter in [50 %, 100 %] so many tabs don't reconnect in step.
export function backoffDelay(attempt, random = Math.random) {
  const base = Math.min(10000, 500 * 2 ** Math.min(attempt, 10));
  return Math.round(base / 2 + (random() * base) / 2);
}

export function errorText(code) {
  if (typeof code !== 'string') return 'Unknown error.';
  return Object.prototype.hasOwnProperty.call(ERROR_TEXT, code) ? ERROR_TEXT[code] : `Error: ${code}`;
}

const pad = (n) => String(n).padStart(2, '0');

function validDate(ts) {
  if (typeof ts !== 'number' || !Number.isFinite(ts)) return null;
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? null : d;
}

function formatTime(doc, ts) {
  const d = validDate(ts);
  if (!d) return null;
  return h(doc, 'time', {
    class: 'msg-time',
    datetime: d.toISOString(),
    title: d.toLocaleString(),
    text: `${pad(d.getHours())}:${pad(d.getMinutes())}`,
  });
}

export function dayKey(ts) {
  const d = validDate(ts);
  return d ? `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}` : null;
}

// "Today", "Yesterday" or the date, for a day separator.
export function dayLabel(ts, now = Date.now()) {
  const key = dayKey(ts);
  if (key === dayKey(now)) return 'Today';
  const y = new Date(now);
  y.setDate(y.getDate() - 1);
  if (key === dayKey(y.getTime())) return 'Yesterday';
  return new Date(ts).toLocaleDateString(undefined, { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' });
}

function preview(text, n = 40) {
  const t = str(text).replace(/\s+/g, ' ').trim();
  return t.length > n ? `${t.slice(0, n - 1)}…` : t;
}

// Whether message id comes after the read marker (null: nothing was read).
function after(id, marker) {
  return marker === null || compareIds(id, marker) > 0;
}

// Whether msg mentions user: the server's list (version 2) or the text itself.
export function mentions(msg, user) {
  if (!user || msg.own === true || msg.username === user) return false;
  const list = Array.isArray(msg.mentions) ? msg.mentions : mentionsIn(str(msg.message));
  return list.includes(user);
}

// One chat message (msg_type 0) as an <li>. actions.edit/remove, when given
// and the message is the reader's own, get buttons. self: the reader's name.
export function renderMessage(doc, msg, actions = null, self = null) {
  const own = msg.own === true;
  const li = h(doc, 'li', { class: own ? 'message own' : 'message' });
  if (msg.id !== undefined && msg.id !== null) li.dataset.id = str(msg.id);
  if (mentions(msg, self)) li.classList.add('mentions-me');
  const user = h(doc, 'span', { class: 'msg-user', text: str(msg.username) });
  const meta = h(doc, 'div', { class: 'msg-meta' }, user);
  if (own) meta.append(' ', h(doc, 'span', { class: 'msg-own-tag', text: 'you' }));
  const time = formatTime(doc, msg.ts);
  if (time) meta.append(' ', time);
  meta.append(' ', h(doc, 'span', { class: 'msg-edited', text: '(edited)', hidden: msg.edited !== true }));
  if (own && actions && li.dataset.id !== undefined) meta.append(' ', renderMessageActions(doc, li, msg, actions));
  const text = h(doc, 'div', { class: 'msg-text' }, renderText(doc, str(msg.message), { self }));
  li.append(meta, text);
  if (msg.edited === true) li.classList.add('edited');
  return li;
}

function describe(msg) {
  const d = validDate(msg.ts);
  return `your message${d ? ` from ${pad(d.getHours())}:${pad(d.getMinutes())}` : ''}: ${preview(msg.message)}`;
}

function renderMessageActions(doc, li, msg, actions) {
  const box = h(doc, 'div', { class: 'msg-actions' });
  const edit = h(doc, 'button', { type: 'button', class: 'msg-edit', text: 'Edit', 'aria-label': `Edit ${describe(msg)}` });
  const del = h(doc, 'button', { type: 'button', class: 'msg-delete', text: 'Delete', 'aria-label': `Delete ${describe(msg)}` });
  edit.addEventListener('click', () => startEdit(doc, li, actions));
  let timer = null;
  // Two clicks to delete, without a blocking confirm() dialog.
  del.addEventListener('click', () => {
    if (del.classList.contains('confirming')) {
      clearTimeout(timer);
      actions.remove(li.dataset.id);
      actions.focusComposer?.();
      return;
    }
    del.classList.add('confirming');
    del.textContent = 'Really delete?';
    del.setAttribute('aria-label', `Really delete ${describe(msg)}?`);
    timer = later(() => {
      del.classList.remove('confirming');
      del.textContent = 'Delete';
      del.setAttribute('aria-label', `Delete ${describe(msg)}`);
    }, CONFIRM_MS);
  });
  box.append(edit, ' ', del);
  return box;
}

// Opens the inline editor on a rendered own message. Enter saves,
// Shift+Enter is a new line, Esc cancels; focus returns to the composer.
export function startEdit(doc, li, actions) {
  if (li.querySelector('.msg-edit-form')) {
    li.querySelector('.msg-edit-input').focus();
    return;
  }
  const textEl = li.querySelector('.msg-text');
  const old = li.dataset.raw ?? textEl.textContent;
  const input = h(doc, 'textarea', { class: 'msg-edit-input', rows: '1', 'aria-label': `Edit message: ${preview(old)}` });
  input.value = old;
  const form = h(doc, 'form', { class: 'msg-edit-form' }, input, ' ',
    h(doc, 'button', { type: 'submit', text: 'Save' }), ' ',
    h(doc, 'button', { type: 'button', class: 'msg-edit-cancel', text: 'Cancel' }));
  const done = () => {
    form.remove();
    textEl.hidden = false;
    actions.focusComposer?.();
  };
  const save = () => {
    const text = input.value;
    if (text.trim() !== '' && text !== old && !actions.edit(li.dataset.id, text)) return;
    done();
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    save();
  });
  form.querySelector('.msg-edit-cancel').addEventListener('click', done);
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      e.preventDefault();
      done();
    } else if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      save();
    }
  });
  textEl.hidden = true;
  textEl.after(form);
  input.focus();
}

// Administrator notices (1..3), entered/left notices (4, 5) and local notices.
export function renderNotice(doc, msg) {
  const type = msg.msg_type;
  let li;
  if (type === MSG_ENTER || type === MSG_LEAVE) {
    li = h(doc, 'li', { class: type === MSG_ENTER ? 'notice notice-enter' : 'notice notice-leave' },
      h(doc, 'span', { class: 'msg-user', text: str(msg.username) }),
      type === MSG_ENTER ? ' joined the room' : ' left the room');
  } else {
    const kind = type === MSG_WARNING ? 'warning' : type === MSG_ALERT ? 'alert' : type === 'local' ? 'local' : 'muted';
    const label = kind === 'warning' ? 'Warning' : kind === 'alert' ? 'Alert' : null;
    li = h(doc, 'li', { class: `notice notice-${kind}` });
    if (label) li.append(h(doc, 'strong', { class: 'notice-label', text: `${label}:` }), ' ');
    li.append(h(doc, 'span', { class: 'notice-text', text: str(msg.message) }));
  }
  if (msg.id !== undefined && msg.id !== null) li.dataset.id = str(msg.id);
  const time = formatTime(doc, msg.ts);
  if (time) li.append(' ', time);
  return li;
}

// One joined room: its conversation, members, composer and the messages it
// knows (in memory, oldest first), of which a window is in the DOM.
export class RoomView {
  // hooks: send(text), edit(id, text) -> bool, remove(id) -> bool, leave(),
  // typing(), history(before) -> bool, read(id), counts(), back(),
  // toggleNotify() -> bool, message(entry), draft(text); all bound to this room.
  constructor(doc, { id, title, staffOnly = false, self = null, draft = '', notifyAll = false }, hooks) {
    this.doc = doc;
    this.id = str(id);
    this.hooks = hooks;
    this.self = self;
    this.entries = [];
    this.byId = new Map();
    this.winStart = 0;
    this.winEnd = 0;
    this.deleted = new Set();
    this.typers = new Map();
    this.lastTypingSent = 0;
    this.olderDone = false;
    this.loadingOlder = false;
    this.readId = null;
    this.unread = 0;
    this.mentionCount = 0;
    this.divider = false;
    this.dividerAfter = null;
    this.current = false;
    this.joined = false;
    this.scrollQueued = false;
    this.pinned = true;
    this.resizer = null;
    this.memberTotal = null;
    this.membersPending = false;
    this.build();
    this.setTitle(title);
    this.setStaffOnly(staffOnly);
    this.setNotifyAll(notifyAll);
    this.input.value = draft;
  }

  build() {
    const doc = this.doc;
    const uid = `room-${this.id}`;
    this.titleEl = h(doc, 'h2', { class: 'room-title', id: `${uid}-title`, tabindex: '-1' });
    this.staffEl = h(doc, 'span', { class: 'badge badge-staff', text: 'staff only', hidden: true });
    this.backBtn = h(doc, 'button', { type: 'button', class: 'room-back', text: '‹ Rooms', onclick: () => this.hooks.back() });
    this.notifyBtn = h(doc, 'button', { type: 'button', class: 'room-notify', 'aria-pressed': 'false', onclick: () => this.hooks.toggleNotify() });
    this.leaveBtn = h(doc, 'button', { type: 'button', class: 'room-leave', text: 'Leave', onclick: () => this.hooks.leave() });
    this.membersSummary = h(doc, 'summary', { text: 'Members' });
    this.membersEl = h(doc, 'ul', { class: 'member-list' });
    this.membersMoreBtn = h(doc, 'button', { type: 'button', class: 'members-more', text: 'Show more', hidden: true,
      onclick: () => this.moreMembers() });
    this.membersBox = h(doc, 'details', { class: 'members' }, this.membersSummary,
      h(doc, 'div', { class: 'member-panel' }, this.membersEl, this.membersMoreBtn));
    this.historyEl = h(doc, 'p', { class: 'history-status', text: '' });
    this.messagesEl = h(doc, 'ol', { class: 'messages' });
    this.outboxEl = h(doc, 'ol', { class: 'outbox', hidden: true });
    this.scroller = h(doc, 'div', { class: 'messages-scroll', tabindex: '0', role: 'region' },
      this.historyEl, this.messagesEl, this.outboxEl);
    this.jumpBtn = h(doc, 'button', { type: 'button', class: 'jump-latest', hidden: true, text: 'Jump to latest ↓', onclick: () => this.jumpToLatest() });
    this.typingEl = h(doc, 'p', { class: 'typing' });
    const inputId = `${uid}-input`;
    this.composerLabel = h(doc, 'label', { for: inputId, class: 'visually-hidden' });
    this.input = h(doc, 'textarea', { id: inputId, class: 'send-input', name: 'message', rows: '1', autocomplete: 'off', enterkeyhint: 'send' });
    this.sendBtn = h(doc, 'button', { type: 'submit', class: 'send-button', text: 'Send' });
    this.form = h(doc, 'form', { class: 'send-form' }, this.composerLabel, this.input, this.sendBtn);
    this.root = h(doc, 'section', { class: 'room-pane', 'aria-labelledby': `${uid}-title`, dataset: { roomId: this.id }, hidden: true },
      h(doc, 'header', { class: 'room-header' }, this.backBtn, this.titleEl, this.staffEl,
        h(doc, 'div', { class: 'room-tools' }, this.membersBox, this.notifyBtn, this.leaveBtn)),
      this.scroller, this.jumpBtn, this.typingEl, this.form);
    this.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.submit();
    });
    this.input.addEventListener('keydown', (e) => this.onComposerKey(e));
    this.input.addEventListener('input', () => {
      this.hooks.draft(this.input.value);
      const now = Date.now();
      if (this.input.value !== '' && now - this.lastTypingSent > TYPING_SEND_MS) {
        this.lastTypingSent = now;
        this.hooks.typing();
      }
    });
    this.scroller.addEventListener('scroll', () => this.onScroll(), { passive: true });
    // Kept at the newest message while the content or the pane changes size
    // (images of text wrapping, the composer growing, a rotated phone).
    const RO = doc.defaultView?.ResizeObserver;
    if (RO) {
      this.resizer = new RO(() => {
        if (this.pinned && this.current) this.scroller.scrollTop = this.scroller.scrollHeight;
      });
      this.resizer.observe(this.scroller);
      this.resizer.observe(this.messagesEl);
    }
  }

  onComposerKey(e) {
    if (e.isComposing) return;
    // Enter sends; Shift+Enter is a new line; ↑ in an empty composer edits the last own message.
    if (e.key === 'Enter' && !e.shiftKey && !e.altKey && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      this.submit();
    } else if (e.key === 'ArrowUp' && !e.altKey && !e.ctrlKey && !e.metaKey && !e.shiftKey && this.input.value === '') {
      if (this.editLast()) e.preventDefault();
    }
  }

  submit() {
    const text = this.input.value;
    if (text.trim() === '') return;
    this.hooks.send(text);
    this.input.value = '';
    this.hooks.draft('');
    this.lastTypingSent = 0;
    this.jumpToLatest();
  }

  focusComposer() {
    this.input.focus();
  }

  // Opens the editor on the reader's newest message; false when there is none.
  editLast() {
    for (let i = this.entries.length - 1; i >= 0; i--) {
      const e = this.entries[i];
      if (e.kind !== 'message' || !e.msg.own || e.deleted || e.id === null) continue;
      if (i < this.winStart || i >= this.winEnd) this.jumpToLatest();
      const li = this.renderedLi(e.id);
      if (!li) return false;
      startEdit(this.doc, li, this.messageActions());
      li.scrollIntoView?.({ block: 'nearest' });
      return true;
    }
    return false;
  }

  setTitle(title) {
    this.title = str(title) || this.id;
    this.titleEl.textContent = this.title;
    this.composerLabel.textContent = `Message ${this.title}`;
    this.sendBtn.setAttribute('aria-label', `Send to ${this.title}`);
    this.jumpBtn.setAttribute('aria-label', `Jump to latest in ${this.title}`);
    this.input.placeholder = `Message ${this.title}`;
    this.leaveBtn.setAttribute('aria-label', `Leave ${this.title}`);
    this.scroller.setAttribute('aria-label', `Messages in ${this.title}`);
    this.updateMemberCount();
    this.setNotifyAll(this.notifyAll);
  }

  setStaffOnly(v) {
    this.staffOnly = v === true;
    this.staffEl.hidden = !this.staffOnly;
    this.root.classList.toggle('staff-only', this.staffOnly);
  }

  setNotifyAll(on) {
    this.notifyAll = on === true;
    this.notifyBtn.setAttribute('aria-pressed', this.notifyAll ? 'true' : 'false');
    this.notifyBtn.textContent = 'Notify all';
    this.notifyBtn.setAttribute('aria-label', `Notify all messages in ${this.title ?? this.id}`);
    this.notifyBtn.title = this.notifyAll ? 'Desktop notifications for every message (on)' : 'Desktop notifications for mentions only; press for every message';
  }

  // The join's first page of members; total: everyone present (a large
  // room's list is a page, more on request), undefined from a server that
  // always sends the whole list.
  setMembers(list, total) {
    this.membersEl.replaceChildren();
    this.memberTotal = null;
    if (Array.isArray(list)) for (const u of [...new Set(list.map(str))].sort()) this.addMember(u);
    this.setMemberCount(total);
  }

  // A large room's count, which comes instead of entered/left notices.
  setMemberCount(total) {
    this.memberTotal = Number.isSafeInteger(total) && total >= 0 ? total : null;
    this.updateMemberCount();
  }

  // The reply to "members": the next page, after the last name shown.
  addMembersPage(ev) {
    this.membersPending = false;
    if (Array.isArray(ev.members)) for (const u of ev.members) this.addMember(u, false);
    if (ev.more === false && this.memberTotal !== null) this.memberTotal = this.membersEl.children.length;
    this.updateMemberCount();
  }

  moreMembers() {
    if (this.membersPending) return;
    const last = this.membersEl.lastElementChild;
    this.membersPending = this.hooks.members(last ? last.textContent : null) !== false;
  }

  memberEl(u) {
    for (const li of this.membersEl.children) if (li.textContent === u) return li;
    return null;
  }

  // arrived: someone entered (counted), not a page being filled in.
  addMember(u, arrived = true) {
    u = str(u);
    if (u === '' || this.memberEl(u)) return;
    const li = h(this.doc, 'li', { class: 'member', text: u });
    const next = [...this.membersEl.children].find((c) => c.textContent > u);
    this.membersEl.insertBefore(li, next || null);
    if (arrived && this.memberTotal !== null) this.memberTotal++;
    this.updateMemberCount();
  }

  removeMember(u) {
    const li = this.memberEl(str(u));
    if (li && this.memberTotal !== null) this.memberTotal--;
    li?.remove();
    this.updateMemberCount();
  }

  updateMemberCount() {
    const shown = this.membersEl.children.length;
    const n = Math.max(this.memberTotal ?? shown, shown);
    const text = `${n} ${n === 1 ? 'member' : 'members'}`;
    this.membersSummary.textContent = text;
    this.membersSummary.setAttribute('aria-label', `${text} in ${this.title}`);
    this.membersMoreBtn.hidden = shown >= n;
    this.membersMoreBtn.textContent = `Show more (${n - shown})`;
  }

  get lastId() {
    for (let i = this.entries.length - 1; i >= 0; i--) if (this.entries[i].id !== null) return this.entries[i].id;
    return null;
  }

  get firstId() {
    for (const e of this.entries) if (e.id !== null) return e.id;
    return null;
  }

  // The join reply: title, flags, members and the (possibly replayed) history.
  // counts: {read, unread, mentions} from a version 2 server, else null.
  applyJoin(ev, counts = null) {
    if (ev.title !== undefined) this.setTitle(ev.title);
    if (ev.staff_only !== undefined) this.setStaffOnly(ev.staff_only);
    if (ev.members !== undefined) this.setMembers(ev.members, ev.member_count);
    const hadAny = this.lastId !== null;
    const rejoin = this.joined;
    this.joined = true;
    if (Array.isArray(ev.history)) {
      if (ev.complete === false && (hadAny || rejoin)) this.addLocalNotice('Some messages were missed while you were away.');
      const list = ev.history.filter((m) => m && typeof m === 'object');
      this.addBatch(list);
      if (!hadAny && ev.since === undefined && list.length === 0) this.olderDone = true;
    }
    if (counts) {
      this.readId = counts.read;
      this.unread = counts.unread;
      this.mentionCount = counts.mentions;
    } else {
      if (this.readId === null) this.readId = this.lastId;
      this.recount();
    }
    this.updateHistoryStatus();
  }

  // Unread and mention counts from what the room holds after readId.
  recount() {
    let unread = 0;
    let men = 0;
    for (let i = this.entries.length - 1; i >= 0; i--) {
      const e = this.entries[i];
      if (e.id === null) continue;
      if (!after(e.id, this.readId)) break;
      if (e.kind !== 'message' || e.deleted || e.msg.own) continue;
      unread++;
      if (e.mention) men++;
    }
    this.unread = unread;
    this.mentionCount = men;
  }

  makeEntry(msg) {
    const id = msg.id !== undefined && msg.id !== null && str(msg.id) !== '' ? str(msg.id) : null;
    const type = msg.msg_type === undefined ? MSG_MESSAGE : msg.msg_type;
    const kind = type === MSG_MESSAGE ? 'message' : 'notice';
    return { id, kind, msg, ts: typeof msg.ts === 'number' ? msg.ts : Date.now(), mention: kind === 'message' && mentions(msg, this.self), deleted: false };
  }


  // Where an entry with this id belongs (after every smaller id).
  insertPos(id) {
    if (id === null) return this.entries.length;
    const last = this.lastId;
    if (last === null || compareIds(id, last) > 0) return this.entries.length;
    let i = this.entries.length;
    while (i > 0 && (this.entries[i - 1].id === null || compareIds(this.entries[i - 1].id, id) > 0)) i--;
    return i;
  }

  // A message or notice event as it arrives live. Returns the entry, or
  // null when it was a duplicate or changed nothing new.
  addEvent(msg, live = true) {
    const type = msg.msg_type === undefined ? MSG_MESSAGE : msg.msg_type;
    if (live && type === MSG_ENTER) this.addMember(msg.username);
    if (live && type === MSG_LEAVE) this.removeMember(msg.username);
    if (live && type === MSG_MESSAGE) this.clearTyping(str(msg.username));
    const entry = this.makeEntry(msg);
    if (entry.id !== null) {
      if (this.deleted.has(entry.id)) return null;
      const known = this.byId.get(entry.id);
      if (known) {
        if (msg.edited === true && entry.kind === 'message') this.applyEdit(known, msg);
        return null;
      }
      // A live edit of a message older than everything we hold is not news.
      const first = this.firstId;
      if (msg.edited === true && live && first !== null && compareIds(entry.id, first) < 0) return null;
    }
    const stick = this.isNearBottom();
    const pos = this.insertPos(entry.id);
    const atTail = pos === this.entries.length;
    const windowAtTail = this.winEnd === this.entries.length;
    this.entries.splice(pos, 0, entry);
    if (entry.id !== null) this.byId.set(entry.id, entry);
    if (atTail && windowAtTail) {
      this.winEnd++;
      this.appendNodes(pos);
      if (this.winEnd - this.winStart > WINDOW + PAGE) {
        this.winStart = this.winEnd - WINDOW;
        this.renderWindow(stick ? 'bottom' : this.anchor());
      } else if (stick || (msg.own === true && live)) {
        this.scrollToBottom();
      }
    } else if (pos < this.winStart) {
      this.winStart++;
      this.winEnd++;
    } else if (pos <= this.winEnd) {
      this.winEnd++;
      this.renderWindow(stick ? 'bottom' : this.anchor());
    }
    if (live && entry.kind === 'message' && entry.id !== null && msg.edited !== true && !msg.own
      && after(entry.id, this.readId)) {
      this.unread++;
      if (entry.mention) this.mentionCount++;
    }
    this.trimMemory();
    this.updateJump();
    return entry;
  }

  // Several history messages at once (join or an older page): one render.
  addBatch(list) {
    if (list.length === 0) return 0;
    const stick = this.isNearBottom();
    const first = this.firstId;
    const fresh = [];
    for (const msg of list) {
      const e = this.makeEntry(msg);
      if (e.id !== null && (this.deleted.has(e.id))) continue;
      if (e.id !== null) {
        const known = this.byId.get(e.id);
        if (known) {
          if (msg.edited === true) this.applyEdit(known, msg);
          continue;
        }
        this.byId.set(e.id, e);
      }
      fresh.push(e);
    }
    if (fresh.length === 0) return 0;
    const anchor = this.anchor();
    const older = first !== null && fresh.every((e) => e.id !== null && compareIds(e.id, first) < 0);
    if (older) {
      this.entries = fresh.concat(this.entries);
      this.winStart += fresh.length;
      this.winEnd += fresh.length;
    } else {
      const atTail = this.winEnd === this.entries.length;
      for (const e of fresh) this.entries.splice(this.insertPos(e.id), 0, e);
      if (atTail) {
        this.winEnd = this.entries.length;
        this.winStart = Math.max(0, this.winEnd - WINDOW);
      }
      this.renderWindow(stick ? 'bottom' : anchor);
    }
    this.trimMemory();
    this.updateJump();
    return fresh.length;
  }

  trimMemory() {
    const over = this.entries.length - MAX_KEPT;
    if (over <= 0 || this.winStart < over) return;
    for (const e of this.entries.splice(0, over)) if (e.id !== null) this.byId.delete(e.id);
    this.winStart -= over;
    this.winEnd -= over;
    this.olderDone = false;
  }

  applyEdit(e, msg) {
    e.msg = { ...e.msg, message: msg.message, edited: true, mentions: msg.mentions };
    e.mention = mentions(e.msg, this.self);
    const li = this.renderedLi(e.id);
    if (li && !li.querySelector('.msg-edit-form')) li.replaceWith(this.renderEntry(e));
  }

  renderedLi(id) {
    if (id === null) return null;
    for (const li of this.messagesEl.children) if (li.dataset.id === id) return li;
    return null;
  }

  deleteMessage(id) {
    id = str(id);
    this.deleted.add(id);
    const e = this.byId.get(id);
    if (!e || e.deleted) return false;
    e.deleted = true;
    if (!e.msg.own && e.kind === 'message' && after(id, this.readId)) {
      this.unread = Math.max(0, this.unread - 1);
      if (e.mention) this.mentionCount = Math.max(0, this.mentionCount - 1);
    }
    this.renderedLi(id)?.replaceWith(this.renderEntry(e));
    return true;
  }

  addLocalNotice(text) {
    return this.addEvent({ msg_type: 'local', message: text, ts: Date.now() }, false);
  }

  messageActions() {
    return {
      edit: (mid, text) => this.hooks.edit(mid, text),
      remove: (mid) => this.hooks.remove(mid),
      focusComposer: () => this.focusComposer(),
    };
  }

  renderEntry(e) {
    if (e.deleted) {
      return h(this.doc, 'li', { class: 'message deleted', dataset: { id: e.id } },
        h(this.doc, 'span', { class: 'msg-deleted', text: 'message deleted' }));
    }
    if (e.kind !== 'message') return renderNotice(this.doc, e.msg);
    const li = renderMessage(this.doc, e.msg, this.messageActions(), this.self);
    li.dataset.raw = str(e.msg.message);
    return li;
  }

  // The separators due before entries[i]: a new day, the "new messages" line.
  separatorsBefore(i) {
    const out = [];
    const e = this.entries[i];
    const prev = i > 0 ? this.entries[i - 1] : null;
    const day = dayKey(e.ts);
    if (day !== null && (!prev || dayKey(prev.ts) !== day)) {
      out.push(h(this.doc, 'li', { class: 'day-separator', dataset: { day } },
        h(this.doc, 'span', { text: dayLabel(e.ts) })));
    }
    if (this.divider && e.id !== null && e.kind === 'message' && !e.msg.own && after(e.id, this.dividerAfter)) {
      let first = true;
      for (let j = i - 1; j >= 0; j--) {
        const p = this.entries[j];
        if (p.id !== null && !after(p.id, this.dividerAfter)) break;
        if (p.kind === 'message' && !p.msg.own) {
          first = false;
          break;
        }
      }
      if (first) out.push(h(this.doc, 'li', { class: 'new-divider', text: 'New messages' }));
    }
    return out;
  }

  appendNodes(i) {
    this.messagesEl.append(...this.separatorsBefore(i), this.renderEntry(this.entries[i]));
  }

  renderWindow(anchor) {
    const nodes = [];
    for (let i = this.winStart; i < this.winEnd; i++) nodes.push(...this.separatorsBefore(i), this.renderEntry(this.entries[i]));
    this.messagesEl.replaceChildren(...nodes);
    this.updateHistoryStatus();
    if (anchor === 'bottom') this.scrollToBottom();
    else if (anchor) this.restoreAnchor(anchor);
  }

  // The first message at least partly visible and its offset, to keep it in place across a re-render.
  anchor() {
    const top = this.scroller.scrollTop;
    for (const li of this.messagesEl.children) {
      if (li.dataset.id !== undefined && li.offsetTop + li.offsetHeight > top) return { id: li.dataset.id, offset: li.offsetTop - top };
    }
    return null;
  }

  restoreAnchor(a) {
    const li = this.renderedLi(a.id);
    if (li) this.scroller.scrollTop = li.offsetTop - a.offset;
  }

  isNearBottom() {
    const el = this.scroller;
    return el.scrollHeight - el.scrollTop - el.clientHeight < 60;
  }

  atLatest() {
    return this.winEnd === this.entries.length && this.isNearBottom();
  }

  scrollToBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.pinned = this.winEnd === this.entries.length;
  }

  jumpToLatest() {
    if (this.winEnd !== this.entries.length) {
      this.winEnd = this.entries.length;
      this.winStart = Math.max(0, this.winEnd - WINDOW);
      this.renderWindow('bottom');
    } else {
      this.scrollToBottom();
    }
    this.updateJump();
    this.hooks.seen?.();
  }

  onScroll() {
    if (this.scrollQueued) return;
    this.scrollQueued = true;
    const raf = this.doc.defaultView?.requestAnimationFrame?.bind(this.doc.defaultView) ?? ((f) => later(f, 16));
    raf(() => {
      this.scrollQueued = false;
      this.checkScroll();
    });
  }

  checkScroll() {
    const el = this.scroller;
    this.pinned = this.atLatest();
    if (el.scrollTop < EDGE) {
      if (this.winStart > 0) this.shiftWindow(-PAGE);
      else this.loadOlder();
    } else if (el.scrollHeight - el.scrollTop - el.clientHeight < EDGE && this.winEnd < this.entries.length) {
      this.shiftWindow(PAGE);
    }
    this.updateJump();
    this.hooks.seen?.();
  }

  // Moves the window by about `by` entries, building only the entries that
  // come in and removing those that go out (separators belong to the entry
  // after them and depend on the entries alone, not on the window).
  shiftWindow(by) {
    const anchor = this.anchor();
    const [oldStart, oldEnd] = [this.winStart, this.winEnd];
    if (by < 0) {
      this.winStart = Math.max(0, this.winStart + by);
      this.winEnd = Math.min(this.winEnd, this.winStart + WINDOW);
    } else {
      this.winEnd = Math.min(this.entries.length, this.winEnd + by);
      this.winStart = Math.max(this.winStart, this.winEnd - WINDOW);
    }
    if (this.winStart >= oldEnd || this.winEnd <= oldStart) {
      this.renderWindow(anchor);
      return;
    }
    const build = (from, to) => {
      const nodes = [];
      for (let i = from; i < to; i++) nodes.push(...this.separatorsBefore(i), this.renderEntry(this.entries[i]));
      return nodes;
    };
    const list = this.messagesEl;
    if (this.winStart < oldStart) list.prepend(...build(this.winStart, oldStart));
    if (this.winEnd > oldEnd) list.append(...build(oldEnd, this.winEnd));
    for (let n = this.winStart - oldStart; n > 0; n--) this.dropEntryNode(list.firstElementChild, 'next');
    for (let n = oldEnd - this.winEnd; n > 0; n--) this.dropEntryNode(list.lastElementChild, 'previous');
    this.updateHistoryStatus();
    if (anchor) this.restoreAnchor(anchor);
  }

  // Removes one entry's <li> with its separators, from the top ('next') or the bottom ('previous').
  dropEntryNode(el, dir) {
    const isSep = (e) => e && (e.classList.contains('day-separator') || e.classList.contains('new-divider'));
    if (dir === 'next') {
      while (isSep(el)) {
        const n = el.nextElementSibling;
        el.remove();
        el = n;
      }
      el?.remove();
      return;
    }
    let prev = el?.previousElementSibling;
    el?.remove();
    while (isSep(prev)) {
      const p = prev.previousElementSibling;
      prev.remove();
      prev = p;
    }
  }

  loadOlder() {
    if (this.olderDone || this.loadingOlder || !this.joined) return false;
    const before = this.firstId;
    if (!this.hooks.history(before)) return false;
    this.loadingOlder = true;
    this.updateHistoryStatus();
    return true;
  }

  // The reply to our history request.
  applyHistory(ev) {
    this.loadingOlder = false;
    const list = Array.isArray(ev.history) ? ev.history.filter((m) => m && typeof m === 'object') : [];
    const added = this.addBatch(list);
    if (ev.complete !== false || list.length === 0) this.olderDone = true;
    if (added > 0 && this.winStart > 0) this.shiftWindow(-PAGE);
    this.updateHistoryStatus();
  }

  updateHistoryStatus() {
    const text = this.loadingOlder ? 'Loading older messages…'
      : this.olderDone && this.winStart === 0 ? `This is the beginning of ${this.title}.` : '';
    if (this.historyEl.textContent !== text) this.historyEl.textContent = text;
  }

  updateJump() {
    const hide = this.winEnd === this.entries.length && this.isNearBottom();
    if (this.jumpBtn.hidden !== hide) this.jumpBtn.hidden = hide;
  }

  // Marks everything up to the newest message as read; returns the new marker or null if unchanged.
  markRead() {
    const last = this.lastId;
    if (last === null || (this.readId !== null && compareIds(last, this.readId) <= 0 && this.unread === 0)) return null;
    this.readId = last;
    this.unread = 0;
    this.mentionCount = 0;
    return last;
  }

  setCurrent(on) {
    this.current = on;
    this.root.hidden = !on;
    if (on) {
      this.divider = this.unread > 0;
      this.dividerAfter = this.readId;
      this.winEnd = this.entries.length;
      this.winStart = Math.max(0, this.winEnd - WINDOW);
      this.renderWindow(null);
      const div = this.messagesEl.querySelector('.new-divider');
      if (div) {
        this.scroller.scrollTop = Math.max(0, div.offsetTop - 40);
        this.pinned = this.atLatest();
      } else {
        this.scrollToBottom();
      }
      this.updateJump();
    }
  }

  addPending(item) {
    const li = h(this.doc, 'li', { class: 'message own pending', dataset: { ref: item.ref } },
      h(this.doc, 'div', { class: 'msg-meta' },
        h(this.doc, 'span', { class: 'msg-user', text: str(this.self) }), ' ',
        h(this.doc, 'span', { class: 'msg-status', text: 'Waiting for connection…' })),
      h(this.doc, 'div', { class: 'msg-text' }, renderText(this.doc, item.text, { self: this.self })));
    this.outboxEl.append(li);
    this.outboxEl.hidden = false;
    this.setPendingState(item);
    this.scrollToBottom();
  }

  setPendingState(item) {
    const li = [...this.outboxEl.children].find((c) => c.dataset.ref === item.ref);
    const status = li?.querySelector('.msg-status');
    if (status) status.textContent = item.state === 'sent' ? 'Sending…' : 'Waiting for connection…';
  }

  removePending(ref) {
    [...this.outboxEl.children].find((c) => c.dataset.ref === ref)?.remove();
    this.outboxEl.hidden = this.outboxEl.children.length === 0;
  }

  showTyping(user) {
    user = str(user);
    if (user === '') return;
    clearTimeout(this.typers.get(user));
    this.typers.set(user, later(() => this.clearTyping(user), TYPING_MS));
    this.renderTyping();
  }

  clearTyping(user) {
    if (!this.typers.has(user)) return;
    clearTimeout(this.typers.get(user));
    this.typers.delete(user);
    this.renderTyping();
  }

  renderTyping() {
    const names = [...this.typers.keys()];
    this.typingEl.textContent = names.length === 0 ? ''
      : names.length === 1 ? `${names[0]} is typing…`
      : names.length <= 3 ? `${names.join(', ')} are typing…`
      : 'Several people are typing…';
  }

  destroy() {
    this.resizer?.disconnect();
    for (const t of this.typers.values()) clearTimeout(t);
    this.typers.clear();
    this.root.remove();
  }
}

