//! The etcd key schema (contract A.4 and B.3): the only place key strings are built or parsed.
//!
//! ```text
//! /flowpipe/flows/<name>/versions/<n>/spec   FlowSpec, binary protobuf; written once
//! /flowpipe/flows/<name>/versions/<n>/meta   {"created_at": RFC 3339}; written once with the spec
//! /flowpipe/flows/<name>/active              the active version, decimal ASCII
//! /flowpipe/flows/<name>/meta                flow metadata, JSON (API-owned)
//! /flowpipe/flows/<name>/status              FlowStatus, binary protobuf; controller-owned
//! /flowpipe/schemas/<schema_id>/versions/<v> schema definition, JSON
//! /flowpipe/schemas/<schema_id>/active       the newest schema version, decimal ASCII
//! /flowpipe/index/flows/<name>               the flow's uid; present exactly while it is live (B.6)
//! /flowpipe/index/flows-ready                "1": every live flow has its index key (B.6)
//! ```
//!
//! Keys are built only from a validated [`FlowName`] / [`SchemaId`] and [`VersionNumber`], so no
//! input can produce a key outside its own `/flowpipe/flows/<name>/` prefix, nor an index key
//! outside `/flowpipe/index/flows/`. Index keys sort in exactly the flows' name order (a name is
//! the whole rest of its key), which the flows' own keys do not (`a-b/...` < `a/...`).
//!
//! Sort order matters to the readers: under a flow's prefix `active` < `meta` < `status` <
//! `versions/`, so one range read `[active, status]` returns everything about a flow except its
//! versions, whatever their number.

use super::names::{FlowName, SchemaId, VersionNumber};

/// Every flow key starts with this.
pub const FLOWS_PREFIX: &str = "/flowpipe/flows/";
/// Every schema key starts with this.
pub const SCHEMAS_PREFIX: &str = "/flowpipe/schemas/";
/// Every key of the name index of live flows starts with this (contract B.6).
pub const FLOW_INDEX_PREFIX: &str = "/flowpipe/index/flows/";
/// Present once every live flow has its index key: ListFlows may read names from the index.
/// (`-` sorts before `/`, so this key is outside the index's own range.)
pub const FLOW_INDEX_READY: &str = "/flowpipe/index/flows-ready";
/// The value of [`FLOW_INDEX_READY`].
pub const FLOW_INDEX_READY_VALUE: &str = "1";

/// The smallest key greater than every key starting with `prefix` (etcd's `range_end` for a
/// prefix read).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (never the case for our prefixes): etcd's "to the end of the keyspace".
    vec![0]
}

/// `[start, end)` of every flow key.
pub fn all_flows() -> (Vec<u8>, Vec<u8>) {
    let start = FLOWS_PREFIX.as_bytes().to_vec();
    let end = prefix_end(&start);
    (start, end)
}

/// `[start, end)` of the name index's keys after flow `after` (all of them for `None`): in
/// name order.
pub fn flow_index_after(after: Option<&FlowName>) -> (Vec<u8>, Vec<u8>) {
    let prefix = FLOW_INDEX_PREFIX.as_bytes();
    let start = match after {
        // The first key after `<prefix><after>`.
        Some(name) => format!("{FLOW_INDEX_PREFIX}{name}\0").into_bytes(),
        None => prefix.to_vec(),
    };
    (start, prefix_end(prefix))
}

/// The flow an index key names; `None` for a key that is not `<prefix><valid name>` (written by
/// hand), which readers skip.
pub fn parse_flow_index_key(key: &[u8]) -> Option<FlowName> {
    let name = std::str::from_utf8(key)
        .ok()?
        .strip_prefix(FLOW_INDEX_PREFIX)?;
    FlowName::parse(name).ok()
}

/// The keys of one flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowKeys {
    /// `/flowpipe/flows/<name>/`
    base: String,
    /// `/flowpipe/index/flows/<name>`
    index: String,
}

impl FlowKeys {
    /// The keys of flow `name`. A validated name has no `/`, so no key leaves the flow's prefix.
    pub fn new(name: &FlowName) -> Self {
        FlowKeys {
            base: format!("{FLOWS_PREFIX}{name}/"),
            index: format!("{FLOW_INDEX_PREFIX}{name}"),
        }
    }

