// SPDX-License-Identifier: LGPL-2.1-or-later
// render.js: turns protocol events into DOM; owns the room list, the room panes and the notices.
//
// Everything that came over the network reaches the DOM through textContent,
// Text nodes or setAttribute() of attribute names fixed here, never through
// innerHTML, so a username or message can never become markup. Every function
// takes the document it builds in, so node + jsdom can test it without a browser.

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
};

// How long transient things stay on screen.
const TOAST_MS = 8000;
const TYPING_MS = 4000;
const TYPING_SEND_MS = 3000;
const CONFIRM_MS = 4000;
// Bounds on what we keep per room and per connection, so a long-open tab stays small.
const MAX_MESSAGES = 500;
const MAX_REFS = 100;

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

function later(fn, ms) {
  const t = setTimeout(fn, ms);
  // Under node (tests) a pending timer must not keep the process alive.
  if (t && typeof t.unref === 'function') t.unref();
  return t;
}

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

function str(v) {
  return typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v);
}

function formatTime(doc, ts) {
  if (typeof ts !== 'number' || !Number.isFinite(ts)) return null;
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return null;
  const pad = (n) => String(n).padStart(2, '0');
  return h(doc, 'time', {
    class: 'msg-time',
    datetime: d.toISOString(),
    title: d.toLocaleString(),
    text: `${pad(d.getHours())}:${pad(d.getMinutes())}`,
  });
}

// One chat message (msg_type 0) as an <li>. actions.edit/remove, when given
// and the message is the reader's own, get buttons.
export function renderMessage(doc, msg, actions = null) {
  const own = msg.own === true;
  const li = h(doc, 'li', { class: own ? 'message own' : 'message' });
  if (msg.id !== undefined && msg.id !== null) li.dataset.id = str(msg.id);
  const meta = h(doc, 'div', { class: 'msg-meta' },
    h(doc, 'span', { class: 'msg-user', text: str(msg.username) }));
  if (own) meta.append(' ', h(doc, 'span', { class: 'msg-own-tag', text: 'you' }));
  const time = formatTime(doc, msg.ts);
  if (time) meta.append(' ', time);
  meta.append(' ', h(doc, 'span', { class: 'msg-edited', text: '(edited)', hidden: msg.edited !== true }));
  if (own && actions && li.dataset.id !== undefined) meta.append(renderMessageActions(doc, li, actions));
  li.append(meta, h(doc, 'div', { class: 'msg-text', text: str(msg.message) }));
  if (msg.edited === true) li.classList.add('edited');
  return li;
}

function renderMessageActions(doc, li, actions) {
  const box = h(doc, 'div', { class: 'msg-actions' });
  const edit = h(doc, 'button', { type: 'button', class: 'msg-edit', text: 'Edit' });
  const del = h(doc, 'button', { type: 'button', class: 'msg-delete', text: 'Delete' });
  edit.addEventListener('click', () => startEdit(doc, li, actions));
  let timer = null;
  // Two clicks to delete, without a blocking confirm() dialog.
  del.addEventListener('click', () => {
    if (del.classList.contains('confirming')) {
      clearTimeout(timer);
      actions.remove(li.dataset.id);
      return;
    }
    del.classList.add('confirming');
    del.textContent = 'Really delete?';
    timer = later(() => {
      del.classList.remove('confirming');
      del.textContent = 'Delete';
    }, CONFIRM_MS);
  });
  box.append(edit, ' ', del);
  return box;
}

function startEdit(doc, li, actions) {
  if (li.querySelector('.msg-edit-form')) return;
  const textEl = li.querySelector('.msg-text');
  const old = textEl.textContent;
  const input = h(doc, 'input', { type: 'text', class: 'msg-edit-input', 'aria-label': 'Edit message' });
  input.value = old;
  const form = h(doc, 'form', { class: 'msg-edit-form' }, input, ' ',
    h(doc, 'button', { type: 'submit', text: 'Save' }), ' ',
    h(doc, 'button', { type: 'button', class: 'msg-edit-cancel', text: 'Cancel' }));
  const done = () => {
    form.remove();
    textEl.hidden = false;
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const text = input.value;
    if (text.trim() !== '' && text !== old && !actions.edit(li.dataset.id, text)) return;
    done();
  });
  form.querySelector('.msg-edit-cancel').addEventListener('click', done);
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') done();
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
    if (kind === 'alert') li.setAttribute('role', 'alert');
    if (label) li.append(h(doc, 'strong', { class: 'notice-label', text: `${label}:` }), ' ');
    li.append(h(doc, 'span', { class: 'notice-text', text: str(msg.message) }));
  }
  if (msg.id !== undefined && msg.id !== null) li.dataset.id = str(msg.id);
  const time = formatTime(doc, msg.ts);
  if (time) li.append(' ', time);
  return li;
}

