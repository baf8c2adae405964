//! Page sizes and page tokens of ListFlows and ListFlowVersions (contract B.1).
//!
//! A token is opaque to clients: base64url of a small JSON object naming what is listed, the etcd
//! revision of the first page (later pages read the same snapshot) and the last item returned.
//! Tokens are not secret: a client that forges one can only list what it may list anyway, so they
//! are validated, not signed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::error::{Error, Result};

pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 1000;
pub const INVALID_PAGE_TOKEN: &str = "INVALID_PAGE_TOKEN";
pub const PAGE_TOKEN_EXPIRED: &str = "PAGE_TOKEN_EXPIRED";

/// 0 → 100, above 1000 → 1000, negative → INVALID_ARGUMENT.
pub fn page_size(requested: i32) -> Result<usize> {
    match requested {
        n if n < 0 => Err(Error::invalid_field(
            "INVALID_PAGE_SIZE",
            "page_size",
            format!("must not be negative (got {n})"),
        )),
        0 => Ok(DEFAULT_PAGE_SIZE),
        n => Ok((n as usize).min(MAX_PAGE_SIZE)),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageToken {
    /// What is being listed: "flows", or "versions/<flow>".
    #[serde(rename = "k")]
    pub listing: String,
    /// Store revision every page of this listing is read at.
    #[serde(rename = "r")]
    pub revision: i64,
    /// The last item of the previous page (a flow name, or a version number).
    #[serde(rename = "a")]
    pub after: String,
}

impl PageToken {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Decodes `token` for `listing`; `None` for an empty token (the first page).
    pub fn decode(token: &str, listing: &str) -> Result<Option<PageToken>> {
        if token.is_empty() {
            return Ok(None);
        }
        let invalid = invalid_token;
        let bytes = URL_SAFE_NO_PAD
            .decode(token.trim_end_matches('='))
            .map_err(|_| invalid("not base64url"))?;
        let t: PageToken = serde_json::from_slice(&bytes).map_err(|_| invalid("malformed"))?;
        if t.listing != listing {
            return Err(invalid("it belongs to another listing"));
        }
        if t.revision <= 0 {
            return Err(invalid("bad revision"));
        }
        Ok(Some(t))
    }
}

/// The error for a token that this listing did not issue.
pub fn invalid_token(why: &str) -> Error {
    Error::invalid_field(
        INVALID_PAGE_TOKEN,
        "page_token",
        format!("is not a token returned by this listing ({why}); omit it to start over"),
    )
}

/// Turns the store's "revision unavailable" into an expired-token error when the listing reads
/// the snapshot of a token (`revision > 0`); other errors pass through.
pub fn expired_if_compacted(e: Error, revision: i64) -> Error {
    match &e {
        Error::FailedPrecondition(d)
            if d.reason == super::kv::REVISION_UNAVAILABLE && revision > 0 =>
        {
            Error::invalid_field(
                PAGE_TOKEN_EXPIRED,
                "page_token",
                format!(
                    "has expired: the snapshot it reads (revision {revision}) is no longer available; list again without a page token"
                ),
            )
        }
        _ => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0).unwrap(), 100);
        assert_eq!(page_size(5).unwrap(), 5);
        assert_eq!(page_size(5000).unwrap(), 1000);
        assert!(page_size(-1).is_err());
    }

    #[test]
    fn tokens_round_trip_and_are_bound_to_their_listing() {
        let t = PageToken {
            listing: "flows".into(),
            revision: 42,
            after: "abc".into(),
        };
        let s = t.encode();
        assert_eq!(PageToken::decode(&s, "flows").unwrap(), Some(t));
        assert!(PageToken::decode(&s, "versions/x").is_err());
        assert_eq!(PageToken::decode("", "flows").unwrap(), None);
        for bad in [
            "!!!",
            "e30",
            "bm90IGpzb24",
            "eyJrIjoiZmxvd3MiLCJyIjowLCJhIjoiIn0",
        ] {
            let e = PageToken::decode(bad, "flows").unwrap_err();
            assert_eq!(e.violations()[0].field, "page_token", "{bad}");
        }
    }
}