    fn key(&self, rest: &str) -> Vec<u8> {
        format!("{}{rest}", self.base).into_bytes()
    }

    /// `/flowpipe/flows/<name>/active`: the active version, decimal ASCII. The controller
    /// deploys that version on a put and tears the flow down on a delete.
    pub fn active(&self) -> Vec<u8> {
        self.key("active")
    }

    /// `/flowpipe/flows/<name>/meta`: the API-owned JSON [`FlowMeta`](crate::meta::FlowMeta).
    /// Every write rewrites it, so its mod revision stamps the flow's state.
    pub fn meta(&self) -> Vec<u8> {
        self.key("meta")
    }

    /// `/flowpipe/flows/<name>/status`: the controller's binary `FlowStatus`, which the API only
    /// reads.
    pub fn status(&self) -> Vec<u8> {
        self.key("status")
    }

    /// `/flowpipe/flows/<name>/versions/<v>/spec`: the binary `FlowSpec` of version `v`, written
    /// once and never changed.
    pub fn version_spec(&self, v: VersionNumber) -> Vec<u8> {
        self.key(&format!("versions/{v}/spec"))
    }

    /// `/flowpipe/flows/<name>/versions/<v>/meta`: the JSON
    /// [`VersionMeta`](crate::meta::VersionMeta) of version `v`, written once with its spec
    /// (contract B.3).
    pub fn version_meta(&self, v: VersionNumber) -> Vec<u8> {
        self.key(&format!("versions/{v}/meta"))
    }

    /// `/flowpipe/flows/<name>/versions/`
    pub fn versions_prefix(&self) -> Vec<u8> {
        self.key("versions/")
    }

    /// `/flowpipe/index/flows/<name>`: the flow's key in the name index (contract B.6).
    pub fn index(&self) -> Vec<u8> {
        self.index.clone().into_bytes()
    }

    /// `[active, status]` as a half-open range: `active`, `meta` and `status`, never a version.
    pub fn head_range(&self) -> (Vec<u8>, Vec<u8>) {
        let mut end = self.status();
        end.push(0);
        (self.active(), end)
    }

    /// The first key after every key of this flow (`/flowpipe/flows/<name>0`): where a scan
    /// continues to skip the rest of this flow's versions.
    pub fn subtree_end(&self) -> Vec<u8> {
        prefix_end(self.base.as_bytes())
    }
}

/// What a key under `/flowpipe/flows/<name>/` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowKeyKind {
    /// `active`: the active version pointer.
    Active,
    /// `meta`: the flow's metadata.
    Meta,
    /// `status`: the controller's status.
    Status,
    /// `versions/<n>/spec`, with `<n>` in canonical form (no leading zeros).
    VersionSpec(VersionNumber),
    /// `versions/<n>/meta`, with `<n>` in canonical form (no leading zeros).
    VersionMeta(VersionNumber),
    /// A key under the flow's prefix that this contract does not define (written by someone
    /// else); readers skip it.
    Other,
}

/// Splits a flow key into the flow's name and what the key is. `None` for a key that is not
/// under `/flowpipe/flows/<valid name>/`.
pub fn parse_flow_key(key: &[u8]) -> Option<(FlowName, FlowKeyKind)> {
    let key = std::str::from_utf8(key).ok()?;
    let rest = key.strip_prefix(FLOWS_PREFIX)?;
    let (name, sub) = rest.split_once('/')?;
    let name = FlowName::parse(name).ok()?;
    let kind = match sub {
        "active" => FlowKeyKind::Active,
        "meta" => FlowKeyKind::Meta,
        "status" => FlowKeyKind::Status,
        _ => match sub
            .strip_prefix("versions/")
            .and_then(|v| v.split_once('/'))
        {
            Some((n, "spec")) => VersionNumber::parse_canonical(n)
                .map(FlowKeyKind::VersionSpec)
                .unwrap_or(FlowKeyKind::Other),
            Some((n, "meta")) => VersionNumber::parse_canonical(n)
                .map(FlowKeyKind::VersionMeta)
                .unwrap_or(FlowKeyKind::Other),
            _ => FlowKeyKind::Other,
        },
    };
    Some((name, kind))
}

