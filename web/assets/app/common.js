// Shared helpers of the phone app (/app/): API calls in the phone's envelope dialect,
// money and time formatting, messages for every result code, WeChat JS-SDK and pay.
// ES2017-level syntax only (old WeChat Android kernels): no `?.`, no `??`.

/** Calls the API; always resolves to an envelope {success, result, error, status}. */
export async function api(path, opts) {
  opts = opts || {};
  // redirect 'manual': in open189 mode a GET of /wechat/* without a session answers a
  // redirect to the platform's sign-in, which a fetch must not follow (another origin).
  const init = { method: opts.method || 'GET', credentials: 'same-origin', headers: {}, redirect: 'manual' };
  if (opts.body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(opts.body);
  }
  let r;
  try {
    r = await fetch(path, init);
  } catch (e) {
    return { success: false, result: 'network', error: '网络异常，请检查网络后重试', status: 0 };
  }
  if (r.type === 'opaqueredirect' || (r.status >= 300 && r.status < 400)) {
    return { success: false, result: -1, error: '请先登录', status: r.status };
  }
  let body = null;
  try {
    body = await r.json();
  } catch (e) {
    body = null;
  }
  if (!body || typeof body !== 'object' || !('success' in body)) {
    let msg = '服务暂时不可用，请稍后再试';
    if (r.status === 403) msg = '请求被拒绝，请从本页面重新操作';
    if (r.status === 429) msg = '操作过于频繁，请稍后再试';
    return { success: false, result: 'http', error: msg, status: r.status };
  }
  body.status = r.status;
  if (!body.success && r.status === 429 && !body.error) body.error = '操作过于频繁，请稍后再试';
  return body;
}

export const get = (p) => api(p);
export const post = (p, body) => api(p, { method: 'POST', body: body || {} });

/** Fen (integer) as "¥12.34", by integer arithmetic only. */
export function yuan(fen) {
  fen = Math.trunc(Number(fen) || 0);
  const neg = fen < 0;
  if (neg) fen = -fen;
  const y = Math.floor(fen / 100);
  const f = String(fen % 100).padStart(2, '0');
  return (neg ? '-¥' : '¥') + y + '.' + f;
}

/** "12.3" / "12" / "12.34" yuan typed by a person → integer fen, or null. No floats. */
export function parseYuan(text) {
  const t = String(text || '').trim();
  const m = /^(\d{1,7})(?:\.(\d{1,2}))?$/.exec(t);
  if (!m) return null;
  const frac = (m[2] || '').padEnd(2, '0');
  return parseInt(m[1], 10) * 100 + parseInt(frac, 10);
}

/** Milliseconds as "1:02:03" or "02:03". */
export function clock(ms) {
  let s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const two = (n) => String(n).padStart(2, '0');
  return (h > 0 ? h + ':' + two(m) : two(m)) + ':' + two(s);
}

