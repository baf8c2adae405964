//! The read operations: GetFlow, GetFlowStatus, GetFlowVersion and ListFlowVersions.

use super::{FlowHead, FlowRegistry, decode_spec, parse_flow_name, version_not_found};
use crate::environment::Environment;
use crate::error::{Error, Result};
use crate::keys::FlowKeys;
use crate::kv::{Kv, RangeRequest, Txn};
use crate::meta::{VersionMeta, timestamp};
use crate::names::{FlowName, VersionNumber};
use crate::pagination::{self, PageToken, Snapshot};
use crate::proto::v1::{Flow, FlowStatus, FlowVersion, ListFlowVersionsResponse};

impl<K: Kv, E: Environment> FlowRegistry<K, E> {
    /// GetFlow: the active version, its spec, status and meta, all at one store revision.
    pub async fn get(&self, name: &str) -> Result<Flow> {
        let name = parse_flow_name(name)?;
        let keys = FlowKeys::new(&name);
        let head = self.read_head(&name, &keys).await?;
        let active = head.live()?;
        let spec = self.read_spec(&head, active).await?;
        head.flow(&head.meta(), active, spec)
    }

    /// GetFlowStatus: the controller's status, empty if it wrote none yet.
    pub async fn status(&self, name: &str) -> Result<FlowStatus> {
        let name = parse_flow_name(name)?;
        let keys = FlowKeys::new(&name);
        let head = self.read_head(&name, &keys).await?;
        head.live()?;
        head.status()
    }

    /// GetFlowVersion: the flow as it was at `version`, without status; and the active version
    /// (for the REST ETag).
    pub async fn get_version(&self, name: &str, version: u64) -> Result<(Flow, VersionNumber)> {
        let name = parse_flow_name(name)?;
        let v = VersionNumber::new(version).ok_or_else(|| {
            Error::invalid_field("INVALID_VERSION", "version", "must be at least 1")
        })?;
        let keys = FlowKeys::new(&name);
        let resp = self
            .kv
            .txn(Txn::read([
                FlowHead::range(&keys),
                RangeRequest::key(keys.version_spec(v)),
                RangeRequest::key(keys.version_meta(v)),
            ]))
            .await?;
        let head = FlowHead::parse(&name, &keys, resp.range(0)?)?;
        let active = head.live()?;
        let spec = match resp.range(1)?.kvs.first() {
            Some(kv) => decode_spec(&name, v, &kv.value)?,
            None => return Err(version_not_found(&name, v)),
        };
        let created = match resp.range(2)?.kvs.first() {
            Some(kv) => VersionMeta::decode(name.as_str(), &kv.value)?.created_at,
            None => None,
        };
        let mut flow = head.flow_without_status(&head.meta(), v, spec);
        flow.update_time = created.map(timestamp);
        Ok((flow, active))
    }

    /// ListFlowVersions: every version of a live flow, ascending, a page at a time. Versions are
    /// numbered 1..=latest, so a page is read by number (one small read per version, batched),
    /// never by scanning the flow's keys.
    pub async fn list_versions(
        &self,
        name: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<ListFlowVersionsResponse> {
        let name = parse_flow_name(name)?;
        let size = pagination::page_size(page_size)?;
        let listing = format!("versions/{name}");
        let token = PageToken::decode(page_token, &listing)?;
        let after = match &token {
            Some(t) => t
                .after
                .parse::<u64>()
                .map_err(|_| pagination::invalid_token("bad position"))?,
            None => 0,
        };
        self.list_versions_page(&name, size, after, Snapshot::of(token.as_ref()))
            .await
    }

    async fn list_versions_page(
        &self,
        name: &FlowName,
        size: usize,
        after: u64,
        mut snapshot: Snapshot,
    ) -> Result<ListFlowVersionsResponse> {
        let keys = FlowKeys::new(name);
        let resp = self
            .kv
            .range(FlowHead::range(&keys).at_revision(snapshot.revision()))
            .await
            .map_err(|e| snapshot.error(e))?;
        let head = FlowHead::parse(name, &keys, &resp)?;
        let active = head.live()?;
        let latest = self
            .latest_version(&head, false)
            .await?
            .map_or(0, VersionNumber::get);
        // A forged token can say anything: `after` beyond every version is just an empty page.
        let first = after.saturating_add(1);
        let last = latest.min(after.saturating_add(size as u64));
        let numbers: Vec<VersionNumber> = (first..=last).filter_map(VersionNumber::new).collect();

        snapshot.pin(head.revision);
        // Every version this API wrote has its meta: one small read per version. Only versions
        // without one (written by the original API, or a gap) need a second look, keys-only, at
        // their spec.
        let metas = self
            .read_keys(
                numbers.iter().map(|v| keys.version_meta(*v)),
                snapshot,
                false,
            )
            .await?;
        let unmetered: Vec<VersionNumber> = numbers
            .iter()
            .zip(&metas)
            .filter(|(_, m)| m.is_none())
            .map(|(v, _)| *v)
            .collect();
        let specs = self
            .read_keys(
                unmetered.iter().map(|v| keys.version_spec(*v)),
                snapshot,
                true,
            )
            .await?;
        // `specs` answers the versions without meta, in the same order.
        let mut specs = specs.into_iter();
        let mut versions = Vec::with_capacity(numbers.len());
        for (v, meta) in numbers.iter().zip(metas) {
            let created = match meta {
                Some(kv) => VersionMeta::decode(name.as_str(), &kv.value)?.created_at,
                None if specs.next().flatten().is_none() => {
                    continue; // no such version: a gap left by data this API did not write
                }
                None => None,
            };
            versions.push(FlowVersion {
                version: v.get(),
                create_time: created.map(timestamp),
                active: *v == active,
            });
        }
        let next_page_token = if last < latest {
            PageToken {
                listing: format!("versions/{name}"),
                revision: snapshot.revision(),
                after: last.to_string(),
            }
            .encode()
        } else {
            String::new()
        };
        Ok(ListFlowVersionsResponse {
            versions,
            next_page_token,
        })
    }
}
