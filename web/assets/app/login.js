// Sign-in (dev form or the WeChat sign-in link) and binding the mobile with the SMS code.
import {
  $, appConfig, BIND_MESSAGES, fixIosKeyboard, get, me, messageFor, param, post,
  safeBack, show, text,
} from './common.js';

const back = safeBack(param('back'), '/app/me');

function error(msg) {
  show('#notice', false);
  text('#error', msg);
  show('#error', !!msg);
}

function notice(msg) {
  text('#notice', msg);
  show('#notice', !!msg);
}

let countdown = null;
function startCountdown(seconds) {
  const b = $('#send');
  let left = seconds;
  b.disabled = true;
  clearInterval(countdown);
  const tick = () => {
    if (left <= 0) {
      clearInterval(countdown);
      b.disabled = false;
      text(b, '重新获取');
      return;
    }
    text(b, left + '秒后重发');
    left -= 1;
  };
  tick();
  countdown = setInterval(tick, 1000);
}

const validMobile = (m) => /^1\d{10}$/.test(m);

async function main() {
  fixIosKeyboard();
  const [cfg, who] = await Promise.all([appConfig(), me()]);
  show('#loading', false);
  if (who.state === 'ok') {
    location.replace(back);
    return;
  }
  if (who.state === 'blocked') {
    error(who.message);
    return;
  }
  if (who.state === 'anonymous') {
    if (cfg.identity_mode === 'dev') {
      show('#dev');
      $('#dev-form').addEventListener('submit', async (ev) => {
        ev.preventDefault();
        const openid = $('#openid').value.trim();
        const nickname = $('#nickname').value.trim();
        if (!/^[A-Za-z0-9_-]{1,64}$/.test(openid)) {
          error('openid 只能包含字母、数字、下划线和短横线（1-64位）');
          return;
        }
        const q = new URLSearchParams({ openid: openid, nickname: nickname });
        const r = await get('/dev/login?' + q.toString());
        if (!r.success) {
          error(messageFor(r));
          return;
        }
        location.reload();
      });
    } else {
      $('#wechat-link').href =
        '/wechat/app/signin?back=' + encodeURIComponent('/app/login?back=' + encodeURIComponent(back));
      show('#wechat');
    }
    return;
  }
  // Signed in, no mobile yet: bind it.
  text('#nick', who.user.nick_name || who.user.nike_name || '用户');
  show('#bind');
  $('#send').addEventListener('click', async () => {
    const mobile = $('#mobile').value.trim();
    if (!validMobile(mobile)) {
      error('请输入正确的11位手机号');
      $('#mobile').focus();
      return;
    }
    error('');
    $('#send').disabled = true;
    const r = await post('/wechat/captcha', { mobile: mobile });
    if (!r.success) {
      $('#send').disabled = false;
      error(messageFor(r, BIND_MESSAGES));
      return;
    }
    notice('验证码已发送，请查收短信');
    startCountdown(cfg.sms_resend_seconds || 60);
    $('#code').focus();
  });
  $('#bind-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const mobile = $('#mobile').value.trim();
    const code = $('#code').value.trim();
    if (!validMobile(mobile)) {
      error('请输入正确的11位手机号');
      return;
    }
    if (!/^\d{4,8}$/.test(code)) {
      error('请输入短信中的6位验证码');
      return;
    }
    const b = $('#bind-submit');
    b.disabled = true;
    const r = await post('/wechat/login', { mobile: mobile, code: code });
    b.disabled = false;
    if (!r.success) {
      error(messageFor(r, BIND_MESSAGES));
      return;
    }
    notice('绑定成功');
    location.replace(back);
  });
}

main();
