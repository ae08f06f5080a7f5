// Sign-in: POST /ops/login sets the HttpOnly session cookie; the page never sees a token.
import { api, $, showError } from './common.js';

function next() {
  const n = new URLSearchParams(location.search).get('next') || '';
  // Only a path on this site (never //host or a scheme).
  return /^\/console\/[^/\\]*/.test(n) && n.indexOf('//') < 0 ? n : '/console/';
}

$('#login').addEventListener('submit', async function (ev) {
  ev.preventDefault();
  const btn = $('#submit');
  btn.disabled = true;
  try {
    await api('/ops/login', { method: 'POST', noRedirect: true, json: { username: $('#username').value.trim(), password: $('#password').value } });
    location.href = next();
  } catch (e) {
    if (e.status === 401) showError(new Error('用户名或密码错误'));
    else if (e.status === 429) showError(new Error('尝试次数过多，请 ' + ((e.body && e.body.retry_after_seconds) || 60) + ' 秒后再试'));
    else showError(e);
    btn.disabled = false;
  }
});
