use proptest::prelude::*;
use serde_json::value::RawValue;

use super::*;
use crate::cc::list::{parse, Direction, MAX_PER_PAGE};

const PATH: &str = "/v2/services";
const FIELDS: &[&str] = &["label", "service_broker_guid"];

/// Both lists in ascending order, by guid: `u1…` the upstream's, `b1…` brokergate's.
struct Model {
    upstream: Vec<String>,
    own: Vec<String>,
}

impl Model {
    fn new(upstream_len: usize, own_len: usize) -> Model {
        Model {
            upstream: (1..=upstream_len).map(upstream_resource).collect(),
            own: (1..=own_len).map(own_resource).collect(),
        }
    }

    /// The merged list the rule promises: each list in the direction, upstream's first.
    fn merged(&self, direction: Direction) -> Vec<String> {
        let mut all = ordered(&self.upstream, direction);
        all.extend(ordered(&self.own, direction));
        all
    }

    /// What brokergate answers for `query`: the upstream asked for the same page, its answer
    /// parsed, the store asked for the window, the two merged.
    fn serve(&self, query: &str) -> Merged {
        let q = parse(Some(query), FIELDS).unwrap();
        let body = upstream_answer(&ordered(&self.upstream, q.direction), &q);
        let upstream = UpstreamPage::parse(&body, q.per_page).unwrap();
        let window = upstream.own_window(&q);
        // The store is asked for exactly the places the upstream left, so nothing is cut.
        assert_eq!(
            u64::from(window.limit) + u64::try_from(upstream.resources.len()).unwrap(),
            u64::from(q.per_page)
        );
        let own = ordered(&self.own, q.direction);
        let start = usize::try_from(window.offset)
            .unwrap_or(usize::MAX)
            .min(own.len());
        let end = start
            .saturating_add(usize::try_from(window.limit).unwrap())
            .min(own.len());
        let rows: Vec<Vec<u8>> = own[start..end].iter().map(|r| r.clone().into()).collect();
        let own_total = u64::try_from(self.own.len()).unwrap();
        Merged::read(&render_merged(PATH, &q, &upstream, own_total, &rows))
    }
}

/// An upstream resource as the Cloud Controller writes it (pretty, with an escape), so that a
/// re-serialization would show.
fn upstream_resource(i: usize) -> String {
    format!(
        "{{\n      \"metadata\": {{\n        \"guid\": \"u{i}\"\n      }},\n      \"entity\": {{\n        \"label\": \"caf\\u00e9 \\/ {i}\"\n      }}\n    }}"
    )
}

