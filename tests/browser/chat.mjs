#!/usr/bin/env node
// SPDX-License-Identifier: LGPL-2.1-or-later
// chat.mjs: the chat page end to end in Debian's chromium: two users, rooms that stay joined, unread counts, mentions and notifications, formatting, editing, history, offline sending, keyboard, phone size and axe.
//
// node tests/browser/chat.mjs --url http://127.0.0.1:PORT --user alice:alice-pw --user bob:bob-pw
//      [--big N] [--screenshots DIR] [--chromium /usr/lib/chromium/chromium]
// The server must have rooms "Lobby", "Random" and "Big" (Big filled with
// "big 1" .. "big N"). Exits 0 on success, 1 on failure (with the failed
// step), 77 when no chromium is installed.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const XSS = '<img src=x onerror=alert(1)>';
const RUN_LIMIT_MS = 340000;
const STEP_MS = 20000;
const EXIT_SKIP = 77;
const DESKTOP = { width: 1366, height: 768 };
const PHONE = { width: 390, height: 844 };
// The DOM holds a window of a room: WINDOW + PAGE messages, plus separators.
const DOM_BOUND = 260;

function usage(msg) {
  console.error(`chat.mjs: ${msg}`);
  console.error('usage: node chat.mjs --url URL --user NAME:PASSWORD --user NAME:PASSWORD [--big N] [--screenshots DIR] [--chromium PATH]');
  process.exit(2);
}

function parseCli() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        url: { type: 'string' },
        user: { type: 'string', multiple: true, default: [] },
        big: { type: 'string', default: '10000' },
        screenshots: { type: 'string' },
        chromium: { type: 'string' },
      },
    }));
  } catch (e) {
    usage(e.message);
  }
  if (!values.url) usage('--url is required');
  if (values.user.length !== 2) usage('exactly two --user NAME:PASSWORD are required');
  const users = values.user.map((u) => {
    const i = u.indexOf(':');
    if (i <= 0) usage(`--user ${u}: expected NAME:PASSWORD`);
    return { name: u.slice(0, i), password: u.slice(i + 1) };
  });
  const big = Number.parseInt(values.big, 10);
  if (!(big > 0)) usage('--big must be a positive number');
  return { url: values.url.replace(/\/+$/, ''), users, big, screenshots: values.screenshots, chromium: values.chromium };
}