// One joined room: its pane, members, messages and send box.
export class RoomView {
  // actions: send(text) -> bool, edit(id, text) -> bool, remove(id) -> bool,
  // leave(), typing(); all already bound to this room.
  constructor(doc, { id, title, staffOnly = false }, actions) {
    this.doc = doc;
    this.id = str(id);
    this.actions = actions;
    this.byId = new Map();
    this.deleted = new Set();
    this.lastId = null;
    this.typers = new Map();
    this.lastTypingSent = 0;
    this.build();
    this.setTitle(title);
    this.setStaffOnly(staffOnly);
  }

  build() {
    const doc = this.doc;
    const headingId = `room-title-${Math.random().toString(36).slice(2)}`;
    this.titleEl = h(doc, 'h2', { class: 'room-title', id: headingId });
    this.staffEl = h(doc, 'span', { class: 'badge badge-staff', text: 'staff only', hidden: true });
    this.membersEl = h(doc, 'ul', { class: 'members', 'aria-label': 'Members' });
    this.messagesEl = h(doc, 'ol', { class: 'messages', 'aria-live': 'polite', 'aria-relevant': 'additions', tabindex: '0', 'aria-label': 'Messages' });
    this.typingEl = h(doc, 'p', { class: 'typing', 'aria-live': 'polite' });
    const inputId = `send-${headingId}`;
    this.input = h(doc, 'textarea', { id: inputId, class: 'send-input', name: 'message', rows: '1', autocomplete: 'off', placeholder: 'Write a message…' });
    this.form = h(doc, 'form', { class: 'send-form' },
      h(doc, 'label', { for: inputId, class: 'visually-hidden', text: 'Message' }),
      this.input,
      h(doc, 'button', { type: 'submit', class: 'send-button', text: 'Send' }));
    const close = h(doc, 'button', { type: 'button', class: 'room-leave', text: 'Leave', 'aria-label': 'Leave room' });
    close.addEventListener('click', () => this.actions.leave());
    this.root = h(doc, 'section', { class: 'room-pane', 'aria-labelledby': headingId, dataset: { roomId: this.id } },
      h(doc, 'header', { class: 'room-header' }, this.titleEl, ' ', this.staffEl, ' ', close),
      this.membersEl, this.messagesEl, this.typingEl, this.form);
    this.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.submit();
    });
    this.input.addEventListener('keydown', (e) => {
      // Enter sends; Shift+Enter is a new line; an IME composition is left alone.
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.submit();
      }
    });
    this.input.addEventListener('input', () => {
      const now = Date.now();
      if (this.input.value !== '' && now - this.lastTypingSent > TYPING_SEND_MS) {
        this.lastTypingSent = now;
        this.actions.typing();
      }
    });
  }

  submit() {
    const text = this.input.value;
    if (text.trim() === '') return;
    if (this.actions.send(text)) {
      this.input.value = '';
      this.lastTypingSent = 0;
    }
  }

  setTitle(title) {
    this.title = str(title) || this.id;
    this.titleEl.textContent = this.title;
  }

  setStaffOnly(v) {
    this.staffOnly = v === true;
    this.staffEl.hidden = !this.staffOnly;
    this.root.classList.toggle('staff-only', this.staffOnly);
  }

  setMembers(list) {
    this.membersEl.replaceChildren();
    if (!Array.isArray(list)) return;
    for (const u of [...new Set(list.map(str))].sort()) this.addMember(u);
  }

  memberEl(u) {
    for (const li of this.membersEl.children) if (li.textContent === u) return li;
    return null;
  }

  addMember(u) {
    u = str(u);
    if (u === '' || this.memberEl(u)) return;
    const li = h(this.doc, 'li', { class: 'member', text: u });
    const next = [...this.membersEl.children].find((c) => c.textContent > u);
    this.membersEl.insertBefore(li, next || null);
  }

  removeMember(u) {
    this.memberEl(str(u))?.remove();
  }

  // The join reply: title, flags, members and the (possibly replayed) history.
  applyJoin(ev) {
    if (ev.title !== undefined) this.setTitle(ev.title);
    if (ev.staff_only !== undefined) this.setStaffOnly(ev.staff_only);
    if (ev.members !== undefined) this.setMembers(ev.members);
    if (Array.isArray(ev.history)) {
      if (ev.complete === false && this.lastId !== null)
        this.addLocalNotice('Some messages were missed while you were away.');
      for (const m of ev.history) if (m && typeof m === 'object') this.addEvent(m, false);
    }
  }

  isNearBottom() {
    const el = this.messagesEl;
    return el.scrollHeight - el.scrollTop - el.clientHeight < 40;
  }

  scrollDown(force) {
    if (force) this.messagesEl.scrollTop = this.messagesEl.scrollHeight;
  }

  // A message or notice event; live=false for history (which must not change
  // the member list). Returns the new or updated <li>, or null if ignored.
  addEvent(msg, live = true) {
    const hasId = msg.id !== undefined && msg.id !== null && str(msg.id) !== '';
    const id = hasId ? str(msg.id) : null;
    if (hasId) {
      if (this.deleted.has(id)) return null;
      const known = this.byId.get(id);
      if (known) return msg.edited === true && msg.msg_type === MSG_MESSAGE ? this.applyEdit(known, msg) : null;
      // An edit of a message we never had (older than our window) is not news.
      if (msg.edited === true) return null;
    }
    const type = msg.msg_type === undefined ? MSG_MESSAGE : msg.msg_type;
    if (live && type === MSG_ENTER) this.addMember(msg.username);
    if (live && type === MSG_LEAVE) this.removeMember(msg.username);
    if (live && type === MSG_MESSAGE) this.clearTyping(str(msg.username));
    const li = type === MSG_MESSAGE
      ? renderMessage(this.doc, msg, {
        edit: (mid, text) => this.actions.edit(mid, text),
        remove: (mid) => this.actions.remove(mid),
      })
      : renderNotice(this.doc, msg);
    const stick = this.isNearBottom();
    this.insert(li, id);
    this.scrollDown(stick || msg.own === true);
    return li;
  }

  insert(li, id) {
    const list = this.messagesEl;
    if (id === null || this.lastId === null || compareIds(id, this.lastId) > 0) {
      list.append(li);
    } else {
      // Older than the newest we have: place it by id among the messages.
      let after = null;
      for (let c = list.lastElementChild; c; c = c.previousElementSibling) {
        if (c.dataset.id !== undefined && compareIds(c.dataset.id, id) < 0) {
          after = c;
          break;
        }
      }
      list.insertBefore(li, after ? after.nextSibling : list.firstChild);
    }
    if (id !== null) {
      this.byId.set(id, li);
      if (this.lastId === null || compareIds(id, this.lastId) > 0) this.lastId = id;
    }
    while (list.children.length > MAX_MESSAGES) {
      const old = list.firstElementChild;
      if (old.dataset.id !== undefined) this.byId.delete(old.dataset.id);
      old.remove();
    }
  }

  applyEdit(li, msg) {
    const textEl = li.querySelector('.msg-text');
    if (textEl) textEl.textContent = str(msg.message);
    li.classList.add('edited');
    const mark = li.querySelector('.msg-edited');
    if (mark) mark.hidden = false;
    return li;
  }

  deleteMessage(id) {
    id = str(id);
    this.deleted.add(id);
    const li = this.byId.get(id);
    if (!li) return false;
    this.byId.delete(id);
    li.replaceChildren(h(this.doc, 'span', { class: 'msg-deleted', text: 'message deleted' }));
    li.className = 'message deleted';
    return true;
  }

  addLocalNotice(text) {
    const li = renderNotice(this.doc, { msg_type: 'local', message: text });
    const stick = this.isNearBottom();
    this.messagesEl.append(li);
    this.scrollDown(stick);
    return li;
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
    for (const t of this.typers.values()) clearTimeout(t);
    this.typers.clear();
    this.root.remove();
  }
}

