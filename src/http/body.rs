//! Request bodies read on our terms (issue 13, "refuse before reading"): a declared
//! `Content-Length` over the route's limit is refused before a byte is read, a body is
//! read in pieces so a handler can check what it can (a token at the start of a form)
//! before reading the rest, and large bodies share a byte budget
//! (`server.large_body_budget_bytes`) so a burst of them cannot take the memory.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use futures::StreamExt;
use tokio::sync::OwnedSemaphorePermit;

use super::AppState;

/// Bodies whose (declared or possible) size is above this wait for the byte budget.
pub const LARGE_BODY: usize = 1024 * 1024;

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Over the route's limit (declared or as read).
    TooLarge,
    /// The client stopped sending or the connection failed.
    Broken,
}

/// The declared length, if any and readable.
pub fn declared_len(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// A body being read, at most `max` bytes.
pub struct BodyReader {
    stream: axum::body::BodyDataStream,
    buf: Vec<u8>,
    max: usize,
    done: bool,
    _budget: Option<OwnedSemaphorePermit>,
}

impl BodyReader {
    /// Refuses a declared length over `max` at once; a large body (declared over
    /// [`LARGE_BODY`], or undeclared on a route allowing more) first waits for its share
    /// of the byte budget.
    pub async fn new(
        s: &AppState,
        headers: &HeaderMap,
        body: Body,
        max: usize,
    ) -> Result<Self, BodyError> {
        let declared = declared_len(headers);
        if declared.is_some_and(|n| n > max as u64) {
            metrics::counter!(kioskd_actors::catalog::BODIES_REFUSED, "reason" => "too_large")
                .increment(1);
            return Err(BodyError::TooLarge);
        }
        let expect = declared.map(|n| n as usize).unwrap_or(max);
        let budget = if expect > LARGE_BODY {
            let kib = expect.div_ceil(1024).min(s.large_body_kib) as u32;
            // Never closed, so acquiring only waits.
            s.large_bodies
                .clone()
                .acquire_many_owned(kib.max(1))
                .await
                .ok()
        } else {
            None
        };
        Ok(Self {
            stream: body.into_data_stream(),
            buf: Vec::with_capacity(expect.min(64 * 1024)),
            max,
            done: false,
            _budget: budget,
        })
    }

    /// What has been read so far.
    pub fn prefix(&self) -> &[u8] {
        &self.buf
    }

    /// Has the whole body been read?
    pub fn complete(&self) -> bool {
        self.done
    }

    /// Reads until at least `n` bytes are buffered or the body ends.
    pub async fn fill(&mut self, n: usize) -> Result<(), BodyError> {
        while !self.done && self.buf.len() < n {
            match self.stream.next().await {
                None => self.done = true,
                Some(Ok(chunk)) => {
                    if self.buf.len() + chunk.len() > self.max {
                        metrics::counter!(kioskd_actors::catalog::BODIES_REFUSED, "reason" => "too_large")
                            .increment(1);
                        return Err(BodyError::TooLarge);
                    }
                    self.buf.extend_from_slice(&chunk);
                }
                Some(Err(_)) => return Err(BodyError::Broken),
            }
        }
        Ok(())
    }

    /// The whole body.
    pub async fn finish(mut self) -> Result<Bytes, BodyError> {
        self.fill(usize::MAX).await?;
        Ok(Bytes::from(std::mem::take(&mut self.buf)))
    }
}

/// The value of `key` in the complete `&`-separated pairs at the start of a form body
/// (`None` while the prefix does not hold that pair in full).
pub fn form_prefix_value(prefix: &[u8], key: &str) -> Option<String> {
    let text = prefix.trim_ascii_start();
    // Only pairs followed by `&` are known to be complete.
    let last = text.iter().rposition(|b| *b == b'&')?;
    for pair in text[..last].split(|b| *b == b'&') {
        let (k, v) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        let decoded: Vec<(String, String)> =
            serde_urlencoded::from_bytes(&[k, b"=", v].concat()).ok()?;
        if let Some((dk, dv)) = decoded.into_iter().next()
            && dk == key
        {
            return Some(dv);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_prefix_yields_only_complete_pairs() {
        assert_eq!(
            form_prefix_value(b"token=abc&SN=1&records=%5B", "token").as_deref(),
            Some("abc")
        );
        assert_eq!(form_prefix_value(b"token=ab", "token"), None, "maybe cut");
        assert_eq!(
            form_prefix_value(b"SN=1&token=a%2Bb&x", "token").as_deref(),
            Some("a+b")
        );
        assert_eq!(form_prefix_value(b"{\"token\":\"a\"}&", "token"), None);
        assert_eq!(form_prefix_value(b"SN=1&records=x", "token"), None);
    }
}