/// The first key after everything under the flow segment that `key` is in
/// (`/flowpipe/flows/<segment>0` for `/flowpipe/flows/<segment>/...`), whether or not the segment
/// is a valid flow name: scans use it to step over a flow's versions, and over keys that no flow
/// of this API can own. For a key with no segment of its own, the key right after it.
pub fn flow_segment_end(key: &[u8]) -> Vec<u8> {
    let prefix = FLOWS_PREFIX.as_bytes();
    match key
        .strip_prefix(prefix)
        .and_then(|rest| rest.iter().position(|b| *b == b'/'))
    {
        Some(len) => {
            let mut end = key[..prefix.len() + len].to_vec();
            end.push(b'/' + 1);
            end
        }
        None => {
            let mut next = key.to_vec();
            next.push(0);
            next
        }
    }
}

/// The version number a `versions/<n>/...` key names, for keys read from a versions prefix.
pub fn version_of_key(key: &[u8]) -> Option<VersionNumber> {
    match parse_flow_key(key)?.1 {
        FlowKeyKind::VersionSpec(v) | FlowKeyKind::VersionMeta(v) => Some(v),
        _ => None,
    }
}

/// The keys of one schema of the schema registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaKeys {
    /// `/flowpipe/schemas/<schema_id>/`
    base: String,
}

impl SchemaKeys {
    /// The keys of schema `id`. A validated id is one path segment (no `/`, not `.` or `..`).
    pub fn new(id: &SchemaId) -> Self {
        SchemaKeys {
            base: format!("{SCHEMAS_PREFIX}{id}/"),
        }
    }

    /// `/flowpipe/schemas/<schema_id>/active`: the newest version, decimal ASCII. DeleteSchema
    /// deletes it; the versions stay.
    pub fn active(&self) -> Vec<u8> {
        format!("{}active", self.base).into_bytes()
    }

    /// `/flowpipe/schemas/<schema_id>/versions/<v>`: version `v` as the JSON
    /// [`SchemaRecord`](crate::meta::SchemaRecord) of contract A.4.
    pub fn version(&self, v: u32) -> Vec<u8> {
        format!("{}versions/{v}", self.base).into_bytes()
    }

    /// `/flowpipe/schemas/<schema_id>/versions/`: the prefix of every version key of the schema.
    pub fn versions_prefix(&self) -> Vec<u8> {
        format!("{}versions/", self.base).into_bytes()
    }

    /// Every key of this schema.
    pub fn all(&self) -> (Vec<u8>, Vec<u8>) {
        let start = self.base.as_bytes().to_vec();
        let end = prefix_end(&start);
        (start, end)
    }