// The whole page: room list, panes, notices. transport.send(obj) -> bool
// sends one command; transport.loggedOut() leaves for the login page.
export class ChatView {
  constructor(doc, { roomList, panes, toasts, empty = null }, transport) {
    this.doc = doc;
    this.roomListEl = roomList;
    this.panesEl = panes;
    this.toastsEl = toasts;
    this.emptyEl = empty;
    this.transport = transport;
    this.self = null;
    this.rooms = [];
    this.views = new Map();
    this.pending = new Set();
    this.refs = new Map();
    this.refSeq = 0;
    this.connected = false;
  }

  setSelf(session) {
    this.self = session && typeof session === 'object' ? session : null;
  }

  setConnected(v) {
    this.connected = v === true;
    if (!this.connected) {
      this.pending.clear();
      this.renderRooms();
    }
  }

  roomTitle(id) {
    const view = this.views.get(id);
    if (view) return view.title;
    const r = this.rooms.find((x) => x.id === id);
    return r ? r.title : id;
  }

  // Sends a command with a fresh ref remembered for matching errors.
  command(cmd, room, extra = {}) {
    const ref = `r${++this.refSeq}`;
    const ok = this.transport.send({ command: cmd, room, ...extra, ref });
    if (ok) {
      this.refs.set(ref, { command: cmd, room, ...extra });
      if (this.refs.size > MAX_REFS) this.refs.delete(this.refs.keys().next().value);
    }
    return ok;
  }

