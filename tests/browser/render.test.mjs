// SPDX-License-Identifier: LGPL-2.1-or-later
// render.test.mjs: unit tests of web/render.js (and static checks of the web files) under node:test + jsdom.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { JSDOM } from 'jsdom';
import {
  ChatView, RoomView, backoffDelay, compareIds, errorText, renderMessage, renderNotice,
} from '../../web/render.js';

const WEB = fileURLToPath(new URL('../../web/', import.meta.url));
const XSS = '<img src=x onerror=alert(1)>';

function newDoc() {
  return new JSDOM('<!DOCTYPE html><body><ul id="rooms"></ul><main id="panes"><p id="empty"></p></main><ul id="toasts"></ul></body>').window.document;
}

// A ChatView over a fake transport that records the commands it sends.
function newChat({ connected = true, username = 'alice' } = {}) {
  const doc = newDoc();
  const sent = [];
  const state = { loggedOut: 0, up: connected };
  const chat = new ChatView(doc, {
    roomList: doc.getElementById('rooms'),
    panes: doc.getElementById('panes'),
    toasts: doc.getElementById('toasts'),
    empty: doc.getElementById('empty'),
  }, {
    send(obj) {
      if (!state.up) return false;
      sent.push(obj);
      return true;
    },
    loggedOut() {
      state.loggedOut++;
    },
  });
  chat.setSelf({ username, staff: false });
  chat.setConnected(connected);
  return { doc, chat, sent, state };
}

const msg = (id, extra = {}) => ({ msg_type: 0, room: '1', username: 'bob', message: `m${id}`, id: String(id), ts: 1700000000000, ...extra });
const ids = (view) => [...view.messagesEl.children].map((li) => li.dataset.id);
const texts = (view) => [...view.messagesEl.querySelectorAll('.msg-text')].map((e) => e.textContent);

function joined(t, { id = '1', title = 'Lobby', history = [], ...rest } = {}) {
  t.chat.handleEvent({ join: id, title, staff_only: false, members: ['alice', 'bob'], history, ...rest });
  return t.chat.views.get(id);
}

test('a message with markup in username and text stays text', () => {
  const doc = newDoc();
  const li = renderMessage(doc, { msg_type: 0, room: '1', username: XSS, message: XSS, id: '1', ts: 1 });
  assert.equal(li.querySelector('img'), null);
  assert.equal(li.querySelector('.msg-user').textContent, XSS);
  assert.equal(li.querySelector('.msg-text').textContent, XSS);
});

test('room titles with markup stay text, in the list and in the pane', () => {
  const t = newChat();
  t.chat.handleEvent({ rooms: [{ id: '1', title: XSS, staff_only: true }, { id: '2', title: 'Lobby', staff_only: false }] });
  const list = t.doc.getElementById('rooms');
  assert.equal(list.querySelector('img'), null);
  assert.deepEqual([...list.querySelectorAll('.room-name')].map((e) => e.textContent), [XSS, 'Lobby']);
  // Staff-only rooms are marked in the list.
  assert.ok(list.querySelector('button[data-room-id="1"]').classList.contains('staff-only'));
  assert.ok(list.querySelector('button[data-room-id="1"] .badge-staff'));
  assert.equal(list.querySelector('button[data-room-id="2"] .badge-staff'), null);

  joined(t, { id: '1', title: XSS, staff_only: true, members: [XSS] });
  const pane = t.doc.querySelector('.room-pane[data-room-id="1"]');
  assert.equal(pane.querySelector('img'), null);
  assert.equal(pane.querySelector('.room-title').textContent, XSS);
  assert.equal(pane.querySelector('.member').textContent, XSS);
  assert.equal(pane.querySelector('.badge-staff').hidden, false);
  assert.ok(pane.classList.contains('staff-only'));
});

