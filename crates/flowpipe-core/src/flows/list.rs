//! ListFlows (contract B.4): live flows in name order, a page at a time, every page read at the
//! first page's store revision; names from the name index of B.6 once it is ready, discovered
//! under the key schema of A.4 until then.

use std::collections::{BTreeMap, BTreeSet};

use super::{FlowHead, FlowRegistry};
use crate::environment::Environment;
use crate::error::Result;
use crate::keys::{self, FlowKeyKind};
use crate::kv::{Kv, RangeRequest, Txn};
use crate::names::{FlowName, VersionNumber};
use crate::pagination::{self, PageToken, Snapshot};
use crate::proto::v1::{FlowStatus, FlowSummary, ListFlowsResponse};

/// Most keys one ListFlows discovery read asks for. etcd (3.4 and 3.5) walks every key of a
/// range to count it, whatever the limit, so a page costs etcd (reads × keys after the cursor):
/// fewer, larger reads are cheaper for it. This bounds one response to about 1 MiB of keys.
const MAX_SCAN_KEYS: i64 = 10_000;
/// Keys the first discovery read of a page asks for per flow it wants, before it has seen how
/// many keys a flow has: a one-version flow has 4 or 5 (active, meta, status, versions/1/...),
/// so a page of such flows is found in one read.
const FIRST_SCAN_KEYS_PER_FLOW: usize = 6;

/// What one keys-only discovery read of ListFlows found, and what the next read should ask
/// for.
#[derive(Debug, Default)]
struct DiscoveryRead {
    /// Flows with an `active` key (live, or deleted by a writer that kept `active`), in key
    /// order.
    active: Vec<FlowName>,
    /// Where the next read starts: past the subtree of the last flow seen, whose versions may
    /// have been cut off by the limit. `None` once the range is exhausted.
    next: Option<Vec<u8>>,
    /// Keys per flow among the flows this read saw whole (an estimate for the next limit).
    keys_per_flow: Option<usize>,
}

impl DiscoveryRead {
    /// The limit of a page's first read, for `want` flows.
    fn first_limit(want: usize) -> i64 {
        ((FIRST_SCAN_KEYS_PER_FLOW * want) as i64).clamp(16, MAX_SCAN_KEYS)
    }

    /// Reads the keys (without any namespace) of one discovery read; `more` is etcd's `more`.
    fn parse<'a>(keys: impl IntoIterator<Item = &'a [u8]>, more: bool) -> Self {
        // Keys per flow segment, in key order; the last segment may be cut off.
        let mut segments: Vec<usize> = Vec::new();
        let mut last_end: Option<Vec<u8>> = None;
        let mut active = Vec::new();
        for key in keys {
            let end = keys::flow_segment_end(key);
            if last_end.as_ref() != Some(&end) {
                segments.push(0);
                last_end = Some(end);
            }
            if let Some(n) = segments.last_mut() {
                *n += 1;
            }
            match keys::parse_flow_key(key) {
                Some((name, FlowKeyKind::Active)) => active.push(name),
                Some(_) => {}
                // Not a name this API accepts (written by an older writer): such a flow cannot
                // be addressed through the API, so it is not listed.
                None => {
                    tracing::debug!(key = %String::from_utf8_lossy(key), "skipping key of an invalid flow name");
                }
            }
        }
        match (last_end, more) {
            (Some(next), true) => {
                let whole = &segments[..segments.len() - 1];
                let keys_per_flow =
                    (!whole.is_empty()).then(|| whole.iter().sum::<usize>() / whole.len() + 1);
                DiscoveryRead {
                    active,
                    next: Some(next),
                    keys_per_flow,
                }
            }
            _ => DiscoveryRead {
                active,
                next: None,
                keys_per_flow: None,
            },
        }
    }

    /// The limit of the next read, to find `missing` more flows: sized from the flows this read
    /// saw whole, else `current` again.
    fn next_limit(&self, missing: usize, current: i64) -> i64 {
        self.keys_per_flow.map_or(current, |per_flow| {
            ((missing.max(1) * per_flow) as i64).clamp(16, MAX_SCAN_KEYS)
        })
    }
}

/// One page of live flows' heads in name order, and where the next page starts.
pub(crate) struct HeadPage {
    /// The page's live flows.
    pub(crate) heads: Vec<FlowHead>,
    /// The name the next page starts after; `None` on the last page.
    pub(crate) resume_after: Option<FlowName>,
}

/// A page of ListFlows, and where its names came from.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowPage {
    /// What the API returns.
    pub response: ListFlowsResponse,
    /// The names came from the name index (contract B.6); `false` while the index is not ready
    /// (no `flows-ready` marker: data written by the original API), when they were discovered
    /// under the flows' own keys, the slow way.
    pub from_index: bool,
}

