//! Validated names and numbers: once you hold a [`FlowName`], [`VersionNumber`] or [`SchemaId`], it
//! is safe to put in an etcd key, a Kubernetes object name or a URL path segment.

use std::fmt;

/// A flow name: a DNS-1123 label (1 to 63 of `a-z`, `0-9`, `-`, starting and ending with a
/// letter or digit). Flow names become etcd path segments and Kubernetes object names, so nothing
/// else is accepted: no `/`, no `.`, no upper case, no NUL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowName(String);

impl FlowName {
    /// The longest flow name: a DNS-1123 label, like a Kubernetes object name, has at most 63
    /// characters.
    pub const MAX_LEN: usize = 63;

    /// Parses a flow name; the error is a description of what is wrong, for a field violation.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("is required".into());
        }
        if s.len() > Self::MAX_LEN {
            return Err(format!(
                "must be at most {} characters (got {})",
                Self::MAX_LEN,
                s.len()
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(format!(
                "must be a DNS-1123 label (a-z, 0-9 and '-'); found {c:?}"
            ));
        }
        if s.starts_with('-') || s.ends_with('-') {
            return Err("must start and end with a letter or digit".into());
        }
        Ok(FlowName(s.to_owned()))
    }

    /// The validated name, as it appears in etcd keys and in the API's `name` fields.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The names this one extends with a `-`: for `a-b-c` that is `a` and `a-b`, shortest first.
    /// They sort before this name by name but after it by etcd key (`-` < `/`), which ListFlows
    /// has to account for to return flows in name order.
    pub fn dash_prefixes(&self) -> impl Iterator<Item = FlowName> + '_ {
        self.0
            .match_indices('-')
            .map(|(i, _)| &self.0[..i])
            // A prefix ending in '-' ("a-" of "a--b") is not a valid name.
            .filter(|p| !p.ends_with('-'))
            .map(|p| FlowName(p.to_owned()))
    }
}

impl fmt::Display for FlowName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A version number of a flow: 1, 2, 3, ... assigned by the server, never by a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VersionNumber(u64);

impl VersionNumber {
    /// Version 1: what a new flow name gets.
    pub const FIRST: VersionNumber = VersionNumber(1);

    /// `n` as a version number; `None` for 0, which the contract's `uint64 version` fields use for
    /// "no version" (an unset `spec.version` precondition, for instance).
    pub fn new(n: u64) -> Option<Self> {
        (n >= 1).then_some(VersionNumber(n))
    }

    /// The number, as the contract's `uint64 version` fields carry it.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The version after this one: a write after `latest_version` stores `latest_version + 1`.
    pub fn next(self) -> Self {
        VersionNumber(self.0 + 1)
    }

    /// Parses the decimal form used in etcd keys and in the `active` value: no sign, no leading
    /// zeros, no surrounding space. Anything else is not a version written by this contract.
    pub fn parse_canonical(s: &str) -> Option<Self> {
        if s.is_empty() || s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok().and_then(Self::new)
    }

    /// Parses a version given by a client (a path segment such as `/rollback/3`).
    pub fn parse_request(s: &str) -> Result<Self, String> {
        let n: u64 = s
            .parse()
            .map_err(|_| format!("must be a positive integer version number, got {s:?}"))?;
        Self::new(n).ok_or_else(|| "must be at least 1".to_string())
    }
}

impl fmt::Display for VersionNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Checks a stage or queue name: 1 to 253 of `A-Z a-z 0-9 . _ -`.
pub fn check_object_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("is required".into());
    }
    if s.len() > 253 {
        return Err(format!("must be at most 253 characters (got {})", s.len()));
    }
    match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(c) => Err(format!(
            "may contain only A-Z, a-z, 0-9, '.', '_' and '-'; found {c:?}"
        )),
        None => Ok(()),
    }
}

/// A schema id of the schema registry: an object name (see [`check_object_name`]) other than
/// `.` and `..`, so it is one safe etcd path segment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SchemaId(String);

impl SchemaId {
    /// Parses a schema id; the error is a description of what is wrong, for a field violation.
    pub fn parse(s: &str) -> Result<Self, String> {
        check_object_name(s)?;
        if s == "." || s == ".." {
            return Err("must not be \".\" or \"..\"".into());
        }
        Ok(SchemaId(s.to_owned()))
    }

    /// The validated id, as it appears in etcd keys and in `schema_id` fields.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SchemaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_names_are_dns_labels() {
        for ok in ["a", "example", "a-b", "0", "x1-2y", &"a".repeat(63)] {
            assert!(FlowName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a_b",
            "a.b",
            "a/b",
            "../x",
            "a\0b",
            "é",
            " a",
            &"a".repeat(64),
        ] {
            assert!(FlowName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dash_prefixes_are_the_valid_shorter_names() {
        let n = FlowName::parse("a-b--c-d").unwrap();
        let p: Vec<_> = n.dash_prefixes().map(|p| p.0).collect();
        assert_eq!(p, ["a", "a-b", "a-b--c"]);
        assert_eq!(FlowName::parse("abc").unwrap().dash_prefixes().count(), 0);
    }

    #[test]
    fn canonical_versions_have_no_leading_zeros() {
        assert_eq!(VersionNumber::parse_canonical("12").unwrap().get(), 12);
        for bad in [
            "",
            "0",
            "01",
            "-1",
            "+1",
            " 1",
            "1 ",
            "x",
            "18446744073709551616",
        ] {
            assert!(VersionNumber::parse_canonical(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn request_versions_are_positive_integers() {
        assert_eq!(VersionNumber::parse_request("3").unwrap().get(), 3);
        assert!(VersionNumber::parse_request("0").is_err());
        assert!(VersionNumber::parse_request("abc").is_err());
        assert!(VersionNumber::parse_request("-1").is_err());
        assert!(VersionNumber::parse_request("1.5").is_err());
    }

    #[test]
    fn object_names() {
        assert!(check_object_name("in_q-1.v2").is_ok());
        assert!(check_object_name("").is_err());
        assert!(check_object_name("a b").is_err());
        assert!(check_object_name("a/b").is_err());
        assert!(check_object_name(&"x".repeat(254)).is_err());
        assert!(SchemaId::parse("..").is_err());
        assert!(SchemaId::parse("com.example.Order").is_ok());
    }
}