test('notices with markup stay text and carry their kind', () => {
  const t = newChat();
  const view = joined(t);
  const kinds = { 1: 'notice-warning', 2: 'notice-alert', 3: 'notice-muted' };
  for (const type of [1, 2, 3]) {
    const li = view.addEvent({ msg_type: type, room: '1', message: XSS });
    assert.ok(li.classList.contains(kinds[type]), `msg_type ${type}`);
    assert.equal(li.querySelector('.notice-text').textContent, XSS);
  }
  const enter = view.addEvent({ msg_type: 4, room: '1', username: XSS });
  assert.ok(enter.classList.contains('notice-enter'));
  assert.equal(enter.querySelector('.msg-user').textContent, XSS);
  assert.ok(view.memberEl(XSS), 'entering user is listed as a member');
  const leave = view.addEvent({ msg_type: 5, room: '1', username: XSS });
  assert.ok(leave.classList.contains('notice-leave'));
  assert.equal(view.memberEl(XSS), null, 'leaving user is no longer a member');
  t.chat.handleEvent({ typing: XSS, room: '1' });
  assert.equal(view.typingEl.textContent, `${XSS} is typing…`);
  assert.equal(view.root.querySelector('img'), null);
  assert.equal(renderNotice(t.doc, { msg_type: 9, message: XSS }).querySelector('img'), null);
});

test('error codes with markup stay text and never use alert()', () => {
  const t = newChat();
  t.doc.defaultView.alert = () => assert.fail('alert() called');
  t.chat.handleEvent({ error: XSS });
  t.chat.handleEvent({ error: 'ROOM_INVALID' });
  const toasts = t.doc.getElementById('toasts');
  assert.equal(toasts.querySelector('img'), null);
  const shown = [...toasts.querySelectorAll('.toast-text')].map((e) => e.textContent);
  assert.deepEqual(shown, [`Error: ${XSS}`, errorText('ROOM_INVALID')]);
  assert.equal(errorText('toString'), 'Error: toString');
});

test('own messages are marked and get edit/delete; others are not', () => {
  const t = newChat();
  const view = joined(t);
  const mine = view.addEvent(msg(1, { username: 'alice', own: true }));
  const theirs = view.addEvent(msg(2));
  const fake = view.addEvent(msg(3, { own: 'true' }));
  assert.ok(mine.classList.contains('own'));
  assert.ok(mine.querySelector('.msg-own-tag'));
  assert.ok(mine.querySelector('button.msg-edit') && mine.querySelector('button.msg-delete'));
  for (const li of [theirs, fake]) {
    assert.ok(!li.classList.contains('own'));
    assert.equal(li.querySelector('.msg-own-tag'), null);
    assert.equal(li.querySelector('button'), null);
  }
});

test('history on join is shown in order, and a replay after reconnect merges without duplicates', () => {
  const t = newChat();
  const view = joined(t, { history: [msg('1000-0'), msg('1000-1'), msg('1001-0')] });
  assert.deepEqual(ids(view), ['1000-0', '1000-1', '1001-0']);
  view.addEvent(msg('1002-0'));
  assert.equal(view.lastId, '1002-0');

  // Connection drops; on reconnect the page re-joins with since = last id seen.
  t.chat.setConnected(false);
  t.chat.setConnected(true);
  t.sent.length = 0;
  t.chat.rejoinAll();
  assert.equal(t.sent.length, 1);
  assert.equal(t.sent[0].command, 'join');
  assert.equal(t.sent[0].room, '1');
  assert.equal(t.sent[0].since, '1002-0');
  assert.equal(typeof t.sent[0].ref, 'string');

  // The server replays overlapping history; the pane is kept, not rebuilt.
  joined(t, { history: [msg('1001-0'), msg('1002-0'), msg('1003-0'), msg('1003-0'), msg('1004-0')] });
  assert.equal(t.chat.views.get('1'), view);
  assert.equal(t.doc.querySelectorAll('.room-pane').length, 1);
  assert.deepEqual(ids(view), ['1000-0', '1000-1', '1001-0', '1002-0', '1003-0', '1004-0']);
  assert.equal(view.lastId, '1004-0');
  assert.equal(t.sent.filter((c) => c.command === 'join').length, 1);
});

