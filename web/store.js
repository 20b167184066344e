// SPDX-License-Identifier: LGPL-2.1-or-later
// store.js: what the page remembers in the browser, per user: joined rooms, the open room, drafts, read positions, notification choices.
//
// localStorage is shared by every tab of this browser, so two tabs agree; it
// may be missing, full or refuse access (private modes): then the page still
// works and forgets on reload.

const PREFIX = 'multichat:';
const MAX_DRAFT = 16384;

export class Store {
  constructor(storage, username) {
    this.storage = storage;
    this.user = String(username);
  }

  key(name) {
    return `${PREFIX}${this.user}:${name}`;
  }

  get(name, fallback) {
    try {
      const raw = this.storage?.getItem(this.key(name));
      if (raw === null || raw === undefined) return fallback;
      const v = JSON.parse(raw);
      return v === null || typeof v !== typeof fallback || Array.isArray(v) !== Array.isArray(fallback) ? fallback : v;
    } catch {
      return fallback;
    }
  }

  set(name, value) {
    try {
      this.storage?.setItem(this.key(name), JSON.stringify(value));
      return true;
    } catch {
      return false;
    }
  }

  joined() {
    return this.get('rooms', []).filter((r) => typeof r === 'string' && /^\d{1,20}$/.test(r)).slice(0, 100);
  }

  setJoined(ids) {
    this.set('rooms', [...ids].slice(0, 100));
  }

  current() {
    const v = this.get('current', '');
    return /^\d{1,20}$/.test(v) ? v : null;
  }

  setCurrent(id) {
    this.set('current', id ?? '');
  }

  draft(room) {
    const d = this.get('drafts', {});
    return typeof d[room] === 'string' ? d[room] : '';
  }

  setDraft(room, text) {
    const d = this.get('drafts', {});
    if (text === '') delete d[room];
    else d[room] = String(text).slice(0, MAX_DRAFT);
    this.set('drafts', d);
  }

  readMarker(room) {
    const m = this.get('read', {});
    return typeof m[room] === 'string' ? m[room] : null;
  }

  setReadMarker(room, id) {
    const m = this.get('read', {});
    if (id === null) delete m[room];
    else m[room] = id;
    this.set('read', m);
  }

  notifyAll(room) {
    return this.get('notify', []).includes(room);
  }

  setNotifyAll(room, on) {
    const list = this.get('notify', []).filter((r) => r !== room);
    if (on) list.push(room);
    this.set('notify', list);
  }
}
