// SPDX-License-Identifier: LGPL-2.1-or-later
// login.js: keeps the username across a refused login and marks the fields the error is about.
//
// The server answers a wrong password with a fresh form; the name typed is
// kept in sessionStorage (this tab only, never the password) and put back.

const KEY = 'multichat:login-username';
const form = document.querySelector('.login-form');
const user = document.getElementById('username');
const pass = document.getElementById('password');
const error = document.getElementById('login-error');

function storage() {
  try {
    return window.sessionStorage;
  } catch {
    return null;
  }
}

const failed = error && error.textContent.trim() !== '';
if (failed) {
  for (const f of [user, pass]) f.setAttribute('aria-invalid', 'true');
  const saved = storage()?.getItem(KEY);
  if (saved && user.value === '') {
    user.value = saved;
    pass.focus();
  }
} else {
  error?.removeAttribute('role');
}
form?.addEventListener('submit', () => {
  try {
    storage()?.setItem(KEY, user.value);
  } catch {
    // Storage refused (quota, private mode): the name is typed again.
  }
});