test('a gap larger than the server keeps is announced', () => {
  const t = newChat();
  const view = joined(t, { history: [msg('5-0')] });
  joined(t, { history: [msg('90-0')], complete: false });
  assert.ok([...view.messagesEl.querySelectorAll('.notice-local')].length === 1);
  assert.deepEqual(ids(view).filter(Boolean), ['5-0', '90-0']);
});

test('message ids order numerically, stream ids by both parts', () => {
  assert.ok(compareIds('999-0', '1000-0') < 0);
  assert.ok(compareIds('1000-10', '1000-9') > 0);
  assert.ok(compareIds('9', '10') < 0);
  assert.equal(compareIds('1000-1', '1000-1'), 0);
  assert.ok(compareIds('18446744073709551615-0', '18446744073709551616-0') < 0);
  const t = newChat();
  const view = joined(t);
  for (const id of ['10-0', '30-0', '20-0', '5-0', '30-0']) view.addEvent(msg(id));
  assert.deepEqual(ids(view), ['5-0', '10-0', '20-0', '30-0']);
});

test('an edit re-sent with the same id updates the message in place', () => {
  const t = newChat();
  const view = joined(t, { history: [msg(1), msg(2)] });
  t.chat.handleEvent(msg(1, { message: `new ${XSS}`, edited: true }));
  assert.deepEqual(texts(view), [`new ${XSS}`, 'm2']);
  const li = view.byId.get('1');
  assert.ok(li.classList.contains('edited'));
  assert.equal(li.querySelector('.msg-edited').hidden, false);
  assert.equal(view.byId.get('2').querySelector('.msg-edited').hidden, true);
  assert.equal(li.querySelector('img'), null);
  // A plain duplicate does not undo it; an edit of a message we never had is ignored.
  t.chat.handleEvent(msg(1));
  t.chat.handleEvent(msg(0, { edited: true }));
  assert.deepEqual(texts(view), [`new ${XSS}`, 'm2']);
  // Events for rooms we are not in are ignored.
  t.chat.handleEvent(msg(7, { room: '2' }));
  assert.equal(ids(view).length, 2);
});

test('a deletion replaces the message, and a later replay does not bring it back', () => {
  const t = newChat();
  const view = joined(t, { history: [msg(1), msg(2)] });
  t.chat.handleEvent({ deleted: '1', room: '1' });
  const li = view.messagesEl.firstElementChild;
  assert.ok(li.classList.contains('deleted'));
  assert.equal(li.querySelector('.msg-text'), null);
  assert.ok(!li.textContent.includes('m1'));
  joined(t, { history: [msg(1), msg(2), msg(3)] });
  assert.deepEqual(texts(view), ['m2', 'm3']);
  assert.equal(view.messagesEl.children.length, 3);
});

test('edit and delete buttons send commands for their own message', () => {
  const t = newChat();
  const view = joined(t);
  const li = view.addEvent(msg('7-0', { username: 'alice', own: true }));
  li.querySelector('.msg-edit').click();
  const input = li.querySelector('.msg-edit-input');
  assert.equal(input.value, 'm7-0');
  input.value = 'changed';
  li.querySelector('.msg-edit-form').dispatchEvent(new t.doc.defaultView.Event('submit', { cancelable: true }));
  assert.equal(li.querySelector('.msg-edit-form'), null);
  const del = li.querySelector('.msg-delete');
  del.click();
  assert.equal(t.sent.filter((c) => c.command === 'delete').length, 0, 'first click only asks to confirm');
  del.click();
  const cmds = t.sent.filter((c) => c.command === 'edit' || c.command === 'delete');
  assert.deepEqual(cmds.map(({ ref, ...c }) => c), [
    { command: 'edit', room: '1', id: '7-0', message: 'changed' },
    { command: 'delete', room: '1', id: '7-0' },
  ]);
});

test('Enter sends, Shift+Enter does not, empty messages are not sent', () => {
  const t = newChat();
  const view = joined(t);
  const KeyboardEvent = t.doc.defaultView.KeyboardEvent;
  const key = (opts) => view.input.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true, cancelable: true, ...opts }));
  view.input.value = '   ';
  key({});
  view.input.value = 'line one';
  key({ shiftKey: true });
  assert.equal(t.sent.filter((c) => c.command === 'send').length, 0);
  key({});
  assert.deepEqual(t.sent.filter((c) => c.command === 'send').map(({ ref, ...c }) => c), [{ command: 'send', room: '1', message: 'line one' }]);
  assert.equal(view.input.value, '');
});