  notConnected() {
    this.toast('Not connected. Reconnecting…', 'error');
    return false;
  }

  setRooms(list) {
    if (!Array.isArray(list)) return;
    this.rooms = list
      .filter((r) => r && typeof r === 'object' && r.id !== undefined && r.id !== null)
      .map((r) => ({ id: str(r.id), title: str(r.title) || str(r.id), staffOnly: r.staff_only === true }));
    for (const r of this.rooms) {
      const view = this.views.get(r.id);
      if (view) {
        view.setTitle(r.title);
        view.setStaffOnly(r.staffOnly);
      }
    }
    this.renderRooms();
  }

  renderRooms() {
    const doc = this.doc;
    const items = this.rooms.map((r) => {
      const joined = this.views.has(r.id);
      const pending = this.pending.has(r.id);
      const btn = h(doc, 'button', {
        type: 'button',
        class: `room${joined ? ' joined' : ''}${r.staffOnly ? ' staff-only' : ''}`,
        'aria-pressed': joined ? 'true' : 'false',
        'aria-busy': pending ? 'true' : undefined,
        dataset: { roomId: r.id },
        title: joined ? 'Leave this room' : 'Join this room',
      }, h(doc, 'span', { class: 'room-name', text: r.title }));
      if (r.staffOnly) btn.append(' ', h(doc, 'span', { class: 'badge badge-staff', text: 'staff' }));
      btn.addEventListener('click', () => this.toggle(r.id));
      return h(doc, 'li', {}, btn);
    });
    if (items.length === 0) items.push(h(doc, 'li', { class: 'room-list-empty', text: 'No rooms yet.' }));
    // Keep keyboard focus on the same room across a re-render.
    const focused = doc.activeElement && this.roomListEl.contains(doc.activeElement) ? doc.activeElement.dataset.roomId : null;
    this.roomListEl.replaceChildren(...items);
    if (focused !== null && focused !== undefined)
      [...this.roomListEl.querySelectorAll('button.room')].find((b) => b.dataset.roomId === focused)?.focus();
  }

  toggle(id) {
    if (this.views.has(id)) return this.leave(id);
    return this.join(id);
  }

  join(id) {
    if (this.pending.has(id)) return true;
    if (!this.connected || !this.command('join', id)) return this.notConnected();
    this.pending.add(id);
    this.focusOnJoin = id;
    this.renderRooms();
    return true;
  }

  leave(id) {
    if (this.connected) this.command('leave', id);
    this.closeRoom(id);
    return true;
  }

  // After a reconnect: join every open room again and ask for what we missed.
  rejoinAll() {
    for (const [id, view] of this.views) {
      const extra = view.lastId !== null ? { since: view.lastId } : {};
      if (this.command('join', id, extra)) this.pending.add(id);
    }
    this.renderRooms();
  }

  closeRoom(id, notice = null) {
    const view = this.views.get(id);
    this.pending.delete(id);
    if (view) {
      view.destroy();
      this.views.delete(id);
    }
    if (notice) this.toast(notice, 'info');
    this.updateEmpty();
    this.renderRooms();
  }