    /// The version a key under [`SchemaKeys::versions_prefix`] names.
    pub fn version_of(&self, key: &[u8]) -> Option<u32> {
        let key = std::str::from_utf8(key).ok()?;
        let n = key.strip_prefix(&self.base)?.strip_prefix("versions/")?;
        let v = VersionNumber::parse_canonical(n)?;
        u32::try_from(v.get()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> FlowName {
        FlowName::parse(s).unwrap()
    }

    #[test]
    fn flow_keys_match_the_contract() {
        let k = FlowKeys::new(&name("example"));
        let v3 = VersionNumber::new(3).unwrap();
        assert_eq!(k.active(), b"/flowpipe/flows/example/active");
        assert_eq!(k.meta(), b"/flowpipe/flows/example/meta");
        assert_eq!(k.status(), b"/flowpipe/flows/example/status");
        assert_eq!(
            k.version_spec(v3),
            b"/flowpipe/flows/example/versions/3/spec"
        );
        assert_eq!(
            k.version_meta(v3),
            b"/flowpipe/flows/example/versions/3/meta"
        );
        assert_eq!(k.subtree_end(), b"/flowpipe/flows/example0");
    }

    #[test]
    fn index_keys_match_the_contract_and_sort_in_name_order() {
        assert_eq!(
            FlowKeys::new(&name("example")).index(),
            b"/flowpipe/index/flows/example"
        );
        let (start, end) = flow_index_after(None);
        let inside = |key: &[u8]| start.as_slice() <= key && key < end.as_slice();
        assert!(
            !inside(FLOW_INDEX_READY.as_bytes()),
            "the marker is not an index key"
        );
        // Name order is key order: `a` < `a-b` < `a0` < `b`, as their index keys.
        let mut names = ["b", "a0", "a-b", "a"].map(name);
        let mut keys: Vec<Vec<u8>> = names.iter().map(|n| FlowKeys::new(n).index()).collect();
        names.sort();
        keys.sort();
        for (n, k) in names.iter().zip(&keys) {
            assert!(inside(k));
            assert_eq!(parse_flow_index_key(k).as_ref(), Some(n));
        }
        // After `a`: `a-b` and on, never `a` itself.
        let (after_a, _) = flow_index_after(Some(&name("a")));
        assert!(after_a.as_slice() > FlowKeys::new(&name("a")).index().as_slice());
        assert!(after_a.as_slice() < FlowKeys::new(&name("a-b")).index().as_slice());
        assert_eq!(parse_flow_index_key(b"/flowpipe/index/flows/Bad"), None);
        assert_eq!(parse_flow_index_key(b"/flowpipe/index/flows/a/b"), None);
    }

    #[test]
    fn head_range_holds_active_meta_status_and_no_version() {
        let k = FlowKeys::new(&name("f"));
        let (start, end) = k.head_range();
        let inside = |key: &[u8]| start.as_slice() <= key && key < end.as_slice();
        assert!(inside(&k.active()) && inside(&k.meta()) && inside(&k.status()));
        assert!(!inside(&k.version_spec(VersionNumber::FIRST)));
        assert!(!inside(&k.version_meta(VersionNumber::FIRST)));
        assert!(!inside(b"/flowpipe/flows/f-2/active"));
    }

    #[test]
    fn every_key_stays_under_its_flow_prefix() {
        let k = FlowKeys::new(&name("a"));
        let other = FlowKeys::new(&name("a-b"));
        for key in [k.active(), k.meta(), k.status(), k.versions_prefix()] {
            assert!(key.starts_with(b"/flowpipe/flows/a/"));
            assert!(key.as_slice() < k.subtree_end().as_slice());
            assert!(!key.starts_with(b"/flowpipe/flows/a-b/"));
        }
        assert!(!other.active().starts_with(b"/flowpipe/flows/a/"));
    }

    #[test]
    fn parse_round_trips() {
        let k = FlowKeys::new(&name("my-flow"));
        let v = VersionNumber::new(12).unwrap();
        assert_eq!(
            parse_flow_key(&k.version_spec(v)),
            Some((name("my-flow"), FlowKeyKind::VersionSpec(v)))
        );
        assert_eq!(parse_flow_key(&k.active()).unwrap().1, FlowKeyKind::Active);
        assert_eq!(
            parse_flow_key(b"/flowpipe/flows/x/versions/01/spec")
                .unwrap()
                .1,
            FlowKeyKind::Other
        );
        assert_eq!(parse_flow_key(b"/flowpipe/flows/Bad/active"), None);
        assert_eq!(parse_flow_key(b"/flowpipe/schemas/x/active"), None);
        assert_eq!(version_of_key(&k.version_meta(v)), Some(v));
    }

    #[test]
    fn segment_ends_skip_valid_and_invalid_names() {
        assert_eq!(
            flow_segment_end(b"/flowpipe/flows/a/versions/3/spec"),
            b"/flowpipe/flows/a0"
        );
        assert_eq!(
            flow_segment_end(b"/flowpipe/flows/My_Flow/active"),
            b"/flowpipe/flows/My_Flow0"
        );
        assert_eq!(
            flow_segment_end(b"/flowpipe/flows/x"),
            b"/flowpipe/flows/x\0"
        );
    }

    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), vec![0]);
        assert_eq!(all_flows().1, b"/flowpipe/flows0");
    }

    #[test]
    fn schema_keys() {
        let k = SchemaKeys::new(&SchemaId::parse("orders").unwrap());
        assert_eq!(k.active(), b"/flowpipe/schemas/orders/active");
        assert_eq!(k.version(2), b"/flowpipe/schemas/orders/versions/2");
        assert_eq!(k.version_of(&k.version(7)), Some(7));
        assert_eq!(k.version_of(b"/flowpipe/schemas/orders/versions/07"), None);
    }
}