test('a refused send gives the text back and names the room', () => {
  const t = newChat();
  const view = joined(t);
  view.input.value = 'x'.repeat(10);
  view.submit();
  const ref = t.sent.at(-1).ref;
  t.chat.handleEvent({ error: 'MESSAGE_TOO_LONG', ref });
  assert.equal(view.input.value, 'x'.repeat(10));
  assert.equal(t.doc.querySelector('.toast-text').textContent, `Lobby: ${errorText('MESSAGE_TOO_LONG')}`);
});

test('clicking a room joins it, clicking again leaves; offline clicks only warn', () => {
  const t = newChat();
  t.chat.handleEvent({ rooms: [{ id: '1', title: 'Lobby', staff_only: false }] });
  const button = () => t.doc.querySelector('#rooms button[data-room-id="1"]');
  button().click();
  assert.deepEqual(t.sent.map(({ ref, ...c }) => c), [{ command: 'join', room: '1' }]);
  assert.equal(button().getAttribute('aria-busy'), 'true');
  joined(t);
  assert.equal(button().getAttribute('aria-pressed'), 'true');
  assert.equal(t.doc.getElementById('empty').hidden, true);
  button().click();
  assert.deepEqual(t.sent.at(-1).command, 'leave');
  assert.equal(t.doc.querySelector('.room-pane'), null);
  assert.equal(button().getAttribute('aria-pressed'), 'false');
  assert.equal(t.doc.getElementById('empty').hidden, false);

  t.state.up = false;
  t.chat.setConnected(false);
  const before = t.sent.length;
  button().click();
  assert.equal(t.sent.length, before);
  assert.equal(t.doc.querySelector('.room-pane'), null);
  assert.ok(t.doc.querySelector('.toast-error'));
});

test('a refused join clears the pending mark; a refused re-join closes the pane', () => {
  const t = newChat();
  t.chat.handleEvent({ rooms: [{ id: '1', title: 'Lobby' }, { id: '2', title: 'Staff', staff_only: true }] });
  t.chat.join('2');
  t.chat.handleEvent({ error: 'ROOM_ACCESS_DENIED', ref: t.sent.at(-1).ref });
  assert.equal(t.chat.pending.size, 0);
  assert.equal(t.doc.querySelector('#rooms button[data-room-id="2"]').getAttribute('aria-busy'), null);

  joined(t);
  t.chat.rejoinAll();
  t.chat.handleEvent({ error: 'ROOM_INVALID', ref: t.sent.at(-1).ref });
  assert.equal(t.chat.views.size, 0);
  assert.equal(t.doc.querySelector('.room-pane'), null);
});

test('a kick or a deleted room closes the pane with a notice', () => {
  for (const [reason, words] of [['kicked', 'removed from'], ['deleted', 'was deleted']]) {
    const t = newChat();
    joined(t, { title: XSS });
    t.chat.handleEvent({ leave: '1', reason });
    assert.equal(t.doc.querySelector('.room-pane'), null);
    const toast = t.doc.querySelector('.toast-text').textContent;
    assert.ok(toast.includes(words) && toast.includes(XSS), toast);
    assert.equal(t.doc.querySelector('img'), null);
  }
});

test('USER_HAS_TO_LOGIN goes to the login page', () => {
  const t = newChat();
  t.chat.handleEvent({ error: 'USER_HAS_TO_LOGIN' });
  assert.equal(t.state.loggedOut, 1);
});

test('unknown or malformed events are ignored', () => {
  const t = newChat();
  const view = joined(t);
  for (const ev of [null, 42, 'x', [], {}, { something: 1 }, { rooms: 'no' }, { deleted: '9', room: '1' }, { typing: 'alice', room: '1' }])
    t.chat.handleEvent(ev);
  assert.equal(view.messagesEl.children.length, 0);
  assert.equal(view.typingEl.textContent, '', 'own typing is not shown');
});

