//! The merged list: a v2 collection that is the upstream Cloud Controller's list followed by
//! brokergate's own, as `/v2/services`, `/v2/service_plans`, `/v2/service_instances` and
//! `/v2/spaces/:guid/services` answer it. Pure: the caller asks the upstream and the store.
//!
//! The rule, for page k of size n:
//! - the merged list is the upstream's list, then brokergate's, each in its own order (in
//!   the requested direction; `desc` reverses each list, not their concatenation);
//! - brokergate asks the upstream for page k of size n with the same query, once;
//! - the page's remaining places come from brokergate's list starting at
//!   `max(0, (k-1)·n − upstream_total)` ([`own_window`]);
//! - `total_results` is the sum of both totals, and the page links are rebuilt on it
//!   ([`render_merged`], through [`render_page`]).
//!
//! Why this rule: the two lists share no sort key (the upstream orders by its own row ids,
//! brokergate by its own), so an interleaving would need every item of both; putting one list
//! wholly before the other makes page k of the merge exactly page k of the upstream, topped
//! up from brokergate. One upstream call per page, which also tells the upstream's total, so
//! brokergate's offset needs no second call; and pages are consecutive windows of one
//! concatenation, so while neither list changes every item appears on exactly one page.

use serde::de::{Deserialize, Deserializer, Error as _};
use serde_json::value::RawValue;

use super::list::{render_page, ListQuery};

/// One page of the upstream's v2 list: its `total_results` and its resources, kept byte for
/// byte so the client sees exactly what the upstream rendered.
#[derive(Debug)]
pub struct UpstreamPage {
    pub total_results: u64,
    pub resources: Vec<Box<RawValue>>,
}

/// Why an upstream answer cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamPageError {
    /// Not `{"total_results": <u64>, "resources": [<object>, …], …}`.
    #[error("the upstream's answer is not a v2 list: {0}")]
    NotAList(#[source] serde_json::Error),
    /// More resources than the page size asked for: see [`UpstreamPage::parse`].
    #[error("the upstream answered {returned} resources for a page of {per_page}")]
    PageTooLong { returned: usize, per_page: u32 },
}

impl UpstreamPage {
    /// Nothing from the upstream: for a query the upstream need not be asked (a `q` that
    /// names a guid only brokergate knows), so the page is brokergate's list alone.
    pub fn empty() -> UpstreamPage {
        UpstreamPage {
            total_results: 0,
            resources: Vec::new(),
        }
    }

    /// Reads the upstream's answer to a page of `per_page`. The other keys (`total_pages`,
    /// the links) are ignored: they are rebuilt on the merged total.
    ///
    /// More than `per_page` resources is an error, not truncated: an upstream that ignores
    /// `results-per-page` pages its list in another size, so its page k is not the stretch
    /// of its list that the merged page k stands for, and cutting it would silently skip or
    /// repeat items across pages. (Memory is bounded by the body, which the caller reads
    /// with a bound.) A shorter page than `total_results` implies is taken as it is: the
    /// upstream counts and pages in separate queries, so a list changing meanwhile may do
    /// that, and refusing it would make lists fail while they change.
    pub fn parse(body: &[u8], per_page: u32) -> Result<UpstreamPage, UpstreamPageError> {
        let list: WireList = serde_json::from_slice(body).map_err(UpstreamPageError::NotAList)?;
        let returned = list.resources.len();
        if returned > usize::try_from(per_page).unwrap_or(usize::MAX) {
            return Err(UpstreamPageError::PageTooLong { returned, per_page });
        }
        Ok(UpstreamPage {
            total_results: list.total_results,
            resources: list.resources.into_iter().map(|r| r.0).collect(),
        })
    }

    /// [`own_window`] for this page of the upstream's answer to `q`.
    pub fn own_window(&self, q: &ListQuery) -> OwnWindow {
        own_window(q.page, q.per_page, self.total_results, self.resources.len())
    }
}

/// The stretch of brokergate's own list (in the requested direction) that completes a
/// merged page: the store's `offset` and `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnWindow {
    pub offset: u64,
    pub limit: u32,
}

/// The window of brokergate's list for page `page` (1-based) of `per_page`, given the
/// upstream's total and how many items the upstream put on that page. Brokergate's list
/// starts at merged position `upstream_total`, so page k takes it from
/// `max(0, (k-1)·n − upstream_total)`, for the places the upstream left: `n −
/// upstream_on_page`, 0 when the upstream filled the page.
///
/// The limit is also held to the places that `upstream_total` leaves brokergate on this page
/// (`k·n − max((k-1)·n, upstream_total)`). For an upstream whose page agrees with its total the
/// two are equal; for one whose list changed between its count and its page (a short page
/// before its last), this keeps each of brokergate's items on its one page instead of also
/// filling the short page with items that a later page shows again.
///
/// Saturating throughout: `page` and `per_page` come from clients (list.rs bounds them to
/// `u32` and 1..=100, so `(k-1)·n` fits a `u64` anyway) and `upstream_total` from the upstream.
pub fn own_window(
    page: u32,
    per_page: u32,
    upstream_total: u64,
    upstream_on_page: usize,
) -> OwnWindow {
    let page_start = u64::from(page.saturating_sub(1)).saturating_mul(u64::from(per_page));
    let page_end = page_start.saturating_add(u64::from(per_page));
    let offset = page_start.saturating_sub(upstream_total);
    let places_after_upstream_total = page_end
        .saturating_sub(upstream_total)
        .saturating_sub(offset);
    let places_upstream_left =
        per_page.saturating_sub(u32::try_from(upstream_on_page).unwrap_or(u32::MAX));
    OwnWindow {
        offset,
        // At most `places_upstream_left`, a u32.
        limit: u32::try_from(places_after_upstream_total)
            .map_or(places_upstream_left, |p| p.min(places_upstream_left)),
    }
}

/// The merged page `q.page` as a v2 collection body: the upstream's resources verbatim, then
/// brokergate's `own` (the store's answer for [`own_window`]), with `total_results` the sum of
/// both totals (saturating) and the links [`render_page`] builds on it. Never more than
/// `q.per_page` resources: `own` past the places the upstream left is not shown.
pub fn render_merged<R: AsRef<[u8]>>(
    path: &str,
    q: &ListQuery,
    upstream: &UpstreamPage,
    own_total: u64,
    own: &[R],
) -> Vec<u8> {
    let per_page = usize::try_from(q.per_page).unwrap_or(usize::MAX);
    let resources: Vec<&[u8]> = upstream
        .resources
        .iter()
        .map(|r| r.get().as_bytes())
        .chain(own.iter().map(AsRef::as_ref))
        .take(per_page)
        .collect();
    let total = upstream.total_results.saturating_add(own_total);
    render_page(path, q, total, &resources)
}

/// The part of a v2 list body that is read.
#[derive(serde::Deserialize)]
struct WireList {
    total_results: u64,
    resources: Vec<WireResource>,
}

/// A resource as the upstream wrote it; v2 resources are `{metadata, entity}` objects.
struct WireResource(Box<RawValue>);

impl<'de> Deserialize<'de> for WireResource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        if !raw.get().starts_with('{') {
            return Err(D::Error::custom("a resource is not an object"));
        }
        Ok(WireResource(raw))
    }
}

#[cfg(test)]
mod tests;