impl<K: Kv, E: Environment> FlowRegistry<K, E> {
    /// ListFlows: live flows in name order, a page at a time, every page read at the first page's
    /// store revision (contract B.4).
    pub async fn list(&self, page_size: i32, page_token: &str) -> Result<ListFlowsResponse> {
        Ok(self.list_page(page_size, page_token).await?.response)
    }

    /// ListFlows, saying whether the name index served it (callers that build the index when
    /// it is missing want to know).
    ///
    /// With the index ready, a page is two round trips whatever the number of versions per
    /// flow: one transaction reads the `flows-ready` marker and the page's index keys (a range
    /// limited to the page), another the heads of those flows, both at one revision. A flow whose
    /// index key exists without an `active` key (hand-edited data) is skipped. Without the
    /// marker, names are discovered under A.4's keys, the slow way.
    pub async fn list_page(&self, page_size: i32, page_token: &str) -> Result<FlowPage> {
        let size = pagination::page_size(page_size)?;
        let token = PageToken::decode(page_token, "flows")?;
        let after = match &token {
            Some(t) => Some(
                FlowName::parse(&t.after).map_err(|_| pagination::invalid_token("bad position"))?,
            ),
            None => None,
        };
        let mut snapshot = Snapshot::of(token.as_ref());
        let (page, from_index) = match self.index_page(size, after.as_ref(), &mut snapshot).await? {
            Some(page) => (page, true),
            None => (self.discover(size, after, &mut snapshot).await?, false),
        };
        let flows = page
            .heads
            .iter()
            .map(|head| FlowSummary {
                name: head.name.as_str().to_owned(),
                status: Some(head.status().unwrap_or_else(|e| {
                    tracing::warn!(flow = %head.name, error = %e, "listing a flow with an unreadable status");
                    FlowStatus::default()
                })),
                version: head.active.map_or(0, VersionNumber::get),
            })
            .collect();
        let next_page_token = page.resume_after.map_or_else(String::new, |after| {
            PageToken {
                listing: "flows".into(),
                revision: snapshot.revision(),
                after: after.as_str().to_owned(),
            }
            .encode()
        });
        Ok(FlowPage {
            response: ListFlowsResponse {
                flows,
                next_page_token,
            },
            from_index,
        })
    }