test('reconnect backoff doubles from 0.5 s to 10 s with jitter', () => {
  assert.equal(backoffDelay(0, () => 0), 250);
  assert.equal(backoffDelay(0, () => 1), 500);
  assert.equal(backoffDelay(1, () => 1), 1000);
  assert.equal(backoffDelay(4, () => 1), 8000);
  assert.equal(backoffDelay(5, () => 1), 10000);
  assert.equal(backoffDelay(1000, () => 1), 10000);
  assert.equal(backoffDelay(1000, () => 0), 5000);
  for (let i = 0; i < 50; i++) {
    const d = backoffDelay(i);
    assert.ok(d >= 250 && d <= 10000, String(d));
  }
});

test('web files: no HTML injection sinks, no inline script or style', () => {
  for (const f of ['render.js', 'chat.js']) {
    // Comments may name the sinks they avoid.
    const src = fs.readFileSync(WEB + f, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
    for (const sink of ['innerHTML', 'outerHTML', 'insertAdjacentHTML', 'document.write', 'eval(', 'new Function', '.style', 'setAttribute(\'on', 'alert('])
      assert.ok(!src.includes(sink), `${f} uses ${sink}`);
  }
  for (const f of ['index.html', 'login.html']) {
    const doc = new JSDOM(fs.readFileSync(WEB + f, 'utf8')).window.document;
    for (const s of doc.querySelectorAll('script')) assert.ok(s.src && s.textContent.trim() === '', `${f}: inline script`);
    assert.equal(doc.querySelectorAll('style, [style]').length, 0, `${f}: inline style`);
    for (const e of doc.querySelectorAll('*'))
      for (const a of e.attributes) assert.ok(!a.name.startsWith('on'), `${f}: inline handler ${a.name}`);
  }
});

test('index.html has what chat.js and the browser test use', () => {
  const doc = new JSDOM(fs.readFileSync(WEB + 'index.html', 'utf8')).window.document;
  for (const id of ['room-list', 'panes', 'panes-empty', 'toasts', 'whoami', 'connection-status', 'logout-form', 'logout-csrf'])
    assert.ok(doc.getElementById(id), `#${id}`);
  const form = doc.getElementById('logout-form');
  assert.equal(form.getAttribute('method'), 'post');
  assert.equal(form.getAttribute('action'), '/logout');
  assert.equal(doc.getElementById('logout-csrf').getAttribute('name'), 'csrf');
  const script = doc.querySelector('script');
  assert.equal(script.getAttribute('type'), 'module');
  assert.equal(script.getAttribute('src'), '/static/chat.js');
  const srcs = fs.readFileSync(WEB + 'chat.js', 'utf8');
  for (const id of srcs.matchAll(/\$\('([^']+)'\)/g)) assert.ok(doc.getElementById(id[1]), `chat.js uses missing #${id[1]}`);
});

test('login.html is a template with each placeholder once, in a POST form to /login', () => {
  const src = fs.readFileSync(WEB + 'login.html', 'utf8');
  for (const p of ['@CSRF@', '@NEXT@', '@ERROR@']) assert.equal(src.split(p).length - 1, 1, p);
  const doc = new JSDOM(src).window.document;
  const form = doc.querySelector('form');
  assert.equal(form.getAttribute('method'), 'post');
  assert.equal(form.getAttribute('action'), '/login');
  assert.equal(form.querySelector('input[name="csrf"]').getAttribute('value'), '@CSRF@');
  assert.equal(form.querySelector('input[name="next"]').getAttribute('value'), '@NEXT@');
  assert.equal(doc.querySelector('.login-error').textContent, '@ERROR@');
  for (const name of ['username', 'password']) {
    const input = form.querySelector(`input[name="${name}"]`);
    assert.ok(input && doc.querySelector(`label[for="${input.id}"]`), `${name} has a label`);
  }
  assert.equal(form.querySelector('input[name="password"]').type, 'password');
  assert.equal(doc.querySelectorAll('script').length, 0);
});
