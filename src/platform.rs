//! The phone's sign-in with the platforms (a service): the telecom open platform
//! (`identity.mode = "open189"`: the sign-in URL, a callback's code → openid, the telecom
//! app's ticket → mobile), the silent pass of kioskd's own WeChat account for the payment
//! openid, and the JS-SDK configuration of one of kioskd's own pages.
//!
//! The rules live here (which codes and tickets are acceptable, which pages may have a
//! JS-SDK signature, that an unconfigured platform is refused before any call); the
//! cookies, nonces and redirects of the dance are the adapter's (`http::oauth`). Every
//! outside call is counted per operation (the catalog's upstream metrics). Codes, tickets and
//! tickets' mobiles never reach a log line.

use crate::services::Services;
use crate::upstream::UpstreamError;
use crate::upstream::crypto::{jsapi_signature, nonce_str};
use crate::upstream::open189::op;
use crate::upstream::token::TokenKind;

/// Longest OAuth code accepted from a callback.
const MAX_CODE: usize = 256;
/// Longest telecom app ticket accepted.
const MAX_TICKET: usize = 512;
/// Longest page URL that may be signed for the JS-SDK.
const MAX_PAGE_URL: usize = 2048;

/// Is this a plausible OAuth code (1–256 characters of the platforms' alphabet)?
pub fn valid_code(c: &str) -> bool {
    !c.is_empty()
        && c.len() <= MAX_CODE
        && c.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=+/.".contains(c))
}

/// Is this a plausible telecom app ticket (1–512 characters, no control characters)?
pub fn valid_ticket(t: &str) -> bool {
    !t.is_empty() && t.len() <= MAX_TICKET && !t.chars().any(char::is_control)
}

/// The open platform's sign-in URL (`getBaseUrl`) that sends the phone back to
/// `return_url` with a code.
pub async fn sign_in_url(s: &Services, return_url: &str) -> Result<String, UpstreamError> {
    if !s.upstream.open189.configured() {
        return Err(UpstreamError::NotConfigured(String::new()));
    }
    s.upstream
        .open189_call(op::BASE_URL, |c, t| async move {
            c.base_url(&t, return_url).await
        })
        .await
}

/// The openid behind a callback's code (`getOpenidByCode`, server side only). An expired
/// code is `UpstreamError::Code40005`: the caller may start the sign-in over.
pub async fn openid_for_code(s: &Services, code: &str) -> Result<String, UpstreamError> {
    s.upstream
        .open189_call(op::OPENID, |c, t| async move {
            c.openid_by_code(&t, code).await
        })
        .await
}

/// The mobile the telecom app's quick-entry ticket stands for.
pub async fn mobile_for_ticket(s: &Services, ticket: &str) -> Result<String, UpstreamError> {
    s.upstream
        .open189_call(op::TICKET, |c, t| async move {
            c.ticket_mobile(&t, ticket).await
        })
        .await
}

/// Where to send the phone for the silent pass of kioskd's own account, which returns
/// to `redirect_uri` with a code for the payment openid and `state`.
pub fn pay_openid_url(s: &Services, redirect_uri: &str, state: &str) -> String {
    s.upstream.mp.authorize_url(redirect_uri, state)
}

/// The payment openid behind the silent pass's code.
pub async fn pay_openid_for_code(s: &Services, code: &str) -> Result<String, UpstreamError> {
    let r = s.upstream.mp.openid_by_code(code).await;
    crate::upstream::record(crate::upstream::mp::op::OAUTH, &r);
    r
}

/// Why a JS-SDK configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum JsapiError {
    /// The page is not on the host of `public.base_url` (or its URL is too long).
    #[error("url must be a page on the host of public.base_url")]
    ForeignPage,
    /// The account is not configured or the ticket could not be had.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

/// The signed `wx.config` of one of kioskd's own pages (the fragment is cut; only pages
/// on the scheme-less host and port of `public.base_url`, over http or https).
pub async fn jsapi_config(
    s: &Services,
    page_url: &str,
) -> Result<kioskd_protocol::wechat::JsapiSignature, JsapiError> {
    let page = page_url.split('#').next().unwrap_or_default();
    if page.len() > MAX_PAGE_URL || !same_host(&s.cfg.public.base_url, page) {
        return Err(JsapiError::ForeignPage);
    }
    if !s.upstream.mp.configured() {
        return Err(
            UpstreamError::NotConfigured("wechat_mp.appid / wechat_mp.secret".into()).into(),
        );
    }
    let r = s.upstream.tokens.get(TokenKind::MpTicket).await;
    crate::upstream::record(crate::upstream::mp::op::TICKET, &r);
    let ticket = r?;
    let nonce = nonce_str(16);
    let ts = crate::identity::now_s();
    let signature = jsapi_signature(&ticket, &nonce, &ts.to_string(), page);
    Ok(kioskd_protocol::wechat::JsapiSignature {
        app_id: s.upstream.mp.appid().to_string(),
        timestamp: ts,
        nonce_str: nonce,
        signature,
    })
}

/// Is `page` an http(s) URL on the host and port of `base`?
fn same_host(base: &str, page: &str) -> bool {
    match (reqwest::Url::parse(base), reqwest::Url::parse(page)) {
        (Ok(a), Ok(b)) => {
            a.host_str() == b.host_str()
                && a.port_or_known_default() == b.port_or_known_default()
                && matches!(b.scheme(), "http" | "https")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_tickets_are_bounded() {
        assert!(valid_code("051abcDEF-_=+/."));
        assert!(!valid_code(""));
        assert!(!valid_code("a b"));
        assert!(!valid_code(&"a".repeat(MAX_CODE + 1)));
        assert!(valid_ticket("tk-1"));
        assert!(!valid_ticket(""));
        assert!(!valid_ticket("a\nb"));
        assert!(!valid_ticket(&"t".repeat(MAX_TICKET + 1)));
    }

    #[test]
    fn only_our_own_pages_are_signed() {
        let base = "https://kiosk.example.com";
        assert!(same_host(
            base,
            "https://kiosk.example.com/app/live.html?x=1"
        ));
        assert!(same_host(base, "http://kiosk.example.com:443/app"));
        assert!(!same_host(base, "https://evil.example.com/app"));
        assert!(!same_host(base, "https://kiosk.example.com:8443/app"));
        assert!(!same_host(base, "javascript:alert(1)"));
        assert!(!same_host(base, "not a url"));
    }
}