/** Seconds as "3分20秒" / "1小时2分". */
export function duration(sec) {
  sec = Math.max(0, Math.round(sec));
  const h = Math.floor(sec / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = sec % 60;
  if (h > 0) return h + '小时' + (m > 0 ? m + '分钟' : '');
  if (m > 0) return m + '分钟' + (s > 0 ? s + '秒' : '');
  return s + '秒';
}

/** Messages for the result codes of GET /windows/login/<code> (SPEC §5, -18). */
export const START_MESSAGES = {
  '-1': '请先登录并绑定手机号',
  '-2': '该用户已被删除，无法上机',
  '-3': '该用户已被禁用，请联系客服',
  '-4': '设备不存在，请重新扫描设备上的二维码',
  '-5': '余额不足一分钟，请先充值',
  '-6': '服务器内部错误，请稍后再试',
  '-7': '设备正在被其他用户使用，请换一台设备',
  '-8': '您正在其他设备上机，请先结束那边的会话',
  '-9': '设备当前不可用（非空闲、离线或正在更新），请稍后再试或换一台设备',
  '-18': '您有未支付的订单，请先支付后再上机',
};

/** Messages for /wechat/captcha and /wechat/login failures (SPEC §7). */
export const BIND_MESSAGES = {
  '-1': '登录已失效，请重新登录',
  '-2': '该用户已被删除',
  '-10': '请输入正确的11位手机号和6位验证码',
  '-11': '验证码错误或已过期，请重新获取',
  '-12': '验证码发送过于频繁，请稍后再试',
  '-13': '该手机号已绑定其他微信，或当前微信已绑定其他手机号',
  '-16': '短信服务暂时不可用，请稍后再试',
};

/** The message for a failed envelope: the table's, else the server's, else generic. */
export function messageFor(env, table) {
  const key = String(env.result);
  if (table && table[key]) return table[key];
  return env.error || '操作失败，请稍后再试';
}

export const END_REASONS = {
  user_logout: '已在设备上退出',
  phone_offline: '已在手机上结束',
  balance_exhausted: '余额已用完，会话自动结束，设备已锁定',
  heartbeat_timeout: '设备长时间未响应（断网或关机），会话已结束，只计到最后联系的时间',
  operator: '管理员结束了会话',
  maintenance: '设备进入维护，会话已结束',
};

export function $(sel) {
  return document.querySelector(sel);
}

/** Shows `el` (or hides it). */
export function show(el, on) {
  if (typeof el === 'string') el = $(el);
  if (el) el.hidden = on === false;
}

/** Sets text safely. */
export function text(el, t) {
  if (typeof el === 'string') el = $(el);
  if (el) el.textContent = t === undefined || t === null ? '' : String(t);
}

/** A WeUI top tip (errors) that goes away by itself. */
export function topTip(msg, ok) {
  let el = document.getElementById('toptip');
  if (!el) {
    el = document.createElement('div');
    el.id = 'toptip';
    el.setAttribute('role', 'alert');
    el.className = 'app-toptip';
    document.body.appendChild(el);
  }
  el.classList.toggle('app-toptip_ok', !!ok);
  el.textContent = msg;
  el.hidden = false;
  clearTimeout(topTip.t);
  topTip.t = setTimeout(() => {
    el.hidden = true;
  }, 4000);
}

/** Query parameter. */
export function param(name) {
  return new URLSearchParams(location.search).get(name);
}

/** A local page to go back to (never another origin). */
export function safeBack(v, dflt) {
  if (v && v.indexOf('/app/') === 0 && v.indexOf('//') < 0 && v.indexOf('\\') < 0) return v;
  return dflt;
}

/** `mobile` with the middle hidden. */
export function maskMobile(m) {
  return m && m.length === 11 ? m.slice(0, 3) + '****' + m.slice(7) : m || '';
}

let configPromise = null;
/** /wechat/app/config, once per page. */
export function appConfig() {
  if (!configPromise) {
    configPromise = get('/wechat/app/config').then((e) =>
      e.success
        ? e.result
        : { identity_mode: 'dev', payments_mode: 'sandbox', unit_seconds: 60, low_balance_minutes: 5, sms_resend_seconds: 60 }
    );
  }
  return configPromise;
}

/**
 * The signed-in user: {state:'anonymous'} | {state:'unbound', user} | {state:'ok', user}
 * | {state:'blocked', message}.
 */
export async function me() {
  const e = await get('/wechat/user');
  if (e.success) {
    const u = e.result;
    return { state: u.mobile ? 'ok' : 'unbound', user: u };
  }
  if (e.result === -1) return { state: 'anonymous' };
  return { state: 'blocked', message: e.error || '无法获取用户信息' };
}

/** Where to send a person to sign in (and come back to `back`). */
export function signInUrl(back) {
  return '/app/login?back=' + encodeURIComponent(back || location.pathname + location.search);
}

// ---- WeChat ---------------------------------------------------------------------------

export const inWeChat = /MicroMessenger/i.test(navigator.userAgent);

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const s = document.createElement('script');
    s.src = src;
    s.onload = resolve;
    s.onerror = reject;
    document.head.appendChild(s);
  });
}

