// SPDX-License-Identifier: LGPL-2.1-or-later
// chatview.js: the page's state: joined rooms and the sidebar, the open conversation, unread totals, notifications and the outbox.
//
// Protocol version 1 (every server) keeps joined rooms and read positions in
// this browser; version 2 (docs/protocol.md) has the server keep them per
// user. The same code serves both; `proto` says which one is in use.

import { h, later, str } from './dom.js';
import { RoomView, compareIds, errorText } from './render.js';

const TOAST_MS = 8000;
const MAX_REFS = 200;
const MAX_OUTBOX = 200;
// A send whose outcome is unknown is tried again, with its ref, this much later.
const RETRY_MS = 1000;
const READ_SEND_MS = 1000;
const ANNOUNCE_MS = 600;
const HISTORY_PAGE = 100;

function randomRef() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === 'function') return `q-${c.randomUUID()}`;
  return `q-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

export class ChatView {
  // els: joinedList, roomList, conversation, toasts, empty, live.
  // transport: send(obj) -> bool, loggedOut(), notify(title, body, room),
  // setTitle(unread, mentions), view(name) ("list" or "room", for phones).
  constructor(doc, els, transport) {
    this.doc = doc;
    this.els = els;
    this.transport = transport;
    this.self = null;
    this.store = null;
    this.proto = 1;
    this.rooms = [];
    this.views = new Map();
    this.pending = new Set();
    this.focusOnJoin = null;
    this.currentId = null;
    this.refs = new Map();
    this.refSeq = 0;
    this.outbox = [];
    this.connected = false;
    this.readTimers = new Map();
    this.announceTimer = null;
    this.announceQueue = [];
  }

  setSelf(session, store = null) {
    this.self = session && typeof session === 'object' ? session : null;
    this.store = store;
    for (const v of this.views.values()) v.self = this.self?.username ?? null;
  }

  get username() {
    return this.self ? this.self.username : null;
  }

  // Rooms this browser had open, shown at once (before the server answers) so the layout does not shift.
  restore() {
    if (!this.store) return;
    for (const id of this.store.joined()) if (!this.views.has(id)) this.openRoom(id, {});
    const cur = this.store.current();
    if (cur !== null && this.views.has(cur)) this.select(cur, { focus: false, show: false });
    else if (this.views.size > 0) this.select(this.views.keys().next().value, { focus: false, show: false });
    this.renderSidebar();
  }

  setConnected(v) {
    this.connected = v === true;
    if (this.connected) return;
    this.pending.clear();
    for (const view of this.views.values()) view.joined = false;
    for (const item of this.outbox) {
      if (item.state === 'sent') item.state = 'queued';
      this.views.get(item.room)?.setPendingState(item);
    }
    this.renderSidebar();
  }

  // Sends a command with a fresh ref remembered for matching replies and errors.
  command(cmd, room, extra = {}, ref = `r${++this.refSeq}`) {
    const obj = room === undefined ? { command: cmd, ...extra, ref } : { command: cmd, room, ...extra, ref };
    const ok = this.connected && this.transport.send(obj);
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

  // What a version 2 hello sends: the newest message this page has of each room.
  helloSince() {
    const since = {};
    for (const [id, v] of this.views) if (v.lastId !== null) since[id] = v.lastId;
    return since;
  }

  // Version 1: after (re)connecting, join every open room again and ask for what was missed.
  rejoinAll() {
    for (const [id, view] of this.views) {
      const extra = view.lastId !== null ? { since: view.lastId } : {};
      if (this.command('join', id, extra)) this.pending.add(id);
    }
    this.renderSidebar();
  }

  // Version 2: the server says which rooms are the user's; it joins them itself.
  onHello(ev) {
    this.proto = 2;
    const ids = Array.isArray(ev.rooms) ? ev.rooms.map(str).filter((x) => /^\d{1,20}$/.test(x)) : [];
    for (const id of [...this.views.keys()]) if (!ids.includes(id)) this.closeRoom(id);
    for (const id of ids) {
      if (!this.views.has(id)) this.openRoom(id, {});
      this.pending.add(id);
    }
    if (this.currentId === null && ids.length > 0) this.select(ids[0], { focus: false, show: false });
    this.saveJoined();
    this.renderSidebar();
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
    this.renderSidebar();
  }

  roomTitle(id) {
    const view = this.views.get(id);
    if (view && view.title !== id) return view.title;
    const r = this.rooms.find((x) => x.id === id);
    return r ? r.title : id;
  }

  // --- the sidebar -------------------------------------------------------

  renderSidebar() {
    this.renderJoined();
    this.renderBrowse();
    this.updateTotals();
  }

  renderJoined() {
    const doc = this.doc;
    const list = this.els.joinedList;
    const focused = doc.activeElement && list.contains(doc.activeElement) ? doc.activeElement.dataset.roomId : null;
    const items = [...this.views.values()].map((v) => {
      const btn = h(doc, 'button', { type: 'button', class: 'room-link', dataset: { roomId: v.id } },
        h(doc, 'span', { class: 'room-name', text: this.roomTitle(v.id) }),
        h(doc, 'span', { class: 'mention-mark', text: '@', 'aria-hidden': 'true', hidden: v.mentionCount === 0 }),
        h(doc, 'span', { class: 'unread-badge', 'aria-hidden': 'true', text: v.unread > 999 ? '999+' : String(v.unread), hidden: v.unread === 0 }));
      this.labelRoomButton(btn, v);
      btn.addEventListener('click', () => this.select(v.id, { focus: true, show: true }));
      return h(doc, 'li', {}, btn);
    });
    if (items.length === 0) items.push(h(doc, 'li', { class: 'room-list-empty', text: 'No rooms joined yet.' }));
    list.replaceChildren(...items);
    if (focused) list.querySelector(`button[data-room-id="${focused}"]`)?.focus();
  }

  labelRoomButton(btn, v) {
    const parts = [this.roomTitle(v.id)];
    if (v.unread > 0) parts.push(`${v.unread} unread`);
    if (v.mentionCount > 0) parts.push(`${v.mentionCount} ${v.mentionCount === 1 ? 'mention' : 'mentions'}`);
    if (this.pending.has(v.id) && !v.joined) parts.push('joining');
    btn.setAttribute('aria-label', parts.join(', '));
    if (v.id === this.currentId) btn.setAttribute('aria-current', 'true');
    else btn.removeAttribute('aria-current');
  }

  // Updates the badges in place (no re-render: focus and hover stay).
  updateBadges(view) {
    const btn = this.els.joinedList.querySelector(`button[data-room-id="${view.id}"]`);
    if (!btn) return this.renderJoined();
    btn.querySelector('.room-name').textContent = this.roomTitle(view.id);
    const badge = btn.querySelector('.unread-badge');
    badge.textContent = view.unread > 999 ? '999+' : String(view.unread);
    badge.hidden = view.unread === 0;
    btn.querySelector('.mention-mark').hidden = view.mentionCount === 0;
    this.labelRoomButton(btn, view);
    return undefined;
  }

  renderBrowse() {
    const doc = this.doc;
    const list = this.els.roomList;
    const focused = doc.activeElement && list.contains(doc.activeElement) ? doc.activeElement.dataset.roomId : null;
    const others = this.rooms.filter((r) => !this.views.has(r.id));
    const items = others.map((r) => {
      // Only staff may enter a staff-only room: the others see it, without a button that can only fail.
      if (r.staffOnly && !(this.self && this.self.staff)) {
        return h(doc, 'li', { class: 'browse-room staff-only' },
          h(doc, 'span', { class: 'room-name', text: r.title }),
          h(doc, 'span', { class: 'badge badge-staff', text: 'staff only' }));
      }
      const pending = this.pending.has(r.id);
      const btn = h(doc, 'button', {
        type: 'button', class: 'join-room', dataset: { roomId: r.id },
        'aria-label': `Join ${r.title}`, 'aria-busy': pending ? 'true' : undefined,
        text: pending ? 'Joining…' : 'Join',
      });
      btn.addEventListener('click', () => this.join(r.id));
      return h(doc, 'li', { class: r.staffOnly ? 'browse-room staff-only' : 'browse-room' },
        h(doc, 'span', { class: 'room-name', text: r.title }),
        r.staffOnly ? h(doc, 'span', { class: 'badge badge-staff', text: 'staff' }) : null,
        btn);
    });
    if (items.length === 0) {
      items.push(h(doc, 'li', { class: 'room-list-empty', text: this.rooms.length === 0 ? 'No rooms yet.' : 'You are in every room.' }));
    }
    list.replaceChildren(...items);
    if (focused) list.querySelector(`button[data-room-id="${focused}"]`)?.focus();
  }

  updateTotals() {
    let unread = 0;
    let men = 0;
    for (const v of this.views.values()) {
      unread += v.unread;
      men += v.mentionCount;
    }
    this.transport.setTitle?.(unread, men);
  }

  // --- rooms ---------------------------------------------------------------

  openRoom(id, ev) {
    const known = this.rooms.find((r) => r.id === id);
    const view = new RoomView(this.doc, {
      id,
      title: ev.title !== undefined ? ev.title : known ? known.title : id,
      staffOnly: ev.staff_only !== undefined ? ev.staff_only === true : known ? known.staffOnly : false,
      self: this.username,
      draft: this.store ? this.store.draft(id) : '',
      notifyAll: this.store ? this.store.notifyAll(id) : false,
    }, {
      send: (text) => this.send(id, text),
      edit: (mid, text) => this.command('edit', id, { id: mid, message: text }) || this.notConnected(),
      remove: (mid) => this.command('delete', id, { id: mid }) || this.notConnected(),
      leave: () => this.leave(id),
      typing: () => this.command('typing', id),
      history: (before) => this.command('history', id, before !== null ? { before, limit: HISTORY_PAGE } : { limit: HISTORY_PAGE }),
      members: (after) => this.command('members', id, after !== null ? { after } : {}),
      seen: () => this.seen(id),
      back: () => this.showList(id),
      toggleNotify: () => this.toggleNotify(id),
      draft: (text) => this.store?.setDraft(id, text),
    });
    if (this.store) view.readId = this.store.readMarker(id);
    this.views.set(id, view);
    this.els.conversation.append(view.root);
    this.updateEmpty();
    return view;
  }

  join(id) {
    id = str(id);
    if (this.views.has(id)) return this.select(id, { focus: true, show: true });
    if (this.pending.has(id)) return true;
    if (!this.command('join', id)) return this.notConnected();
    this.pending.add(id);
    this.focusOnJoin = id;
    this.renderBrowse();
    return true;
  }

  leave(id) {
    const order = [...this.views.keys()];
    const i = order.indexOf(id);
    this.command('leave', id);
    this.closeRoom(id);
    this.store?.setReadMarker(id, null);
    this.store?.setDraft(id, '');
    this.outbox = this.outbox.filter((x) => x.room !== id);
    const next = order[i + 1] ?? order[i - 1] ?? null;
    if (next !== null && this.views.has(next)) {
      this.select(next, { focus: false, show: false });
      this.els.joinedList.querySelector(`button[data-room-id="${next}"]`)?.focus();
    } else {
      this.els.roomList.querySelector('button')?.focus() ?? this.els.browseHeading?.focus();
      this.transport.view?.('list');
    }
    return true;
  }

  closeRoom(id, notice = null) {
    const view = this.views.get(id);
    this.pending.delete(id);
    clearTimeout(this.readTimers.get(id));
    this.readTimers.delete(id);
    if (view) {
      view.destroy();
      this.views.delete(id);
    }
    if (this.currentId === id) {
      this.currentId = null;
      this.store?.setCurrent(null);
    }
    if (notice) this.toast(notice, 'info');
    this.saveJoined();
    this.updateEmpty();
    this.renderSidebar();
  }

  saveJoined() {
    this.store?.setJoined([...this.views.keys()]);
  }

  updateEmpty() {
    if (this.els.empty) this.els.empty.hidden = this.currentId !== null;
  }

  // Opens one room's conversation; the others stay joined.
  select(id, { focus = true, show = true } = {}) {
    const view = this.views.get(id);
    if (!view) return false;
    if (this.currentId !== id) {
      this.views.get(this.currentId)?.setCurrent(false);
      this.currentId = id;
      this.store?.setCurrent(id);
      view.setCurrent(true);
    }
    this.updateEmpty();
    this.renderJoined();
    if (show) this.transport.view?.('room');
    if (focus) view.focusComposer();
    this.seen(id);
    return true;
  }

  showList(id) {
    this.transport.view?.('list');
    this.els.joinedList.querySelector(`button[data-room-id="${id}"]`)?.focus();
  }

  // Alt+↑/↓: the previous or next joined room.
  move(delta) {
    const order = [...this.views.keys()];
    if (order.length === 0) return false;
    const i = order.indexOf(this.currentId);
    const next = order[(i + delta + order.length) % order.length];
    return this.select(next, { focus: true, show: true });
  }

  toggleNotify(id) {
    const view = this.views.get(id);
    if (!view) return false;
    const on = !view.notifyAll;
    view.setNotifyAll(on);
    this.store?.setNotifyAll(id, on);
    if (on) this.transport.askNotify?.();
    return on;
  }

  // The reader has seen the newest message of the open room when the page is visible and it is scrolled to the end.
  seen(id) {
    const view = this.views.get(id);
    if (!view || !view.current || !view.joined) return;
    if (this.doc.visibilityState === 'hidden' || !view.atLatest()) return;
    const marker = view.markRead();
    if (marker === null) return;
    this.store?.setReadMarker(id, marker);
    if (this.proto === 2) this.sendRead(id);
    this.updateBadges(view);
    this.updateTotals();
  }

  sendRead(id) {
    if (this.readTimers.has(id)) return;
    this.readTimers.set(id, later(() => {
      this.readTimers.delete(id);
      const view = this.views.get(id);
      if (view && view.readId !== null) this.command('read', id, { id: view.readId });
    }, READ_SEND_MS));
  }

  seenCurrent() {
    if (this.currentId !== null) this.seen(this.currentId);
  }

  // --- the outbox --------------------------------------------------------

  // Every message goes through the outbox: sent at once when possible, else
  // when its room is joined again, always with the same ref.
  send(room, text) {
    if (this.outbox.length >= MAX_OUTBOX) {
      this.toast('Too many messages are waiting to be sent.', 'error');
      return false;
    }
    const item = { ref: randomRef(), room, text, state: 'queued' };
    this.outbox.push(item);
    this.views.get(room)?.addPending(item);
    this.trySend(item);
    return true;
  }

  trySend(item) {
    const view = this.views.get(item.room);
    if (!view || !view.joined || item.state === 'sent') return;
    if (this.command('send', item.room, { message: item.text }, item.ref)) {
      item.state = 'sent';
      view.setPendingState(item);
    }
  }

  flushOutbox(room) {
    for (const item of this.outbox) if (item.room === room) this.trySend(item);
  }

  settle(ref) {
    const i = this.outbox.findIndex((x) => x.ref === ref);
    if (i < 0) return null;
    const [item] = this.outbox.splice(i, 1);
    this.views.get(item.room)?.removePending(ref);
    return item;
  }

  // --- events ------------------------------------------------------------

  // Dispatch one server event. Unknown shapes are ignored, as the protocol asks.
  handleEvent(ev) {
    if (!ev || typeof ev !== 'object' || Array.isArray(ev)) return;
    if (ev.error !== undefined) return this.onError(ev);
    if (ev.hello !== undefined) return ev.hello === 2 ? this.onHello(ev) : undefined;
    if (ev.rooms !== undefined) return this.setRooms(ev.rooms);
    if (ev.join !== undefined) return this.onJoined(ev);
    if (ev.leave !== undefined) return this.onLeft(ev);
    if (ev.ok === true) return this.onAck(ev);
    if (ev.unread !== undefined) return this.onUnread(ev);
    if (ev.history !== undefined) return this.views.get(str(ev.room))?.applyHistory(ev);
    if (ev.deleted !== undefined) return this.onDeleted(ev);
    if (ev.members !== undefined) return this.views.get(str(ev.room))?.addMembersPage(ev);
    if (ev.member_count !== undefined) return this.views.get(str(ev.room))?.setMemberCount(ev.member_count);
    if (ev.typing !== undefined) {
      if (str(ev.typing) === this.username) return;
      return this.views.get(str(ev.room))?.showTyping(ev.typing);
    }
    if (ev.msg_type !== undefined) return this.onMessage(ev);
  }

  onJoined(ev) {
    const id = str(ev.join);
    const asked = this.pending.has(id);
    this.pending.delete(id);
    let view = this.views.get(id);
    if (!view) view = this.openRoom(id, ev);
    const counts = this.proto === 2 && typeof ev.unread === 'number'
      ? { read: typeof ev.read === 'string' ? ev.read : null, unread: ev.unread, mentions: typeof ev.mentions === 'number' ? ev.mentions : 0 }
      : null;
    view.applyJoin(ev, counts);
    if (!counts && view.readId !== null) this.store?.setReadMarker(id, view.readId);
    this.saveJoined();
    if (this.focusOnJoin === id) {
      this.focusOnJoin = null;
      this.select(id, { focus: true, show: true });
    } else if (this.currentId === null) {
      this.select(id, { focus: false, show: false });
    } else if (view.current) {
      view.setCurrent(true);
    }
    if (asked || view.joined) this.flushOutbox(id);
    this.renderSidebar();
    this.seen(id);
  }

  onLeft(ev) {
    const id = str(ev.leave);
    const title = this.roomTitle(id);
    const notice = ev.reason === 'deleted' ? `The room “${title}” was deleted.`
      : ev.reason === 'kicked' ? `You were removed from “${title}”.`
      : null;
    if (this.views.has(id) || this.pending.has(id)) this.closeRoom(id, notice);
    else if (notice) this.toast(notice, 'info');
    this.outbox = this.outbox.filter((x) => x.room !== id);
  }

  onAck(ev) {
    if (typeof ev.ref !== 'string') return;
    this.refs.delete(ev.ref);
    this.settle(ev.ref);
  }

  onUnread(ev) {
    const view = this.views.get(str(ev.unread));
    if (!view) return;
    if (typeof ev.read === 'string') view.readId = ev.read;
    if (typeof ev.count === 'number') view.unread = ev.count;
    if (typeof ev.mentions === 'number') view.mentionCount = ev.mentions;
    this.updateBadges(view);
    this.updateTotals();
  }

  onDeleted(ev) {
    const view = this.views.get(str(ev.room));
    if (!view) return;
    view.deleteMessage(ev.deleted);
    this.updateBadges(view);
    this.updateTotals();
  }

  onMessage(ev) {
    const id = str(ev.room);
    const view = this.views.get(id);
    if (!view) return;
    const entry = view.addEvent(ev, true);
    if (!entry || entry.kind !== 'message' || ev.own === true || ev.edited === true) {
      this.seen(id);
      return;
    }
    const visible = this.doc.visibilityState !== 'hidden';
    if (view.current && visible) this.announce(`${str(ev.username)}: ${str(ev.message)}`);
    if ((entry.mention || view.notifyAll) && !(view.current && visible && this.doc.hasFocus?.() !== false)) {
      const title = entry.mention ? `${str(ev.username)} mentioned you in ${view.title}` : `${str(ev.username)} in ${view.title}`;
      this.transport.notify?.(title, str(ev.message), id);
    }
    this.seen(id);
    this.updateBadges(view);
    this.updateTotals();
  }

  // The one live region: new messages of the open room, a burst read as a count.
  announce(text) {
    this.announceQueue.push(text);
    if (this.announceTimer !== null) return;
    this.announceTimer = later(() => {
      this.announceTimer = null;
      const q = this.announceQueue;
      this.announceQueue = [];
      const out = q.length === 1 ? q[0].slice(0, 300) : `${q.length} new messages`;
      if (this.els.live) this.els.live.textContent = out;
    }, ANNOUNCE_MS);
  }

  onError(ev) {
    const code = str(ev.error);
    if (code === 'USER_HAS_TO_LOGIN') {
      this.transport.loggedOut();
      return;
    }
    const ctx = typeof ev.ref === 'string' ? this.refs.get(ev.ref) : undefined;
    if (ctx) this.refs.delete(ev.ref);
    if (ctx && ctx.command === 'send' && (code === 'OUTCOME_UNKNOWN' || code === 'UNAVAILABLE')) {
      // Maybe stored, maybe not: the same ref again is stored at most once.
      // The message stays "sending…" until the server acknowledges it.
      const item = this.outbox.find((x) => x.ref === ev.ref);
      if (item) {
        item.state = 'queued';
        this.views.get(item.room)?.setPendingState(item);
        setTimeout(() => this.trySend(item), RETRY_MS);
        return;
      }
    }
    let text = errorText(code);
    if (ctx && ctx.command === 'join') {
      this.pending.delete(ctx.room);
      // A re-join refused after a reconnect: the room is gone or closed to us now.
      if (this.views.has(ctx.room)) this.closeRoom(ctx.room);
      this.renderSidebar();
    }
    if (ctx && ctx.command === 'history') this.views.get(ctx.room)?.applyHistory({ history: [], complete: true });
    if (ctx && ctx.command === 'members') this.views.get(ctx.room)?.addMembersPage({});
    if (ctx && ctx.command === 'send') {
      const item = this.settle(ev.ref);
      const view = this.views.get(ctx.room);
      // Give the unsent text back, unless the user has typed something new.
      if (item && view && view.input.value === '') view.input.value = item.text;
    }
    if (ctx && ctx.command === 'typing') return;
    if (ctx && ctx.room !== undefined) text = `${this.roomTitle(ctx.room)}: ${text}`;
    this.toast(text, 'error');
  }

  // Version 1: another tab of this browser joined or left rooms, or read some (localStorage changed there).
  syncFromStore() {
    if (!this.store || this.proto === 2) return;
    const ids = this.store.joined();
    for (const id of [...this.views.keys()]) {
      if (ids.includes(id) || this.pending.has(id)) continue;
      this.command('leave', id);
      this.closeRoom(id);
    }
    for (const id of ids) {
      if (this.views.has(id) || this.pending.has(id)) continue;
      if (this.command('join', id)) this.pending.add(id);
    }
    for (const [id, view] of this.views) {
      const marker = this.store.readMarker(id);
      if (marker === null || (view.readId !== null && compareIds(marker, view.readId) <= 0)) continue;
      view.readId = marker;
      view.recount();
      this.updateBadges(view);
    }
    this.updateTotals();
    this.renderBrowse();
  }

  toast(text, kind = 'info') {
    const doc = this.doc;
    // Errors are announced at once; other notices through the one live region.
    const li = h(doc, 'li', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : undefined },
      h(doc, 'span', { class: 'toast-text', text: str(text) }));
    const close = h(doc, 'button', { type: 'button', class: 'toast-close', 'aria-label': `Dismiss: ${str(text)}`, text: '×' });
    close.addEventListener('click', () => li.remove());
    li.append(' ', close);
    this.els.toasts.append(li);
    if (kind !== 'error') this.announce(str(text));
    while (this.els.toasts.children.length > 5) this.els.toasts.firstElementChild.remove();
    later(() => li.remove(), TOAST_MS);
    return li;
  }

  // Rooms for the Ctrl+K switcher: joined ones first, then the others, filtered by a query.
  switcherRooms(query) {
    const q = str(query).trim().toLowerCase();
    const joined = [...this.views.keys()].map((id) => ({ id, title: this.roomTitle(id), joined: true }));
    const others = this.rooms.filter((r) => !this.views.has(r.id)).map((r) => ({ id: r.id, title: r.title, joined: false }));
    return [...joined, ...others].filter((r) => q === '' || r.title.toLowerCase().includes(q));
  }
}