  updateEmpty() {
    if (this.emptyEl) this.emptyEl.hidden = this.views.size > 0;
  }

  openRoom(id, ev) {
    const known = this.rooms.find((r) => r.id === id);
    const view = new RoomView(this.doc, {
      id,
      title: ev.title !== undefined ? ev.title : known ? known.title : id,
      staffOnly: ev.staff_only !== undefined ? ev.staff_only === true : known ? known.staffOnly : false,
    }, {
      send: (text) => (this.connected ? this.command('send', id, { message: text }) : false) || this.notConnected(),
      edit: (mid, text) => (this.connected ? this.command('edit', id, { id: mid, message: text }) : false) || this.notConnected(),
      remove: (mid) => (this.connected ? this.command('delete', id, { id: mid }) : false) || this.notConnected(),
      leave: () => this.leave(id),
      typing: () => this.connected && this.command('typing', id),
    });
    this.views.set(id, view);
    this.panesEl.append(view.root);
    this.updateEmpty();
    return view;
  }

  // Dispatch one server event. Unknown shapes are ignored, as the protocol asks.
  handleEvent(ev) {
    if (!ev || typeof ev !== 'object' || Array.isArray(ev)) return;
    if (ev.error !== undefined) return this.onError(ev);
    if (ev.rooms !== undefined) return this.setRooms(ev.rooms);
    if (ev.join !== undefined) return this.onJoined(ev);
    if (ev.leave !== undefined) return this.onLeft(ev);
    if (ev.deleted !== undefined) return this.views.get(str(ev.room))?.deleteMessage(ev.deleted);
    if (ev.typing !== undefined) {
      if (this.self && str(ev.typing) === this.self.username) return;
      return this.views.get(str(ev.room))?.showTyping(ev.typing);
    }
    if (ev.msg_type !== undefined) return this.views.get(str(ev.room))?.addEvent(ev, true);
  }

  onJoined(ev) {
    const id = str(ev.join);
    this.pending.delete(id);
    let view = this.views.get(id);
    const fresh = !view;
    if (fresh) view = this.openRoom(id, ev);
    view.applyJoin(ev);
    if (fresh) view.scrollDown(true);
    if (this.focusOnJoin === id) {
      this.focusOnJoin = null;
      view.input.focus();
    }
    this.renderRooms();
  }

  onLeft(ev) {
    const id = str(ev.leave);
    const title = this.roomTitle(id);
    const notice = ev.reason === 'deleted' ? `The room “${title}” was deleted.`
      : ev.reason === 'kicked' ? `You were removed from “${title}”.`
      : null;
    if (this.views.has(id) || this.pending.has(id)) this.closeRoom(id, notice);
    else if (notice) this.toast(notice, 'info');
  }

  onError(ev) {
    const code = str(ev.error);
    if (code === 'USER_HAS_TO_LOGIN') {
      this.transport.loggedOut();
      return;
    }
    const ctx = typeof ev.ref === 'string' ? this.refs.get(ev.ref) : undefined;
    if (ctx) this.refs.delete(ev.ref);
    let text = errorText(code);
    if (ctx && ctx.command === 'join') {
      this.pending.delete(ctx.room);
      // A re-join refused after a reconnect: the room is gone or closed to us now.
      if (this.views.has(ctx.room)) this.closeRoom(ctx.room);
      this.renderRooms();
    }
    if (ctx && ctx.command === 'send') {
      const view = this.views.get(ctx.room);
      // Give the unsent text back, unless the user has typed something new.
      if (view && view.input.value === '') view.input.value = ctx.message;
    }
    if (ctx && ctx.room !== undefined) text = `${this.roomTitle(ctx.room)}: ${text}`;
    this.toast(text, 'error');
  }

  toast(text, kind = 'info') {
    const doc = this.doc;
    const li = h(doc, 'li', { class: `toast toast-${kind}` },
      h(doc, 'span', { class: 'toast-text', text: str(text) }));
    const close = h(doc, 'button', { type: 'button', class: 'toast-close', 'aria-label': 'Dismiss', text: '×' });
    close.addEventListener('click', () => li.remove());
    li.append(' ', close);
    this.toastsEl.append(li);
    while (this.toastsEl.children.length > 5) this.toastsEl.firstElementChild.remove();
    later(() => li.remove(), TOAST_MS);
    return li;
  }
}