/** Inside WeChat: loads the JS-SDK and configures it; resolves to `wx` or null. */
export async function wechatReady() {
  if (!inWeChat) return null;
  if (!window.wx) {
    try {
      await loadScript('https://res.wx.qq.com/open/js/jweixin-1.6.0.js');
    } catch (e) {
      return null;
    }
  }
  const wx = window.wx;
  if (!wx) return null;
  const sig = await post('/wechat/jsapi/signature', { url: location.href.split('#')[0] });
  if (!sig.success) return null;
  return new Promise((resolve) => {
    wx.config({
      debug: false,
      appId: sig.result.appId,
      timestamp: sig.result.timestamp,
      nonceStr: sig.result.nonceStr,
      signature: sig.result.signature,
      jsApiList: ['scanQRCode'],
    });
    wx.ready(() => resolve(wx));
    wx.error(() => resolve(null));
  });
}

/** A device code out of a scanned QR text (a kiosk's /windows/login/<code> URL). */
export function codeFromScan(t) {
  const m = /\/windows\/login\/([0-9A-Fa-f:-]{11,23})/.exec(String(t || ''));
  if (m) return m[1];
  const d = /device_code=([0-9A-Fa-f:%-]{11,40})/.exec(String(t || ''));
  return d ? decodeURIComponent(d[1]) : null;
}

/** Wires a scan button (shown inside WeChat only). */
export async function setUpScan(button) {
  if (!button || !inWeChat) return;
  const wx = await wechatReady();
  if (!wx) return;
  button.hidden = false;
  button.addEventListener('click', () => {
    wx.scanQRCode({
      needResult: 1,
      scanType: ['qrCode'],
      success: (res) => {
        const code = codeFromScan(res.resultStr);
        if (code) location.href = '/app/?device_code=' + encodeURIComponent(code);
        else topTip('这不是本系统设备的二维码');
      },
    });
  });
}

function bridge() {
  return new Promise((resolve) => {
    if (typeof window.WeixinJSBridge !== 'undefined') return resolve(window.WeixinJSBridge);
    document.addEventListener('WeixinJSBridgeReady', () => resolve(window.WeixinJSBridge), false);
  });
}

/**
 * JSAPI pay with the parameters the server gave. Resolves to 'ok' | 'cancel' | 'fail'
 * — a hint only: the caller polls the server for the real outcome.
 */
export async function wechatPay(params) {
  if (!inWeChat) return 'fail';
  const b = await bridge();
  return new Promise((resolve) => {
    b.invoke(
      'getBrandWCPayRequest',
      {
        appId: params.appId,
        timeStamp: params.timeStamp,
        nonceStr: params.nonceStr,
        package: params.package,
        signType: params.signType,
        paySign: params.paySign,
      },
      (res) => {
        const m = String((res && res.err_msg) || '');
        if (m === 'get_brand_wcpay_request:ok') resolve('ok');
        else if (m === 'get_brand_wcpay_request:cancel') resolve('cancel');
        else resolve('fail');
      }
    );
  });
}

/** Polls `check()` (→ true when done) every second until it says so or `ms` pass. */
export async function pollUntil(check, ms) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** iOS leaves the page scrolled after the keyboard closes: scroll back on blur. */
export function fixIosKeyboard() {
  document.querySelectorAll('input').forEach((i) => {
    i.addEventListener('blur', () => {
      // Not when focus moved to another field (the keyboard stays up).
      setTimeout(() => {
        const a = document.activeElement;
        if (a && a.tagName === 'INPUT') return;
        // A one-pixel scroll makes iOS WeChat re-lay out the page where it belongs.
        const h = document.documentElement.scrollTop || document.body.scrollTop || 0;
        window.scrollTo(0, Math.max(h - 1, 0));
      }, 100);
    });
  });
}