function findChromium(explicit) {
  const candidates = [explicit, process.env.CHROMIUM, '/usr/lib/chromium/chromium', '/usr/bin/chromium'].filter(Boolean);
  return candidates.find((p) => {
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const exact = (s) => new RegExp(`^${escapeRe(s)}$`);

class StepError extends Error {}

let step = 'start';
const measured = [];
async function run(label, fn) {
  step = label;
  try {
    return await fn();
  } catch (e) {
    if (e instanceof StepError) throw e;
    throw new StepError(`${label}: ${e.message.split('\n')[0]}`);
  }
}

function check(cond, msg) {
  if (!cond) throw new StepError(`${step}: ${msg}`);
}

// Records what the page asks of the Notification API (the real one, still called).
function notificationSpy() {
  const Real = window.Notification;
  window.__notes = [];
  if (typeof Real !== 'function') return;
  function Spy(title, opts) {
    window.__notes.push({ title, body: opts && opts.body });
    return new Real(title, opts);
  }
  Object.defineProperty(Spy, 'permission', { get: () => Real.permission });
  Spy.requestPermission = (...a) => Real.requestPermission(...a);
  Spy.prototype = Real.prototype;
  window.Notification = Spy;
}

// A browser context ("device") of a user, with its WebSocket routed through
// the test so the network can be cut (offline) and given back.
async function newDevice(browser, user, all, { viewport = DESKTOP, mobile = false } = {}) {
  const ctx = await browser.newContext({ viewport, isMobile: mobile, hasTouch: mobile, deviceScaleFactor: 1 });
  ctx.setDefaultTimeout(STEP_MS);
  await ctx.grantPermissions(['notifications']);
  await ctx.addInitScript(notificationSpy);
  const dev = { ...user, ctx, pages: [], errors: [], dialogs: [], blocked: false, sockets: new Set() };
  await ctx.routeWebSocket(/\/chat\/stream\/$/, (ws) => {
    if (dev.blocked) {
      ws.close({ code: 4002, reason: 'network down (test)' });
      return;
    }
    ws.connectToServer();
    dev.sockets.add(ws);
  });
  all.push(dev);
  return dev;
}

async function newPage(dev) {
  const page = await dev.ctx.newPage();
  page.on('dialog', (d) => {
    dev.dialogs.push(`${d.type()}: ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  page.on('pageerror', (e) => dev.errors.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') dev.errors.push(`console: ${m.text()}${m.location()?.url ? ` (${m.location().url})` : ''}`);
  });
  dev.pages.push(page);
  dev.page = page;
  return page;
}

async function goOffline(dev) {
  dev.blocked = true;
  for (const ws of dev.sockets) await ws.close({ code: 4002, reason: 'network down (test)' }).catch(() => {});
  dev.sockets.clear();
}

async function axe(page, what) {
  await page.evaluate(AXE);
  const r = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  const desc = bad.map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`);
  check(bad.length === 0, `axe on ${what}: ${desc.join(' | ')}`);
  measured.push(`axe ${what}: 0 serious/critical (${r.violations.length} minor)`);
}

async function login(dev, { wrongFirst = false } = {}) {
  const page = dev.page;
  await run(`${dev.name}: open / while logged out`, async () => {
    await page.goto(`${dev.base}/`, { waitUntil: 'domcontentloaded' });
    check(new URL(page.url()).pathname === '/login', `expected a redirect to /login, got ${page.url()}`);
  });
  if (wrongFirst) {
    await run(`${dev.name}: a wrong password keeps the username and marks the fields`, async () => {
      await page.fill('#username', dev.name);
      await page.fill('#password', 'not-the-password');
      await Promise.all([page.waitForNavigation({ waitUntil: 'domcontentloaded', timeout: 15000 }), page.click('form.login-form button[type="submit"]')]);
      const err = (await page.locator('#login-error').textContent()).trim();
      check(err !== '', 'no error shown');
      check((await page.inputValue('#username')) === dev.name, 'the username was cleared');
      check((await page.getAttribute('#password', 'aria-describedby')) === 'login-error', 'the error is not tied to the password field');
      check((await page.getAttribute('#username', 'aria-invalid')) === 'true', 'username not marked invalid');
      await axe(page, 'the login page with an error');
    });
  }
  await run(`${dev.name}: log in`, async () => {
    await page.fill('#username', dev.name);
    await page.fill('#password', dev.password);
    await Promise.all([
      page.waitForURL((url) => url.pathname === '/', { waitUntil: 'domcontentloaded', timeout: 15000 }),
      page.click('form.login-form button[type="submit"]'),
    ]);
    await page.waitForFunction((name) => document.getElementById('whoami')?.textContent === name, dev.name);
    await page.waitForSelector('body[data-connection="open"]');
  });
}

const joinedButton = (page, title) => page.locator('#joined-list button.room-link', { has: page.locator('.room-name', { hasText: exact(title) }) });
const pane = (page, id) => page.locator(`#conversation .room-pane[data-room-id="${id}"]`);

async function roomId(page, title) {
  const li = page.locator('#room-list .browse-room', { has: page.locator('.room-name', { hasText: exact(title) }) });
  if (await li.count()) return li.locator('button.join-room').getAttribute('data-room-id');
  return joinedButton(page, title).getAttribute('data-room-id');
}

async function join(dev, title) {
  return run(`${dev.name}: join "${title}" from the room list`, async () => {
    const page = dev.page;
    const btn = page.getByRole('button', { name: `Join ${title}`, exact: true });
    await btn.waitFor();
    const id = await btn.getAttribute('data-room-id');
    await btn.click();
    await pane(page, id).waitFor({ state: 'visible' });
    await joinedButton(page, title).waitFor();
    check((await joinedButton(page, title).getAttribute('aria-current')) === 'true', 'the joined room is not the current one');
    check(await page.evaluate((pid) => document.activeElement === document.querySelector(`.room-pane[data-room-id="${pid}"] .send-input`), id),
      'focus is not in the composer after joining');
    return id;
  });
}

async function select(dev, title) {
  await joinedButton(dev.page, title).click();
  const id = await joinedButton(dev.page, title).getAttribute('data-room-id');
  await pane(dev.page, id).waitFor({ state: 'visible' });
  return id;
}

async function send(dev, id, text) {
  if (await pane(dev.page, id).isHidden()) await dev.page.locator(`#joined-list button[data-room-id="${id}"]`).click();
  const input = pane(dev.page, id).locator('.send-input');
  await input.fill(text);
  await input.press('Enter');
  check((await input.inputValue()) === '', 'the composer was not emptied by Enter');
}

// Messages with exactly this text in a room's conversation.
const messages = (page, id, text) => pane(page, id).locator('.messages > li.message', {
  has: page.locator('.msg-text', { hasText: exact(text) }),
});

async function expectOnce(dev, id, text, what = `${dev.name} sees "${text}" once`) {
  return run(what, async () => {
    const li = messages(dev.page, id, text);
    await li.first().waitFor({ state: 'attached' });
    // Give a duplicate time to arrive.
    await dev.page.waitForTimeout(200);
    check((await li.count()) === 1, `shown ${await li.count()} times`);
    return li;
  });
}

async function layoutShift(page) {
  return page.evaluate(() => new Promise((resolve) => {
    let sum = 0;
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) if (!e.hadRecentInput) sum += e.value;
    }).observe({ type: 'layout-shift', buffered: true });
    setTimeout(() => resolve(sum), 1000);
  }));
}

async function scenario(browser, opt, devices) {
  const [A, B] = opt.users;
  const alice = await newDevice(browser, { ...A, base: opt.url }, devices);
  await newPage(alice);
  await login(alice, { wrongFirst: true });
  const bob = await newDevice(browser, { ...B, base: opt.url }, devices);
  await newPage(bob);
  await login(bob);
  const ap = alice.page;
  const bp = bob.page;

  const lobby = await join(alice, 'Lobby');
  const random = await join(alice, 'Random');
  await join(bob, 'Lobby');
  await join(bob, 'Random');

  await run('switching rooms does not leave them', async () => {
    await select(alice, 'Lobby');
    check(await pane(ap, random).isHidden(), 'Random is still shown next to Lobby');
    await select(alice, 'Random');
    await send(bob, lobby, 'still there?');
    await expectOnce(alice, lobby, 'still there?');
    check(await pane(ap, lobby).isHidden(), 'Lobby is shown although Random is open');
  });

  await run('unread counts, a mention and its notification', async () => {
    await ap.evaluate(() => { window.__notes = []; });
    await select(bob, 'Lobby');
    await send(bob, lobby, `look @${alice.name}`);
    await send(bob, lobby, 'and this');
    const btn = joinedButton(ap, 'Lobby');
    await ap.waitForFunction((b) => b.querySelector('.unread-badge').textContent === '3', await btn.elementHandle());
    check(await btn.locator('.mention-mark').isVisible(), 'no mention mark on Lobby');
    const label = await btn.getAttribute('aria-label');
    check(label === 'Lobby, 3 unread, 1 mention', `the room button says "${label}"`);
    check(await ap.title() === '(3 @) multichat', `document.title is "${await ap.title()}"`);
    const notes = await ap.evaluate(() => window.__notes);
    check(notes.length === 1 && notes[0].title === `${bob.name} mentioned you in Lobby` && notes[0].body === `look @${alice.name}`,
      `notifications: ${JSON.stringify(notes)}`);
  });

  await run('opening the room shows the "new messages" line and clears the count', async () => {
    await select(alice, 'Lobby');
    const p = pane(ap, lobby);
    const next = p.locator('.new-divider + li.message .msg-text');
    check((await next.textContent()) === 'still there?', `the divider is before "${await next.textContent()}"`);
    check(await p.locator(`li.message.mentions-me .mention-me`).count() === 1, 'the mention is not highlighted');
    await ap.waitForFunction(() => document.title === 'multichat');
    check(await joinedButton(ap, 'Lobby').locator('.unread-badge').isHidden(), 'the badge stayed');
  });

  await run('links and formatting are built as elements; markup stays text', async () => {
    await send(bob, lobby, '**bold** _it_ `code` see https://example.org/a?b=1. and javascript:alert(1)');
    await send(bob, lobby, XSS);
    const li = (await expectOnce(alice, lobby, XSS)).first();
    check(await li.locator('img').count() === 0, 'an <img> was created');
    const rich = pane(ap, lobby).locator('.messages > li.message').filter({ has: ap.locator('strong', { hasText: 'bold' }) });
    check(await rich.count() === 1, 'no <strong> for **bold**');
    check(await rich.locator('em').textContent() === 'it', 'no <em> for _it_');
    check(await rich.locator('code').textContent() === 'code', 'no <code>');
    const a = rich.locator('a');
    check(await a.count() === 1, `${await a.count()} links (javascript: must not be one)`);
    check(await a.getAttribute('href') === 'https://example.org/a?b=1', `href ${await a.getAttribute('href')}`);
    check(await a.getAttribute('rel') === 'noopener noreferrer', 'rel is not noopener noreferrer');
    check(alice.dialogs.length === 0 && bob.dialogs.length === 0, 'a dialog opened');
  });

  await run('the composer grows; Shift+Enter is a new line, Enter sends', async () => {
    const input = pane(ap, lobby).locator('.send-input');
    const h1 = await input.evaluate((e) => e.offsetHeight);
    await input.fill('');
    await input.type('line one');
    await input.press('Shift+Enter');
    await input.type('line two');
    await input.press('Shift+Enter');
    await input.type('line three');
    const h3 = await input.evaluate((e) => e.offsetHeight);
    check(h3 > h1 * 1.8, `the composer did not grow (${h1} px → ${h3} px)`);
    measured.push(`composer: ${h1} px for one line, ${h3} px for three`);
    await input.press('Enter');
    await expectOnce(bob, lobby, 'line one\nline two\nline three');
  });

  await run('↑ edits the last own message, Enter saves, focus returns', async () => {
    const input = pane(ap, lobby).locator('.send-input');
    await input.focus();
    await input.press('ArrowUp');
    const editor = pane(ap, lobby).locator('.msg-edit-input');
    await editor.waitFor();
    check(await editor.inputValue() === 'line one\nline two\nline three', 'the editor holds different text');
    await editor.fill('edited text');
    await editor.press('Enter');
    check(await input.evaluate((e) => document.activeElement === e), 'focus did not return to the composer');
    const li = (await expectOnce(bob, lobby, 'edited text')).first();
    check(await li.locator('.msg-edited').isVisible(), 'bob does not see "(edited)"');
    await input.press('ArrowUp');
    await editor.waitFor();
    await editor.press('Escape');
    check(await editor.count() === 0, 'Esc did not cancel the edit');
    check(await input.evaluate((e) => document.activeElement === e), 'focus did not return after Esc');
  });

  await run('an edited message is in the history after a reload (edited)', async () => {
    await bp.reload({ waitUntil: 'domcontentloaded' });
    await bp.waitForSelector('body[data-connection="open"]');
    await joinedButton(bp, 'Lobby').waitFor();
    await select(bob, 'Lobby');
    const li = (await expectOnce(bob, lobby, 'edited text')).first();
    check(await li.locator('.msg-edited').isVisible(), 'the edited message is not marked edited');
  });

  await run('reload: rooms, the open room and drafts are kept; no layout shift', async () => {
    await select(alice, 'Random');
    await pane(ap, random).locator('.send-input').fill('a draft for Random');
    await select(alice, 'Lobby');
    await ap.reload({ waitUntil: 'domcontentloaded' });
    await ap.waitForSelector('body[data-connection="open"]');
    const cls = await layoutShift(ap);
    measured.push(`layout shift on reload with 2 rooms joined: ${cls.toFixed(4)}`);
    check(cls < 0.01, `layout shift ${cls}`);
    await joinedButton(ap, 'Random').waitFor();
    check((await joinedButton(ap, 'Lobby').getAttribute('aria-current')) === 'true', 'Lobby is no longer the open room');
    await pane(ap, lobby).locator('.messages > li.message').first().waitFor();
    const id = await select(alice, 'Random');
    check(await pane(ap, id).locator('.send-input').inputValue() === 'a draft for Random', 'the draft is gone');
    await pane(ap, id).locator('.send-input').fill('');
    await pane(ap, id).locator('.send-input').press('End');
  });

  await run('a second tab joins the same rooms', async () => {
    const second = await newPage(alice);
    await second.goto(`${opt.url}/`, { waitUntil: 'domcontentloaded' });
    await second.waitForSelector('body[data-connection="open"]');
    await joinedButton(second, 'Lobby').waitFor();
    await joinedButton(second, 'Random').waitFor();
    await select({ page: second }, 'Lobby');
    await send(bob, lobby, 'to both tabs');
    await messages(second, lobby, 'to both tabs').waitFor();
    await second.close();
    alice.page = ap;
  });

  await run('keyboard: Alt+↓/↑ move between rooms, Ctrl+K opens the switcher', async () => {
    await select(alice, 'Lobby');
    await ap.keyboard.press('Alt+ArrowDown');
    check((await joinedButton(ap, 'Random').getAttribute('aria-current')) === 'true', 'Alt+↓ did not open Random');
    await ap.keyboard.press('Alt+ArrowUp');
    check((await joinedButton(ap, 'Lobby').getAttribute('aria-current')) === 'true', 'Alt+↑ did not open Lobby');
    check(await ap.evaluate(() => document.activeElement?.classList.contains('send-input')), 'focus is not in the composer');
    await ap.keyboard.press('Control+k');
    await ap.locator('#switcher-input').waitFor({ state: 'visible' });
    await ap.keyboard.type('Rand');
    await ap.keyboard.press('Enter');
    check((await joinedButton(ap, 'Random').getAttribute('aria-current')) === 'true', 'Ctrl+K "Rand" Enter did not open Random');
  });

  await run(`a room of ${opt.big} messages: history on scroll, the DOM stays bounded`, async () => {
    await ap.keyboard.press('Control+k');
    await ap.keyboard.type('Big');
    await ap.keyboard.press('Enter');
    await joinedButton(ap, 'Big').waitFor();
    const id = await joinedButton(ap, 'Big').getAttribute('data-room-id');
    const p = pane(ap, id);
    await messages(ap, id, `big ${opt.big}`).waitFor();
    const started = Date.now();
    const r = await p.locator('.messages-scroll').evaluate(async (el, big) => {
      let maxDom = 0;
      let longest = 0;
      let longTasks = 0;
      const obs = new PerformanceObserver((l) => {
        for (const e of l.getEntries()) {
          longTasks++;
          longest = Math.max(longest, e.duration);
        }
      });
      obs.observe({ type: 'longtask' });
      const frame = () => new Promise((res) => requestAnimationFrame(() => res()));
      const deadline = Date.now() + 120000;
      let frames = 0;
      let worst = 0;
      while (Date.now() < deadline) {
        const t = performance.now();
        el.scrollTop = Math.max(0, el.scrollTop - 1500);
        await frame();
        await frame();
        worst = Math.max(worst, performance.now() - t);
        frames++;
        maxDom = Math.max(maxDom, el.querySelectorAll('.messages > li').length);
        const first = el.querySelector('.messages > li.message .msg-text');
        if (first && first.textContent === 'big 1' && el.scrollTop === 0) break;
        if (el.scrollTop === 0) await new Promise((res) => setTimeout(res, 30));
      }
      obs.disconnect();
      const first = el.querySelector('.messages > li.message .msg-text')?.textContent;
      const top = el.querySelector('.messages > li');
      const topDay = top?.classList.contains('day-separator') ? top.textContent : null;
      return { maxDom, first, topDay, longTasks, longest, frames, worst, status: el.querySelector('.history-status').textContent };
    }, opt.big);
    const secs = (Date.now() - started) / 1000;
    measured.push(`Big (${opt.big} messages): scrolled to the first in ${secs.toFixed(1)} s, ${r.frames} steps, at most ${r.maxDom} <li> in the DOM, worst step ${r.worst.toFixed(0)} ms, ${r.longTasks} long tasks (longest ${r.longest.toFixed(0)} ms)`);
    check(r.first === 'big 1', `the top of the room is "${r.first}"`);
    check(r.maxDom <= DOM_BOUND, `${r.maxDom} list items in the DOM`);
    check(/beginning/.test(r.status), `no "beginning of the room" note: "${r.status}"`);
    await p.locator('.jump-latest').click();
    await messages(ap, id, `big ${opt.big}`).waitFor();
    check(await p.locator('.jump-latest').isHidden(), 'the jump button stayed after jumping');
    check(r.topDay === 'Today', `the first message has no day separator above it (${r.topDay})`);
  });

  await run('offline: a banner, sends queued and delivered once after reconnecting', async () => {
    await select(alice, 'Lobby');
    await goOffline(alice);
    await ap.locator('#offline-banner').waitFor({ state: 'visible' });
    await send(alice, lobby, 'sent while offline');
    const pending = pane(ap, lobby).locator('.outbox li.pending');
    check(await pending.count() === 1, 'the message is not shown as waiting');
    await bp.waitForTimeout(1000);
    check(await messages(bp, lobby, 'sent while offline').count() === 0, 'bob got it while alice was offline');
    alice.blocked = false;
    // The page may have retried by itself in the meantime.
    await ap.locator('#reconnect-now').click({ timeout: 1000 }).catch(() => {});
    await ap.waitForSelector('body[data-connection="open"]');
    await expectOnce(bob, lobby, 'sent while offline', 'bob gets the queued message once');
    await bp.waitForTimeout(1500);
    check(await messages(bp, lobby, 'sent while offline').count() === 1, 'delivered more than once');
    await expectOnce(alice, lobby, 'sent while offline');
    await pending.waitFor({ state: 'detached' });
    check(await ap.locator('#offline-banner').isHidden(), 'the banner stayed');
  });

  await run('axe: the chat page with unread badges and a mention, light and dark', async () => {
    await select(alice, 'Lobby');
    await send(bob, random, `@${alice.name} lunch at noon?`);
    await joinedButton(ap, 'Random').locator('.unread-badge').waitFor();
    await axe(ap, 'the chat page (light)');
    await ap.emulateMedia({ colorScheme: 'dark' });
    await axe(ap, 'the chat page (dark)');
    await ap.emulateMedia({ colorScheme: 'light' });
  });

  if (opt.screenshots) {
    await run('desktop screenshot', async () => {
      await send(bob, lobby, '> sent while offline\nArrived once. To run the suite:\n```\nmeson test -C build --suite browser\n```');
      await messages(ap, lobby, 'sent while offline').first().waitFor({ state: 'attached' });
      await ap.locator('.room-pane:not([hidden]) pre.msg-code').waitFor();
      await ap.mouse.move(0, 0);
      await ap.screenshot({ path: path.join(opt.screenshots, 'screenshot.png') });
    });
  }

  await run('leaving a room puts it back in the list and keeps focus', async () => {
    await select(alice, 'Random');
    await pane(ap, random).getByRole('button', { name: 'Leave Random' }).click();
    await ap.getByRole('button', { name: 'Join Random', exact: true }).waitFor();
    check(await joinedButton(ap, 'Random').count() === 0, 'Random is still in the sidebar');
    check(await ap.evaluate(() => document.activeElement?.classList.contains('room-link')), 'focus is not on a room');
  });

  await run('phone size: list, then one conversation, and back', async () => {
    const phone = await newDevice(browser, { ...A, base: opt.url }, devices, { viewport: PHONE, mobile: true });
    await phone.ctx.addCookies(await alice.ctx.cookies());
    const pp = await newPage(phone);
    await pp.goto(`${opt.url}/`, { waitUntil: 'domcontentloaded' });
    await pp.waitForSelector('body[data-connection="open"]');
    // Rooms belong to the user (protocol version 2): Lobby, joined on
    // alice's other device, is already in the new device's list.
    await joinedButton(pp, 'Lobby').waitFor();
    check(await pp.getByRole('button', { name: 'Join Lobby', exact: true }).count() === 0,
      'Lobby, joined on another device, is offered to join again');
    await joinedButton(pp, 'Lobby').click();
    const id = await joinedButton(pp, 'Lobby').getAttribute('data-room-id');
    await pane(pp, id).waitFor({ state: 'visible' });
    check(await pp.locator('.sidebar').isHidden(), 'the room list is shown beside the conversation');
    const width = await pp.evaluate(() => document.documentElement.scrollWidth);
    check(width <= PHONE.width, `the page is ${width} px wide`);
    await messages(pp, id, 'edited text').waitFor();
    await pp.waitForTimeout(300);
    const gap = await pane(pp, id).locator('.messages-scroll').evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight);
    check(gap < 60, `the conversation opened ${gap} px above its newest message`);
    await axe(pp, 'the chat page at 390×844');
    if (opt.screenshots) await pp.screenshot({ path: path.join(opt.screenshots, 'screenshot-phone.png') });
    await pane(pp, id).locator('.room-back').click();
    await pp.locator('.sidebar').waitFor({ state: 'visible' });
    check(await pane(pp, id).isHidden(), 'the conversation is still shown');
  });

  await run('no script errors or CSP violations', async () => {
    for (const u of devices) {
      // The refused login (401) and the cut network are the test's own doing.
      const bad = u.errors.filter((e) => !/status of 401 .*\/login\)$|WebSocket connection to .* failed/.test(e));
      check(bad.length === 0, `${u.name}: ${bad.join(' | ')}`);
    }
  });
}