    /// A page from the name index, or `None` when the index is not ready at the snapshot.
    async fn index_page(
        &self,
        size: usize,
        after: Option<&FlowName>,
        snapshot: &mut Snapshot,
    ) -> Result<Option<HeadPage>> {
        let (start, end) = keys::flow_index_after(after);
        let resp = self
            .kv
            .txn(Txn::read([
                RangeRequest::key(keys::FLOW_INDEX_READY).at_revision(snapshot.revision()),
                RangeRequest::range(start, end)
                    .keys_only()
                    .limit(i64::try_from(size + 1).unwrap_or(i64::MAX))
                    .at_revision(snapshot.revision()),
            ]))
            .await
            .map_err(|e| snapshot.error(e))?;
        snapshot.pin(resp.revision);
        if resp.range(0)?.kvs.is_empty() {
            return Ok(None);
        }
        let index = resp.range(1)?;
        let mut names: Vec<FlowName> = Vec::with_capacity(index.kvs.len());
        for kv in &index.kvs {
            match keys::parse_flow_index_key(&kv.key) {
                Some(name) => names.push(name),
                None => {
                    tracing::debug!(key = %String::from_utf8_lossy(&kv.key), "skipping an index key that names no valid flow");
                }
            }
        }
        // One key more than the page says whether another page follows.
        let more = index.kvs.len() > size || (index.more && index.kvs.len() >= size);
        names.truncate(size);
        let resume_after = if more { names.last().cloned() } else { None };
        let mut heads = self.read_heads(&names, *snapshot).await?;
        heads.retain(FlowHead::is_live);
        heads.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Some(HeadPage {
            heads,
            resume_after,
        }))
    }

    /// A page of live flows found without the index: keys-only range reads under
    /// `/flowpipe/flows/` that skip the rest of a flow's subtree as soon as its name is known,
    /// then the page's heads, batched into transactions. Per page, a bounded number of reads
    /// whose size does not depend on how many versions the flows have, but etcd (up to 3.6)
    /// walks every key after the cursor to count a range, which is why the index exists.
    ///
    /// Name order is not etcd key order here: `a-b/...` sorts before `a/...` because `-` < `/`.
    /// A name sorts after the names it extends with `-`, so for every name found, those shorter
    /// names (`a` for `a-b`) are looked up too; the page is then the smallest live names, which
    /// is exactly the name-ordered page (see `list_flows_in_name_order_across_pages` in the
    /// store conformance suite).
    pub(crate) async fn discover(
        &self,
        size: usize,
        after: Option<FlowName>,
        snapshot: &mut Snapshot,
    ) -> Result<HeadPage> {
        let want = size + 1; // one more than the page tells whether there is a next page
        let (start, end) = keys::all_flows();
        // Names after `after` by name start at `<after>-` by key (see the method docs above).
        let mut cursor = match &after {
            Some(a) => format!("{}{a}-", keys::FLOWS_PREFIX).into_bytes(),
            None => start,
        };
        let is_after = |n: &FlowName| after.as_ref().is_none_or(|a| n > a);

        // Names the scan found with an `active` key, and the shorter names they extend.
        let mut scanned: BTreeSet<FlowName> = BTreeSet::new();
        let mut probes: BTreeSet<FlowName> = BTreeSet::new();
        // Heads read so far: `Some` for a live flow, `None` for one that is not.
        let mut heads: BTreeMap<FlowName, Option<FlowHead>> = BTreeMap::new();
        // Scanned names that are live or not read yet: an upper bound of what the page can use.
        let possible = |scanned: &BTreeSet<FlowName>,
                        heads: &BTreeMap<FlowName, Option<FlowHead>>| {
            scanned
                .iter()
                .filter(|n| heads.get(*n).is_none_or(Option::is_some))
                .count()
        };
        let mut exhausted = false;
        let mut limit = DiscoveryRead::first_limit(want);

        loop {
            while !exhausted && possible(&scanned, &heads) < want {
                let resp = self
                    .kv
                    .range(
                        RangeRequest::range(cursor.clone(), end.clone())
                            .keys_only()
                            .limit(limit)
                            .at_revision(snapshot.revision()),
                    )
                    .await
                    .map_err(|e| snapshot.error(e))?;
                snapshot.pin(resp.revision);
                let read =
                    DiscoveryRead::parse(resp.kvs.iter().map(|kv| kv.key.as_slice()), resp.more);
                for name in read.active.iter().filter(|n| is_after(n)) {
                    probes.extend(name.dash_prefixes().filter(|p| is_after(p)));
                    scanned.insert(name.clone());
                }
                match &read.next {
                    // Skip the rest of the last flow (its versions), and size the next read
                    // from the flows this one saw whole.
                    Some(next) => {
                        cursor = next.clone();
                        limit =
                            read.next_limit(want.saturating_sub(possible(&scanned, &heads)), limit);
                    }
                    None => exhausted = true,
                }
            }

            let unread: Vec<FlowName> = scanned
                .iter()
                .chain(&probes)
                .filter(|n| !heads.contains_key(*n))
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            for head in self.read_heads(&unread, *snapshot).await? {
                let live = head.is_live().then_some(head.clone());
                heads.insert(head.name, live);
            }
            if exhausted || possible(&scanned, &heads) >= want {
                break;
            }
        }

        let mut live: Vec<FlowHead> = heads.into_values().flatten().collect();
        let more = live.len() > size;
        live.truncate(size);
        let resume_after = if more {
            live.last().map(|h| h.name.clone())
        } else {
            None
        };
        Ok(HeadPage {
            heads: live,
            resume_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_of(flows: &[(&str, usize)]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for (name, versions) in flows {
            let base = format!("{}{name}/", keys::FLOWS_PREFIX);
            out.push(format!("{base}active").into_bytes());
            out.push(format!("{base}meta").into_bytes());
            for v in 1..=*versions {
                out.push(format!("{base}versions/{v}/meta").into_bytes());
                out.push(format!("{base}versions/{v}/spec").into_bytes());
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_discovery_read_skips_the_flow_it_cut_off_and_sizes_the_next_read() {
        // Two whole flows of 3 versions (8 keys each), then the first keys of a third.
        let mut keys = keys_of(&[("a", 3), ("b", 3)]);
        keys.extend(keys_of(&[("c", 3)]).into_iter().take(3));
        let read = DiscoveryRead::parse(keys.iter().map(Vec::as_slice), true);
        let names: Vec<&str> = read.active.iter().map(FlowName::as_str).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(
            read.next.as_deref(),
            Some(format!("{}c0", keys::FLOWS_PREFIX).as_bytes())
        );
        // 8 keys a flow (+1 to round up): 10 more flows are 90 keys, within the bounds.
        assert_eq!(read.next_limit(10, 500), 90);
        assert_eq!(read.next_limit(0, 500), 16);
        assert_eq!(read.next_limit(1_000_000, 500), MAX_SCAN_KEYS);
    }

    #[test]
    fn a_discovery_read_that_saw_no_whole_flow_keeps_its_limit() {
        let keys = keys_of(&[("only", 50)]);
        let read = DiscoveryRead::parse(keys.iter().take(20).map(Vec::as_slice), true);
        assert_eq!(read.next_limit(10, 640), 640);
        let last = DiscoveryRead::parse(keys.iter().map(Vec::as_slice), false);
        assert!(last.next.is_none());
        assert_eq!(DiscoveryRead::first_limit(101), 606);
        assert_eq!(DiscoveryRead::first_limit(1), 16);
    }
}
