//! Page sizes and page tokens of ListFlows and ListFlowVersions (contract B.1).
//!
//! A token is opaque to clients: base64url of a small JSON object naming what is listed, the etcd
//! revision of the first page (later pages read the same snapshot) and the last item returned.
//! Tokens are not secret: a client that forges one can only list what it may list anyway, so they
//! are validated, not signed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::kv::KvError;

/// Page size when a request asks for 0.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Larger page sizes are treated as this.
pub const MAX_PAGE_SIZE: usize = 1000;
/// `ErrorInfo.reason` of a token this listing did not issue.
pub const INVALID_PAGE_TOKEN: &str = "INVALID_PAGE_TOKEN";
/// `ErrorInfo.reason` of a token whose snapshot the store no longer has.
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

/// What a page token holds (base64url JSON on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageToken {
    /// What is being listed: `"flows"`, or `"versions/<flow>"`.
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
    /// The token as clients see it.
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

/// The store revision every page of a listing is read at: the first page's, carried by the
/// page token. Reads at a snapshot the store has compacted away fail; for a token's snapshot
/// that means the token expired, which [`Snapshot::error`] says in the contract's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    revision: i64,
    from_token: bool,
}

impl Snapshot {
    /// The snapshot of `token`, or, for a first page, "the latest revision" until
    /// [`Snapshot::pin`] fixes it.
    pub fn of(token: Option<&PageToken>) -> Self {
        match token {
            Some(t) => Snapshot {
                revision: t.revision,
                from_token: true,
            },
            None => Snapshot {
                revision: 0,
                from_token: false,
            },
        }
    }

    /// The revision to read at (0: the latest).
    pub fn revision(self) -> i64 {
        self.revision
    }

    /// A first page's snapshot is the revision its first read was served at.
    pub fn pin(&mut self, revision: i64) {
        if self.revision == 0 {
            self.revision = revision;
        }
    }

    /// A store error of a read at this snapshot, as the API reports it.
    pub fn error(self, e: KvError) -> Error {
        match e {
            KvError::RevisionUnavailable(_) if self.from_token => Error::invalid_field(
                PAGE_TOKEN_EXPIRED,
                "page_token",
                format!(
                    "has expired: the snapshot it reads (revision {}) is no longer available; list again without a page token",
                    self.revision
                ),
            ),
            other => other.into(),
        }
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