async function main() {
  const opt = parseCli();
  const exe = findChromium(opt.chromium);
  if (!exe) {
    console.log('chat.mjs: SKIP: no chromium found (apt-get install chromium)');
    process.exit(EXIT_SKIP);
  }
  const started = Date.now();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'multichat-browser-'));
  let browser = null;
  const devices = [];
  const watchdog = setTimeout(() => {
    console.log(`chat.mjs: FAIL: ${step}: whole run took longer than ${RUN_LIMIT_MS / 1000} s`);
    process.exit(1);
  }, RUN_LIMIT_MS);

  try {
    browser = await run('launch chromium', () => chromium.launch({
      executablePath: exe,
      headless: true,
      timeout: STEP_MS,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
        '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-quic',
        `--crash-dumps-dir=${tmp}`],
      env: { ...process.env, HOME: tmp, XDG_CONFIG_HOME: tmp, XDG_CACHE_HOME: tmp },
    }));
    if (opt.screenshots) fs.mkdirSync(opt.screenshots, { recursive: true });
    await scenario(browser, opt, devices);
    for (const m of measured) console.log(`chat.mjs: ${m}`);
    console.log(`chat.mjs: PASS (${((Date.now() - started) / 1000).toFixed(1)} s, node ${process.version})`);
    return 0;
  } catch (e) {
    for (const m of measured) console.log(`chat.mjs: ${m}`);
    console.log(`chat.mjs: FAIL: ${e instanceof StepError ? e.message : `${step}: ${e.stack || e}`}`);
    for (const u of devices) for (const err of u.errors) console.log(`  ${u.name}: ${err}`);
    return 1;
  } finally {
    if (browser) await browser.close().catch(() => {});
    clearTimeout(watchdog);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

process.exitCode = await main();