fn own_resource(i: usize) -> String {
    format!(r#"{{"metadata":{{"guid":"b{i}"}},"entity":{{"label":"own {i}"}}}}"#)
}

fn ordered(list: &[String], direction: Direction) -> Vec<String> {
    let mut list = list.to_vec();
    if direction == Direction::Desc {
        list.reverse();
    }
    list
}

/// The upstream's answer to page `q.page` of `q.per_page` of `list` (already in `q`'s
/// direction), pretty-printed as the Cloud Controller prints it.
fn upstream_answer(list: &[String], q: &ListQuery) -> Vec<u8> {
    let start = usize::try_from(q.offset()).unwrap().min(list.len());
    let end = (start + usize::try_from(q.per_page).unwrap()).min(list.len());
    format!(
        "{{\n  \"total_results\": {},\n  \"total_pages\": 99,\n  \"prev_url\": null,\n  \"next_url\": \"/v2/services?page=2\",\n  \"resources\": [\n    {}\n  ]\n}}\n",
        list.len(),
        list[start..end].join(",\n    ")
    )
    .into_bytes()
}

/// A merged body as read back, the resources as their exact bytes.
#[derive(serde::Deserialize)]
struct Merged {
    total_results: u64,
    total_pages: u64,
    prev_url: Option<String>,
    next_url: Option<String>,
    resources: Vec<Box<RawValue>>,
}

impl Merged {
    fn read(body: &[u8]) -> Merged {
        serde_json::from_slice(body).unwrap()
    }

    fn raw(&self) -> Vec<String> {
        self.resources.iter().map(|r| r.get().to_string()).collect()
    }

    fn guids(&self) -> Vec<String> {
        self.resources
            .iter()
            .map(|r| {
                let v: serde_json::Value = serde_json::from_str(r.get()).unwrap();
                v["metadata"]["guid"].as_str().unwrap().to_string()
            })
            .collect()
    }
}

/// Every page of `model` at `per_page`, as guids.
fn pages(model: &Model, per_page: u32, direction: &str) -> Vec<Vec<String>> {
    let first = model.serve(&format!(
        "results-per-page={per_page}&order-direction={direction}"
    ));
    (1..=first.total_pages)
        .map(|k| {
            model
                .serve(&format!(
                    "page={k}&results-per-page={per_page}&order-direction={direction}"
                ))
                .guids()
        })
        .collect()
}

fn guids(list: &[&str]) -> Vec<String> {
    list.iter().map(|g| g.to_string()).collect()
}

#[test]
fn upstream_five_own_three_by_two() {
    let model = Model::new(5, 3);
    assert_eq!(
        pages(&model, 2, "asc"),
        vec![
            guids(&["u1", "u2"]),
            guids(&["u3", "u4"]),
            guids(&["u5", "b1"]),
            guids(&["b2", "b3"]),
        ]
    );
    // Each list reversed in its place; the upstream's still comes first.
    assert_eq!(
        pages(&model, 2, "desc"),
        vec![
            guids(&["u5", "u4"]),
            guids(&["u3", "u2"]),
            guids(&["u1", "b3"]),
            guids(&["b2", "b1"]),
        ]
    );
    let third = model.serve("page=3&results-per-page=2");
    assert_eq!((third.total_results, third.total_pages), (8, 4));
    assert_eq!(
        third.prev_url.as_deref(),
        Some("/v2/services?order-direction=asc&page=2&results-per-page=2")
    );
    assert_eq!(
        third.next_url.as_deref(),
        Some("/v2/services?order-direction=asc&page=4&results-per-page=2")
    );
}

#[test]
fn a_page_bigger_than_both_lists_holds_them_all_without_links() {
    let merged = Model::new(3, 2).serve("results-per-page=10");
    assert_eq!(merged.guids(), guids(&["u1", "u2", "u3", "b1", "b2"]));
    assert_eq!((merged.total_results, merged.total_pages), (5, 1));
    assert_eq!((merged.prev_url, merged.next_url), (None, None));
}

#[test]
fn an_empty_upstream_leaves_brokergates_list() {
    assert_eq!(
        pages(&Model::new(0, 3), 2, "asc"),
        vec![guids(&["b1", "b2"]), guids(&["b3"])]
    );
}

#[test]
fn an_empty_own_list_leaves_the_upstreams() {
    assert_eq!(
        pages(&Model::new(3, 0), 2, "asc"),
        vec![guids(&["u1", "u2"]), guids(&["u3"])]
    );
}

#[test]
fn both_empty_is_one_empty_page_without_links() {
    let q = parse(None, FIELDS).unwrap();
    let upstream = UpstreamPage::parse(br#"{"total_results":0,"resources":[]}"#, 50).unwrap();
    assert_eq!(
        upstream.own_window(&q),
        OwnWindow {
            offset: 0,
            limit: 50
        }
    );
    assert_eq!(
        String::from_utf8(render_merged::<Vec<u8>>(PATH, &q, &upstream, 0, &[])).unwrap(),
        r#"{"total_results":0,"total_pages":1,"prev_url":null,"next_url":null,"resources":[]}"#
    );
}

#[test]
fn a_page_past_both_lists_is_empty_and_links_back() {
    let merged = Model::new(2, 1).serve("page=3&results-per-page=2");
    assert_eq!(merged.guids(), Vec::<String>::new());
    assert_eq!((merged.total_results, merged.total_pages), (3, 2));
    assert_eq!(
        merged.prev_url.as_deref(),
        Some("/v2/services?order-direction=asc&page=2&results-per-page=2")
    );
    assert_eq!(merged.next_url, None);
}

#[test]
fn the_window_starts_where_the_upstreams_list_ends() {
    // Upstream total 5, pages of 2: page 3 holds u5 and b1, page 4 b2 and b3.
    assert_eq!(
        own_window(1, 2, 5, 2),
        OwnWindow {
            offset: 0,
            limit: 0
        }
    );
    assert_eq!(
        own_window(3, 2, 5, 1),
        OwnWindow {
            offset: 0,
            limit: 1
        }
    );
    assert_eq!(
        own_window(4, 2, 5, 0),
        OwnWindow {
            offset: 1,
            limit: 2
        }
    );
    assert_eq!(
        own_window(9, 2, 5, 0),
        OwnWindow {
            offset: 11,
            limit: 2
        }
    );
    // Nothing from the upstream: brokergate's list is the whole merge.
    assert_eq!(
        own_window(3, 2, 0, 0),
        OwnWindow {
            offset: 4,
            limit: 2
        }
    );
}

#[test]
fn a_page_that_disagrees_with_its_total_moves_no_item_of_brokergates() {
    // Total 10 but a short page 1 (a row went between the count and the page): b1 stays at
    // merged position 10, on page 6, rather than also filling page 1.
    assert_eq!(
        own_window(1, 2, 10, 1),
        OwnWindow {
            offset: 0,
            limit: 0
        }
    );
    assert_eq!(
        own_window(5, 2, 10, 0),
        OwnWindow {
            offset: 0,
            limit: 0
        }
    );
    assert_eq!(
        own_window(6, 2, 10, 0),
        OwnWindow {
            offset: 0,
            limit: 2
        }
    );
    // Total 5 but a full page 3 (a row came): the page is full, b1 waits for page 4.
    assert_eq!(
        own_window(3, 2, 5, 2),
        OwnWindow {
            offset: 0,
            limit: 0
        }
    );
    assert_eq!(
        own_window(4, 2, 5, 0),
        OwnWindow {
            offset: 1,
            limit: 2
        }
    );
    // Total 5 and an empty page 3 (a row went): b1 at position 5 only.
    assert_eq!(
        own_window(3, 2, 5, 0),
        OwnWindow {
            offset: 0,
            limit: 1
        }
    );
}

#[test]
fn a_guid_only_brokergate_knows_is_answered_without_the_upstream() {
    let q = parse(
        Some("q=service_broker_guid:b-only&results-per-page=2"),
        FIELDS,
    )
    .unwrap();
    let upstream = UpstreamPage::empty();
    assert_eq!(
        upstream.own_window(&q),
        OwnWindow {
            offset: 0,
            limit: 2
        }
    );
    let merged = Merged::read(&render_merged(PATH, &q, &upstream, 1, &[own_resource(1)]));
    assert_eq!(merged.guids(), guids(&["b1"]));
    assert_eq!((merged.total_results, merged.total_pages), (1, 1));
}

#[test]
fn upstream_resources_are_kept_byte_for_byte() {
    let first = upstream_resource(1);
    let body =
        format!("{{ \"resources\" : [ {first} , {{ }} ], \"total_results\" : 7, \"extra\": [1] }}");
    let upstream = UpstreamPage::parse(body.as_bytes(), 2).unwrap();
    assert_eq!(upstream.total_results, 7);
    let raw: Vec<&str> = upstream.resources.iter().map(|r| r.get()).collect();
    assert_eq!(raw, vec![first.as_str(), "{ }"]);

    let q = parse(Some("results-per-page=3"), FIELDS).unwrap();
    let merged = render_merged(PATH, &q, &upstream, 1, &[own_resource(1)]);
    let merged = String::from_utf8(merged).unwrap();
    assert!(
        merged.ends_with(&format!(
            r#""resources":[{first},{{ }},{}]}}"#,
            own_resource(1)
        )),
        "{merged}"
    );
    assert!(merged.starts_with(r#"{"total_results":8,"total_pages":3,"#));
}

#[test]
fn a_body_that_is_not_a_v2_list_is_refused() {
    for body in [
        "",
        "<html></html>",
        "[]",
        "{}",
        "null",
        r#"{"total_results":1}"#,
        r#"{"resources":[]}"#,
        r#"{"total_results":-1,"resources":[]}"#,
        r#"{"total_results":"1","resources":[]}"#,
        r#"{"total_results":1.5,"resources":[]}"#,
        r#"{"total_results":1,"resources":{}}"#,
        r#"{"total_results":1,"resources":null}"#,
        r#"{"total_results":1,"resources":[1]}"#,
        r#"{"total_results":1,"resources":["{}"]}"#,
        r#"{"total_results":1,"resources":[null]}"#,
        r#"{"total_results":1,"resources":[[]]}"#,
        r#"{"total_results":1,"resources":[{"a":}]}"#,
        r#"{"total_results":1,"total_results":2,"resources":[]}"#,
        r#"{"total_results":0,"resources":[]} {}"#,
        r#"{"code":10000,"description":"Unknown request","error_code":"CF-NotFound"}"#,
    ] {
        assert!(
            matches!(
                UpstreamPage::parse(body.as_bytes(), 50),
                Err(UpstreamPageError::NotAList(_))
            ),
            "{body}"
        );
    }
    let err = UpstreamPage::parse(br#"{"total_results":1,"resources":[2]}"#, 50).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the upstream's answer is not a v2 list: a resource is not an object at line 1 column 34"
    );
}

#[test]
fn a_page_longer_than_asked_is_refused() {
    let body = br#"{"total_results":9,"resources":[{},{},{}]}"#;
    let err = UpstreamPage::parse(body, 2).unwrap_err();
    assert!(
        matches!(
            err,
            UpstreamPageError::PageTooLong {
                returned: 3,
                per_page: 2
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "the upstream answered 3 resources for a page of 2"
    );
    assert_eq!(UpstreamPage::parse(body, 3).unwrap().resources.len(), 3);
}

#[test]
fn a_merged_page_is_never_longer_than_asked() {
    let q = parse(Some("results-per-page=2"), FIELDS).unwrap();
    // The fields are public: an upstream page built by hand may be too long.
    let upstream = UpstreamPage {
        total_results: 3,
        resources: (1..=3)
            .map(|i| RawValue::from_string(upstream_resource(i)).unwrap())
            .collect(),
    };
    let merged = Merged::read(&render_merged(PATH, &q, &upstream, 1, &[own_resource(1)]));
    assert_eq!(merged.guids(), guids(&["u1", "u2"]));
    // More own rows than the window's places: the first ones fill them.
    let upstream = UpstreamPage::parse(br#"{"total_results":3,"resources":[{}]}"#, 2).unwrap();
    let own: Vec<String> = (1..=3).map(own_resource).collect();
    let merged = Merged::read(&render_merged(PATH, &q, &upstream, 3, &own));
    assert_eq!(merged.raw(), vec!["{}".to_string(), own_resource(1)]);
}

#[test]
fn the_largest_page_and_page_size_never_overflow() {
    let q = parse(
        Some(&format!(
            "page={}&results-per-page={MAX_PER_PAGE}",
            u32::MAX
        )),
        FIELDS,
    )
    .unwrap();
    let before_page = u64::from(u32::MAX - 1) * u64::from(MAX_PER_PAGE);
    assert_eq!(
        own_window(q.page, q.per_page, 0, 0),
        OwnWindow {
            offset: before_page,
            limit: MAX_PER_PAGE
        }
    );
    let upstream = UpstreamPage {
        total_results: u64::MAX,
        resources: Vec::new(),
    };
    // The upstream's total covers this page: brokergate's list starts after it.
    assert_eq!(
        upstream.own_window(&q),
        OwnWindow {
            offset: 0,
            limit: 0
        }
    );
    let merged = Merged::read(&render_merged::<Vec<u8>>(
        PATH,
        &q,
        &upstream,
        u64::MAX,
        &[],
    ));
    assert_eq!(merged.total_results, u64::MAX);
    assert_eq!(merged.total_pages, u64::MAX.div_ceil(100));
    assert_eq!(merged.next_url, None, "no page after u32::MAX");
    assert_eq!(
        merged.prev_url.as_deref(),
        Some("/v2/services?order-direction=asc&page=4294967294&results-per-page=100")
    );
    // Beyond what list.rs admits, still no panic.
    assert_eq!(
        own_window(u32::MAX, u32::MAX, 0, usize::MAX),
        OwnWindow {
            offset: u64::from(u32::MAX - 1) * u64::from(u32::MAX),
            limit: 0
        }
    );
    assert_eq!(
        own_window(0, 100, 0, 0),
        OwnWindow {
            offset: 0,
            limit: 100
        }
    );
    assert_eq!(
        own_window(1, 0, u64::MAX, 0),
        OwnWindow {
            offset: 0,
            limit: 0
        }
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Walking every page of the merge gives the model's merged list: every item exactly
    /// once, the upstream's first in their order, then brokergate's in theirs, with the
    /// totals, page lengths and links of a list of the summed length.
    #[test]
    fn every_item_appears_once_upstream_first(
        upstream_len in 0usize..60,
        own_len in 0usize..60,
        per_page in prop_oneof![1u32..=20, Just(MAX_PER_PAGE)],
        desc in any::<bool>(),
        filtered in any::<bool>(),
    ) {
        let model = Model::new(upstream_len, own_len);
        let direction = if desc { "desc" } else { "asc" };
        let (q_given, q_linked) = if filtered {
            ("&q=label:a+b&q=service_broker_guid+IN+s1,s2", "&q=label:a%20b&q=service_broker_guid%20IN%20s1,s2")
        } else {
            ("", "")
        };
        let link = |page: u64| {
            format!("{PATH}?order-direction={direction}&page={page}{q_linked}&results-per-page={per_page}")
        };
        let total = u64::try_from(upstream_len + own_len).unwrap();
        let n = u64::from(per_page);
        let total_pages = total.div_ceil(n).max(1);

        let mut walked = Vec::new();
        for k in 1..=total_pages + 1 {
            let merged = model.serve(&format!(
                "order-direction={direction}{q_given}&results-per-page={per_page}&page={k}"
            ));
            walked.extend(merged.raw());
            prop_assert_eq!(merged.total_results, total);
            prop_assert_eq!(merged.total_pages, total_pages);
            let remaining = total.saturating_sub((k - 1) * n);
            prop_assert_eq!(u64::try_from(merged.resources.len()).unwrap(), remaining.min(n));
            prop_assert_eq!(merged.prev_url, (k > 1).then(|| link(k - 1)));
            prop_assert_eq!(merged.next_url, (k < total_pages).then(|| link(k + 1)));
        }
        prop_assert_eq!(walked, model.merged(if desc { Direction::Desc } else { Direction::Asc }));
    }

    /// However many items an upstream puts on each page (a list changing under it), the
    /// windows never overlap, never take a place the upstream took, and, where the upstream
    /// agrees with its total, cover brokergate's list.
    #[test]
    fn windows_never_overlap_whatever_the_upstream_puts_on_a_page(
        upstream_total in 0u64..60,
        own_len in 0u64..60,
        per_page in prop_oneof![1u32..=20, Just(MAX_PER_PAGE)],
        on_page in proptest::collection::vec(0u32..=MAX_PER_PAGE, 10),
    ) {
        let pages = (upstream_total + own_len).div_ceil(u64::from(per_page)).max(1);
        let mut shown = vec![0u32; usize::try_from(own_len).unwrap()];
        let mut shown_if_agreeing = shown.clone();
        for k in 1..=u32::try_from(pages).unwrap() + 1 {
            let index = usize::try_from(k).unwrap() % on_page.len();
            let upstream_on_page = on_page[index].min(per_page);
            let window = own_window(k, per_page, upstream_total, usize::try_from(upstream_on_page).unwrap());
            prop_assert!(window.limit + upstream_on_page <= per_page);
            for i in window.offset..window.offset + u64::from(window.limit) {
                if let Some(n) = shown.get_mut(usize::try_from(i).unwrap()) {
                    *n += 1;
                }
            }
            let page_start = u64::from(k - 1) * u64::from(per_page);
            let agreeing = u32::try_from(upstream_total.saturating_sub(page_start).min(u64::from(per_page))).unwrap();
            let window = own_window(k, per_page, upstream_total, usize::try_from(agreeing).unwrap());
            prop_assert_eq!(window.limit, per_page - agreeing);
            for i in window.offset..window.offset + u64::from(window.limit) {
                if let Some(n) = shown_if_agreeing.get_mut(usize::try_from(i).unwrap()) {
                    *n += 1;
                }
            }
        }
        prop_assert!(shown.iter().all(|n| *n <= 1), "{:?}", shown);
        prop_assert!(shown_if_agreeing.iter().all(|n| *n == 1), "{:?}", shown_if_agreeing);
    }
}
