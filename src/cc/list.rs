//! The Cloud Controller v2 list query (`page`, `results-per-page`, `order-direction`, `q`,
//! `inline-relations-depth`) and the paginated collection body with its page links, as
//! cloud_controller_ng reads and writes them. Pure: no store, no broker, no pingora.
//!
//! Sources (cloudfoundry/cloud_controller_ng): `lib/cloud_controller/rest_controller/
//! common_params.rb` (which keys, `Integer()`), `lib/vcap/rest_api/query.rb` (`q`),
//! `lib/cloud_controller/rest_controller/paginated_collection_renderer.rb` (bounds, links,
//! body), `order_applicator.rb` (direction), `app/controllers/base/model_controller.rb`
//! (`order-by`), `config/cloud_controller.yml` (`renderer:` 50/100/3); Sequel's
//! `pagination` extension (page count, prev/next); Addressable 2.9.0 (link encoding).

use std::borrow::Cow;
use std::fmt::Write as _;

use url::form_urlencoded;

use super::ApiError;

/// CC's `renderer.default_results_per_page`.
pub const DEFAULT_PER_PAGE: u32 = 50;
/// CC's `renderer.max_results_per_page`.
pub const MAX_PER_PAGE: u32 = 100;
/// CC's `renderer.max_inline_relations_depth`.
pub const MAX_INLINE_RELATIONS_DEPTH: u8 = 3;
/// brokergate's bound (CC has none): `q` parameters per request, and filters (`;`-separated
/// segments) across all of them.
pub const MAX_FILTERS: usize = 50;
/// brokergate's bound (CC has none): bytes of one decoded `q` value.
pub const MAX_Q_BYTES: usize = 1024;
/// brokergate's bound (CC has none): values in one `IN` list.
pub const MAX_IN_VALUES: usize = 100;

/// `order-direction`: CC accepts exactly `asc` or `desc` (case-sensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    Asc,
    Desc,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Asc => "asc",
            Direction::Desc => "desc",
        }
    }
}

/// One `q` filter: a row matches when its `field` equals any of `values`. `:` gives one
/// value, ` IN ` the comma-separated list. Empty `values` is CC's `field IS NULL` (a `q`
/// with no operator, or an empty `IN` list): it matches only rows without the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub field: &'static str,
    pub values: Vec<String>,
}

/// A parsed list query. Filters combine with AND, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// 1-based.
    pub page: u32,
    /// 1..=[`MAX_PER_PAGE`].
    pub per_page: u32,
    pub direction: Direction,
    pub filters: Vec<Filter>,
    /// 0..=[`MAX_INLINE_RELATIONS_DEPTH`] when given; the links repeat it.
    pub inline_relations_depth: Option<u8>,
    /// `Some(1)` makes [`render_page`] add CC's `"orphans":{}`: CC moves inlined relations
    /// there, so it is empty while the resources inline none.
    pub orphan_relations: Option<i64>,
    /// The decoded `q` values as given, for the links.
    q: Vec<String>,
    /// `include-relations`/`exclude-relations` (split on `,`, as CC splits them) and the
    /// endpoint's preserved parameters: the other keys CC's links repeat.
    carried: Vec<(&'static str, Vec<String>)>,
}

impl ListQuery {
    /// Rows to skip before this page.
    pub fn offset(&self) -> u64 {
        u64::from(self.page.saturating_sub(1)) * u64::from(self.per_page)
    }

    /// Rows on a full page.
    pub fn limit(&self) -> u64 {
        u64::from(self.per_page)
    }
}

/// Rendered resources as one JSON array, for a relation inlined into a resource.
pub fn json_array<R: AsRef<[u8]>>(resources: &[R]) -> Box<serde_json::value::RawValue> {
    let mut out = String::from("[");
    for (i, resource) in resources.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&String::from_utf8_lossy(resource.as_ref()));
    }
    out.push(']');
    // Each resource was rendered by serde_json: the array is valid JSON.
    serde_json::value::RawValue::from_string(out).unwrap_or_default()
}

/// [`parse_preserving`] for an endpoint that preserves no parameter of its own.
pub fn parse(query: Option<&str>, fields: &'static [&'static str]) -> Result<ListQuery, ApiError> {
    parse_preserving(query, fields, &[])
}

/// Parses a raw query string (as `http::Uri::query()` gives it) the way CC v2 does.
/// `fields` are the fields `q` may name (CC's `query_parameters`); `preserved` are the
/// endpoint's own keys the links repeat (CC's `preserve_query_parameters`, e.g.
/// `return_user_provided_service_instances` on `/v2/service_instances`; not CC's own keys).
///
/// Where CC would fail with a 500 (a non-integer or `0` page, `results-per-page=0`, …)
/// this answers 10005, and so does a `q` operator other than `:` and ` IN `: brokergate
/// filters by equality only. Every `order-by` is CC's 10012: none of these collections
/// declares a sortable parameter. Refusals come in CC's order: integer syntax, `order-by`,
/// `q`, the upper bounds, `order-direction`, then the lower bounds.
pub fn parse_preserving(
    query: Option<&str>,
    fields: &'static [&'static str],
    preserved: &'static [&'static str],
) -> Result<ListQuery, ApiError> {
    let raw = query.unwrap_or("");
    let given = Given::read(raw, preserved);

    // CommonParams: `Integer()` on each, in its key order.
    let depth = integer_param(&given.depth, "inline_relations_depth")?;
    let page = integer_param(&given.page, "page")?;
    let per_page = integer_param(&given.per_page, "results_per_page")?;
    let orphan_relations = integer_param(&given.orphan, "orphan_relations")?;

    // ModelController#enumerate, before the query.
    if let Some(value) = &given.order_by {
        return Err(ApiError::order_by_parameter_invalid(
            value.as_deref().unwrap_or(""),
        ));
    }

    // Query: a `q` counts only when Rack sees one (its last `q` has a value); its values
    // come from CGI.parse, which also splits on `;`.
    let q = if matches!(given.q, Some(Some(_))) {
        q_values(raw)?
    } else {
        Vec::new()
    };
    let filters = parse_filters(&q, fields)?;

    // PaginatedCollectionRenderer#validate, then OrderApplicator#validate!.
    let per_page = per_page.unwrap_or(i64::from(DEFAULT_PER_PAGE));
    if per_page > i64::from(MAX_PER_PAGE) {
        return Err(bad(format!("results_per_page must be <= {MAX_PER_PAGE}")));
    }
    let inline_relations_depth = match depth {
        None => None,
        Some(d) if d > i64::from(MAX_INLINE_RELATIONS_DEPTH) => {
            return Err(bad(format!(
                "inline_relations_depth must be <= {MAX_INLINE_RELATIONS_DEPTH}"
            )))
        }
        Some(d) => {
            Some(u8::try_from(d).map_err(|_| bad("inline_relations_depth must be >= 0".into()))?)
        }
    };
    let direction = match given.direction.flatten().as_deref() {
        None | Some("asc") => Direction::Asc,
        Some("desc") => Direction::Desc,
        Some(other) => {
            return Err(bad(format!(
                "order_direction must be 'asc' or 'desc' but was '{other}'"
            )))
        }
    };

    // Where Sequel's paginate would fail.
    let per_page = u32::try_from(per_page)
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| bad("results_per_page must be >= 1".into()))?;
    let page = page.unwrap_or(1);
    if page < 1 {
        return Err(bad("page must be >= 1".into()));
    }
    let page = u32::try_from(page).map_err(|_| bad(format!("page must be <= {}", u32::MAX)))?;

    let mut carried = Vec::new();
    for (key, value) in [
        ("include-relations", given.include),
        ("exclude-relations", given.exclude),
    ] {
        if let Some(v) = value.flatten() {
            carried.push((key, ruby_split(&v, ',')));
        }
    }
    for (key, value) in preserved.iter().zip(given.preserved) {
        if let Some(v) = value.flatten() {
            carried.push((*key, vec![v]));
        }
    }

    Ok(ListQuery {
        page,
        per_page,
        direction,
        filters,
        inline_relations_depth,
        orphan_relations,
        q,
        carried,
    })
}

/// The link to `page` of this query, in CC's form: Addressable's `query_values=` (keys
/// sorted, a list repeats its key) then `normalize`, e.g.
/// `/v2/service_instances?order-direction=asc&page=2&q=name:a&results-per-page=50`.
/// `path` is used as given (CC normalizes it; brokergate's paths are already normal).
pub fn page_url(path: &str, q: &ListQuery, page: u32) -> String {
    let page = page.to_string();
    let per_page = q.per_page.to_string();
    let depth = q.inline_relations_depth.map(|d| d.to_string());
    let orphan = q.orphan_relations.map(|o| o.to_string());

    let mut params: Vec<(&str, Vec<&str>)> = vec![
        ("order-direction", vec![q.direction.as_str()]),
        ("page", vec![&page]),
        ("results-per-page", vec![&per_page]),
    ];
    if let Some(d) = &depth {
        params.push(("inline-relations-depth", vec![d]));
    }
    if let Some(o) = &orphan {
        params.push(("orphan-relations", vec![o]));
    }
    if !q.q.is_empty() {
        params.push(("q", q.q.iter().map(String::as_str).collect()));
    }
    for (key, values) in &q.carried {
        params.push((key, values.iter().map(String::as_str).collect()));
    }
    params.sort_by(|a, b| a.0.cmp(b.0));

    let mut url = String::with_capacity(path.len() + 96);
    url.push_str(path);
    let mut sep = '?';
    for (key, values) in params {
        for value in values {
            url.push(sep);
            sep = '&';
            encode_into(&mut url, key);
            url.push('=');
            encode_into(&mut url, value);
        }
    }
    url
}

/// The collection body, `{"total_results","total_pages","prev_url","next_url","resources"}`
/// in CC's key order; `resources` are already-rendered `{metadata, entity}` objects, spliced
/// in verbatim. An empty collection has one page (Sequel's `page_count`); a page past the
/// end has no resources and a `prev_url` to the page before it, as CC's.
pub fn render_page<R: AsRef<[u8]>>(
    path: &str,
    q: &ListQuery,
    total_results: u64,
    resources: &[R],
) -> Vec<u8> {
    // `max(1)`: the fields are public, and a zero must not divide.
    let total_pages = total_results.div_ceil(u64::from(q.per_page.max(1))).max(1);
    let prev = (q.page > 1).then(|| page_url(path, q, q.page - 1));
    let next = (u64::from(q.page) < total_pages)
        .then(|| q.page.checked_add(1))
        .flatten()
        .map(|p| page_url(path, q, p));

    let size: usize = resources.iter().map(|r| r.as_ref().len() + 1).sum();
    let mut out = Vec::with_capacity(size + 2 * path.len() + 320);
    let mut head = String::new();
    // Writing to a String cannot fail.
    let _ = write!(
        head,
        r#"{{"total_results":{total_results},"total_pages":{total_pages},"prev_url":{},"next_url":{},"resources":["#,
        json_url(prev.as_deref()),
        json_url(next.as_deref()),
    );
    out.extend_from_slice(head.as_bytes());
    for (i, resource) in resources.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(resource.as_ref());
    }
    out.push(b']');
    if q.orphan_relations == Some(1) {
        out.extend_from_slice(br#","orphans":{}"#);
    }
    out.push(b'}');
    out
}

/// What Rack's params hold for the keys that matter: the last occurrence of each key wins,
/// and a key without `=` is Rack's `nil` (the outer `Some` says the key was present).
#[derive(Default)]
struct Given {
    page: Option<Option<String>>,
    per_page: Option<Option<String>>,
    direction: Option<Option<String>>,
    depth: Option<Option<String>>,
    orphan: Option<Option<String>>,
    include: Option<Option<String>>,
    exclude: Option<Option<String>>,
    order_by: Option<Option<String>>,
    q: Option<Option<String>>,
    preserved: Vec<Option<Option<String>>>,
}

impl Given {
    fn read(raw: &str, preserved: &[&str]) -> Self {
        let mut given = Given {
            preserved: vec![None; preserved.len()],
            ..Given::default()
        };
        for piece in raw.split('&') {
            let Some((key, value)) = decode_pair(piece) else {
                continue;
            };
            let slot = match key.as_ref() {
                "page" => &mut given.page,
                "results-per-page" => &mut given.per_page,
                "order-direction" => &mut given.direction,
                "inline-relations-depth" => &mut given.depth,
                "orphan-relations" => &mut given.orphan,
                "include-relations" => &mut given.include,
                "exclude-relations" => &mut given.exclude,
                "order-by" => &mut given.order_by,
                "q" => &mut given.q,
                other => match preserved.iter().position(|p| *p == other) {
                    Some(i) => &mut given.preserved[i],
                    None => continue,
                },
            };
            *slot = Some(value.map(Cow::into_owned));
        }
        given
    }
}

/// One `key[=value]` piece, form-decoded (`+` is a space); `None` value when there is no `=`.
fn decode_pair(piece: &str) -> Option<(Cow<'_, str>, Option<Cow<'_, str>>)> {
    let (key, value) = form_urlencoded::parse(piece.as_bytes()).next()?;
    Some((key, piece.contains('=').then_some(value)))
}

/// CGI.parse's `q` values (pieces split on `&` and `;`), bounded.
fn q_values(raw: &str) -> Result<Vec<String>, ApiError> {
    let mut values = Vec::new();
    for piece in raw.split(['&', ';']) {
        let Some((key, Some(value))) = decode_pair(piece) else {
            continue;
        };
        if key != "q" {
            continue;
        }
        if values.len() == MAX_FILTERS {
            return Err(too_many_filters());
        }
        if value.len() > MAX_Q_BYTES {
            return Err(bad(format!("q is limited to {MAX_Q_BYTES} bytes")));
        }
        values.push(value.into_owned());
    }
    Ok(values)
}

/// A `q` comparison, as query.rb's `/(:|>=|<=|<|>| IN )/` finds it.
#[derive(Clone, Copy)]
enum Op {
    Equals,
    In,
    /// Supported by CC on some columns, not by brokergate.
    Unsupported(&'static str),
    /// No comparison at all: CC's `IS NULL`.
    Missing,
}

/// Query#parse: every `q` splits on `;` (`;;` is a literal `;`), each segment at its first
/// comparison; every field is checked before any value is looked at.
fn parse_filters(q: &[String], allowed: &'static [&'static str]) -> Result<Vec<Filter>, ApiError> {
    let mut parsed = Vec::new();
    for value in q {
        for segment in segments(value) {
            if parsed.len() == MAX_FILTERS {
                return Err(too_many_filters());
            }
            let (key, op, rest) = split_comparison(&segment);
            let Some(field) = allowed.iter().copied().find(|f| *f == key) else {
                return Err(bad(key.to_string()));
            };
            parsed.push((field, op, rest.to_string()));
        }
    }
    parsed
        .into_iter()
        .map(|(field, op, rest)| {
            let values = match op {
                Op::Equals => vec![rest],
                Op::In => ruby_split(&rest, ','),
                Op::Missing => Vec::new(),
                Op::Unsupported(op) => return Err(bad(op.to_string())),
            };
            if values.len() > MAX_IN_VALUES {
                return Err(bad(format!("IN is limited to {MAX_IN_VALUES} values")));
            }
            Ok(Filter { field, values })
        })
        .collect()
}

/// `q.gsub(';;', uuid).split(';')`, then the uuid back to `;`: Ruby's split drops trailing
/// empty segments (so `""` has none) but keeps leading and inner ones.
fn segments(q: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = q.chars().peekable();
    while let Some(c) = chars.next() {
        if c != ';' {
            current.push(c);
        } else if chars.next_if_eq(&';').is_some() {
            current.push(';');
        } else {
            out.push(std::mem::take(&mut current));
        }
    }
    out.push(current);
    while out.last().is_some_and(String::is_empty) {
        out.pop();
    }
    out
}

/// `segment.split(/(:|>=|<=|<|>| IN )/, 2)`: the leftmost comparison, alternatives tried in
/// that order at each position; `IN` is case-sensitive and needs its spaces.
fn split_comparison(segment: &str) -> (&str, Op, &str) {
    let bytes = segment.as_bytes();
    for i in 0..bytes.len() {
        let rest = &bytes[i..];
        let (op, len) = if rest.starts_with(b":") {
            (Op::Equals, 1)
        } else if rest.starts_with(b">=") {
            (Op::Unsupported(">="), 2)
        } else if rest.starts_with(b"<=") {
            (Op::Unsupported("<="), 2)
        } else if rest.starts_with(b"<") {
            (Op::Unsupported("<"), 1)
        } else if rest.starts_with(b">") {
            (Op::Unsupported(">"), 1)
        } else if rest.starts_with(b" IN ") {
            (Op::In, 4)
        } else {
            continue;
        };
        // The comparisons are ASCII, so both ends are char boundaries.
        return (&segment[..i], op, &segment[i + len..]);
    }
    (segment, Op::Missing, "")
}

/// Ruby's `String#split(sep)`: trailing empty fields dropped, so `""` and `","` give none.
fn ruby_split(s: &str, sep: char) -> Vec<String> {
    let mut parts: Vec<String> = s.split(sep).map(str::to_string).collect();
    while parts.last().is_some_and(String::is_empty) {
        parts.pop();
    }
    parts
}

/// `Integer(value)` for a key Rack holds a value for; `name` is CC's (underscored) key name.
fn integer_param(value: &Option<Option<String>>, name: &str) -> Result<Option<i64>, ApiError> {
    match value.as_ref().and_then(Option::as_deref) {
        None => Ok(None),
        Some(v) => integer(v)
            .map(Some)
            .ok_or_else(|| bad(format!("{name} must be an integer"))),
    }
}

/// Ruby's `Integer()` on decimal input: surrounding whitespace, an optional sign, digits
/// (saturating, so an enormous value still fails its bound). Unlike Ruby, `0x…`, `0b…`,
/// `1_000` and octal `010` are not read (`010` is ten here, eight in CC).
fn integer(v: &str) -> Option<i64> {
    let v = v.trim_matches(|c: char| c.is_ascii_whitespace());
    let (negative, digits) = match v.as_bytes().first() {
        Some(b'-') => (true, &v[1..]),
        Some(b'+') => (false, &v[1..]),
        _ => (false, v),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let magnitude = digits.bytes().fold(0i64, |n, b| {
        n.saturating_mul(10).saturating_add(i64::from(b - b'0'))
    });
    Some(if negative { -magnitude } else { magnitude })
}

/// A key or value as Addressable 2.9.0 leaves it in CC's links: `query_values=` percent-
/// encodes all but unreserved bytes, then `normalize` decodes again whatever
/// `NormalizeCharacterClasses::QUERY` allows (`!$'()*+,=:@/?` too) except `+`, which stays
/// `%2B`; a `%` is `%25` unless `2B`/`2b` follows it (then it stays, upcased: Addressable's
/// own quirk). So `name:a b` is `name:a%20b`. Addressable also applies Unicode NFC; this
/// does not.
fn encode_into(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && matches!(bytes.get(i + 1..i + 3), Some(b"2B") | Some(b"2b")) {
            out.push_str("%2B");
            i += 3;
            continue;
        }
        if b.is_ascii_alphanumeric() || b"-._~!$'()*,=:@/?".contains(&b) {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
        i += 1;
    }
}

fn json_url(url: Option<&str>) -> String {
    // A string always serializes.
    url.map_or_else(
        || "null".into(),
        |u| serde_json::to_string(u).unwrap_or_default(),
    )
}

fn bad(detail: String) -> ApiError {
    ApiError::bad_query_parameter(&detail)
}

fn too_many_filters() -> ApiError {
    bad(format!("q is limited to {MAX_FILTERS} filters"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &[&str] = &[
        "name",
        "space_guid",
        "service_plan_guid",
        "gateway_name",
        "organization_guid",
    ];
    const PATH: &str = "/v2/service_instances";

    fn ok(query: &str) -> ListQuery {
        parse(Some(query), FIELDS).unwrap()
    }

    /// The 10005 description for `query`.
    fn refused(query: &str) -> String {
        let err = parse(Some(query), FIELDS).unwrap_err();
        assert_eq!(
            (err.status, err.code, err.error_code),
            (400, 10005, "CF-BadQueryParameter"),
            "{query}"
        );
        err.description
    }

    fn filter(field: &'static str, values: &[&str]) -> Filter {
        Filter {
            field,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn text(body: Vec<u8>) -> String {
        String::from_utf8(body).unwrap()
    }

    #[test]
    fn defaults_when_nothing_that_matters_is_given() {
        for query in [
            None,
            Some(""),
            Some("&&"),
            Some("foo=bar&page&results-per-page"),
        ] {
            let q = parse(query, FIELDS).unwrap();
            assert_eq!(q.page, 1, "{query:?}");
            assert_eq!(q.per_page, 50);
            assert_eq!(q.direction, Direction::Asc);
            assert_eq!(q.filters, vec![]);
            assert_eq!(q.inline_relations_depth, None);
            assert_eq!(q.orphan_relations, None);
            assert_eq!((q.offset(), q.limit()), (0, 50));
            assert_eq!(
                page_url(PATH, &q, 1),
                "/v2/service_instances?order-direction=asc&page=1&results-per-page=50"
            );
        }
    }

    #[test]
    fn page_and_results_per_page_give_offset_and_limit() {
        let q = ok("page=3&results-per-page=20");
        assert_eq!((q.page, q.per_page, q.offset(), q.limit()), (3, 20, 40, 20));
        assert_eq!(ok("results-per-page=100").per_page, 100);
        assert_eq!(ok("results-per-page=1").per_page, 1);
        // Ruby's Integer() allows surrounding whitespace; `+` decodes to a space.
        assert_eq!(ok("page=+7+").page, 7);
        assert_eq!(ok("page=%2B7").page, 7);
        // Rack: the last occurrence wins, and a bare key is nil.
        assert_eq!(ok("page=2&page=5").page, 5);
        assert_eq!(ok("page=5&page").page, 1);
        let q = ok("page=4294967295&results-per-page=100");
        assert_eq!(q.offset(), 4_294_967_294 * 100);
    }

    #[test]
    fn results_per_page_above_the_maximum_is_ccs_exact_refusal() {
        let err = parse(Some("results-per-page=101"), FIELDS).unwrap_err();
        assert_eq!(
            text(err.body()),
            "{\"code\":10005,\"description\":\"The query parameter is invalid: results_per_page must be <= 100\",\"error_code\":\"CF-BadQueryParameter\"}\n"
        );
        assert_eq!(
            refused("results-per-page=99999999999999999999999"),
            "The query parameter is invalid: results_per_page must be <= 100"
        );
    }

    #[test]
    fn results_per_page_below_one_or_not_an_integer_is_refused() {
        for query in ["results-per-page=0", "results-per-page=-3"] {
            assert_eq!(
                refused(query),
                "The query parameter is invalid: results_per_page must be >= 1"
            );
        }
        for query in [
            "results-per-page=abc",
            "results-per-page=",
            "results-per-page=1.5",
            "results-per-page=0x10",
            "results-per-page=-",
        ] {
            assert_eq!(
                refused(query),
                "The query parameter is invalid: results_per_page must be an integer",
                "{query}"
            );
        }
    }

    #[test]
    fn page_bounds() {
        for query in ["page=0", "page=-1"] {
            assert_eq!(
                refused(query),
                "The query parameter is invalid: page must be >= 1"
            );
        }
        for query in ["page=abc", "page=", "page=1e3"] {
            assert_eq!(
                refused(query),
                "The query parameter is invalid: page must be an integer"
            );
        }
        assert_eq!(
            refused("page=4294967296"),
            "The query parameter is invalid: page must be <= 4294967295"
        );
    }

    #[test]
    fn order_direction_is_asc_or_desc_exactly() {
        assert_eq!(ok("order-direction=asc").direction, Direction::Asc);
        assert_eq!(ok("order-direction=desc").direction, Direction::Desc);
        assert_eq!(ok("order-direction").direction, Direction::Asc);
        assert_eq!(
            refused("order-direction=DESC"),
            "The query parameter is invalid: order_direction must be 'asc' or 'desc' but was 'DESC'"
        );
        assert_eq!(
            refused("order-direction="),
            "The query parameter is invalid: order_direction must be 'asc' or 'desc' but was ''"
        );
        assert_eq!(
            refused("order-direction=side+ways"),
            "The query parameter is invalid: order_direction must be 'asc' or 'desc' but was 'side ways'"
        );
    }

    #[test]
    fn inline_relations_depth_is_kept_up_to_three() {
        assert_eq!(
            ok("inline-relations-depth=0").inline_relations_depth,
            Some(0)
        );
        assert_eq!(
            ok("inline-relations-depth=3").inline_relations_depth,
            Some(3)
        );
        assert_eq!(
            refused("inline-relations-depth=4"),
            "The query parameter is invalid: inline_relations_depth must be <= 3"
        );
        assert_eq!(
            refused("inline-relations-depth=-1"),
            "The query parameter is invalid: inline_relations_depth must be >= 0"
        );
        assert_eq!(
            refused("inline-relations-depth=deep"),
            "The query parameter is invalid: inline_relations_depth must be an integer"
        );
    }

    #[test]
    fn orphan_relations_is_an_integer() {
        assert_eq!(ok("orphan-relations=1").orphan_relations, Some(1));
        assert_eq!(
            refused("orphan-relations=yes"),
            "The query parameter is invalid: orphan_relations must be an integer"
        );
    }

    #[test]
    fn order_by_is_ccs_500_since_no_collection_here_is_sortable() {
        let err = parse(Some("order-by=name"), FIELDS).unwrap_err();
        assert_eq!(err.status, 500);
        assert_eq!(
            text(err.body()),
            "{\"code\":10012,\"description\":\"Cannot order by: name\",\"error_code\":\"CF-OrderByParameterInvalid\"}\n"
        );
        let err = parse(Some("order-by"), FIELDS).unwrap_err();
        assert_eq!(err.description, "Cannot order by: ");
    }

    #[test]
    fn q_with_a_colon_is_equality_and_the_value_keeps_later_colons() {
        assert_eq!(ok("q=name:foo").filters, vec![filter("name", &["foo"])]);
        assert_eq!(ok("q=name:a:b").filters, vec![filter("name", &["a:b"])]);
        assert_eq!(ok("q=name:").filters, vec![filter("name", &[""])]);
        assert_eq!(
            ok("q=space_guid%3As-1").filters,
            vec![filter("space_guid", &["s-1"])]
        );
        assert_eq!(
            ok("q=name:a,b").filters,
            vec![filter("name", &["a,b"])],
            "a comma is only a list after IN"
        );
    }

    #[test]
    fn q_with_in_is_a_comma_list_split_as_ruby_splits() {
        let ab = vec![filter("name", &["a", "b"])];
        assert_eq!(ok("q=name+IN+a,b").filters, ab);
        assert_eq!(ok("q=name%20IN%20a,b").filters, ab);
        assert_eq!(
            ok("q=name+IN+a,,b,,").filters,
            vec![filter("name", &["a", "", "b"])]
        );
        assert_eq!(ok("q=name+IN+,a").filters, vec![filter("name", &["", "a"])]);
        assert_eq!(ok("q=name+IN+").filters, vec![filter("name", &[])]);
        assert_eq!(ok("q=name+IN+,").filters, vec![filter("name", &[])]);
        assert_eq!(ok("q=name+IN++a").filters, vec![filter("name", &[" a"])]);
        // The leftmost comparison wins, whichever it is.
        assert_eq!(ok("q=name+IN+a:b").filters, vec![filter("name", &["a:b"])]);
        assert_eq!(
            ok("q=name:a+IN+b").filters,
            vec![filter("name", &["a IN b"])]
        );
        // IN is case-sensitive and needs both spaces: otherwise it is part of the field.
        assert_eq!(
            refused("q=name+in+a"),
            "The query parameter is invalid: name in a"
        );
        assert_eq!(
            refused("q=name+INa"),
            "The query parameter is invalid: name INa"
        );
    }

    #[test]
    fn ordering_comparisons_are_refused() {
        for (query, op) in [
            ("q=name>=a", ">="),
            ("q=name<=a", "<="),
            ("q=name<a", "<"),
            ("q=name>a", ">"),
            ("q=space_guid%3E%3Da:b", ">="),
        ] {
            assert_eq!(
                refused(query),
                format!("The query parameter is invalid: {op}"),
                "{query}"
            );
        }
        assert_eq!(ok("q=name:>=").filters, vec![filter("name", &[">="])]);
    }

    #[test]
    fn q_without_a_comparison_is_is_null() {
        assert_eq!(
            ok("q=gateway_name").filters,
            vec![filter("gateway_name", &[])]
        );
        assert_eq!(refused("q=bogus"), "The query parameter is invalid: bogus");
    }

    #[test]
    fn unknown_fields_are_refused_with_the_field_as_cc_words_it() {
        let err = parse(Some("q=bogus:1"), FIELDS).unwrap_err();
        assert_eq!(
            text(err.body()),
            "{\"code\":10005,\"description\":\"The query parameter is invalid: bogus\",\"error_code\":\"CF-BadQueryParameter\"}\n"
        );
        assert_eq!(refused("q=Name:x"), "The query parameter is invalid: Name");
        assert_eq!(
            refused("q=name+:x"),
            "The query parameter is invalid: name "
        );
        assert_eq!(refused("q=:x"), "The query parameter is invalid: ");
        // Every field is checked before any comparison.
        assert_eq!(
            refused("q=name>a&q=bogus:1"),
            "The query parameter is invalid: bogus"
        );
        // Only the caller's fields count.
        assert_eq!(
            parse(Some("q=name:x"), &["space_guid"])
                .unwrap_err()
                .description,
            "The query parameter is invalid: name"
        );
    }

    #[test]
    fn several_q_combine_in_order_and_may_repeat_a_field() {
        assert_eq!(
            ok("q=name:a&q=space_guid:s&q=name:b").filters,
            vec![
                filter("name", &["a"]),
                filter("space_guid", &["s"]),
                filter("name", &["b"]),
            ]
        );
    }

    #[test]
    fn semicolons_separate_filters_inside_one_q() {
        assert_eq!(
            ok("q=name:a%3Bspace_guid:b").filters,
            vec![filter("name", &["a"]), filter("space_guid", &["b"])]
        );
        // `;;` is a literal `;`; `;;;` a literal one then a separator.
        assert_eq!(
            ok("q=name:a%3B%3Bb").filters,
            vec![filter("name", &["a;b"])]
        );
        assert_eq!(
            ok("q=name:a%3B%3B%3Bspace_guid:b").filters,
            vec![filter("name", &["a;"]), filter("space_guid", &["b"])]
        );
        // Ruby's split drops trailing empty segments, not leading ones.
        assert_eq!(
            ok("q=name:a%3B%3B%3B%3B").filters,
            vec![filter("name", &["a;;"])]
        );
        assert_eq!(ok("q=name:a%3B").filters, vec![filter("name", &["a"])]);
        assert_eq!(refused("q=%3Bname:a"), "The query parameter is invalid: ");
    }

    #[test]
    fn a_raw_semicolon_ends_the_q_value_as_cgi_parse_splits_there() {
        let q = ok("q=name:a;space_guid:b");
        assert_eq!(q.filters, vec![filter("name", &["a"])]);
        assert_eq!(
            page_url(PATH, &q, 1),
            "/v2/service_instances?order-direction=asc&page=1&q=name:a&results-per-page=50"
        );
        assert_eq!(
            ok("q=name:a;q=space_guid:b").filters,
            vec![filter("name", &["a"]), filter("space_guid", &["b"])]
        );
    }

    #[test]
    fn an_empty_q_filters_nothing_but_stays_in_the_links() {
        let q = ok("q=");
        assert_eq!(q.filters, vec![]);
        assert_eq!(
            page_url(PATH, &q, 1),
            "/v2/service_instances?order-direction=asc&page=1&q=&results-per-page=50"
        );
        assert_eq!(ok("q=%3B").filters, vec![]);
    }

    #[test]
    fn a_last_bare_q_drops_every_q_as_rack_holds_nil() {
        let q = ok("q=name:a&q");
        assert_eq!(q.filters, vec![]);
        assert_eq!(
            page_url(PATH, &q, 1),
            "/v2/service_instances?order-direction=asc&page=1&results-per-page=50"
        );
        // A bare q before a valued one is skipped (CGI.parse pushes no value for it).
        assert_eq!(ok("q&q=name:a").filters, vec![filter("name", &["a"])]);
    }

    #[test]
    fn q_is_form_decoded() {
        assert_eq!(
            ok("q=name:a+b%2Bc%25%C3%A9").filters,
            vec![filter("name", &["a b+c%é"])]
        );
        assert_eq!(ok("%71=name:a").filters, vec![filter("name", &["a"])]);
    }

    #[test]
    fn q_parameters_and_filters_are_bounded_at_fifty() {
        let fifty = vec!["q=name:x"; 50].join("&");
        assert_eq!(ok(&fifty).filters.len(), 50);
        let too_many = "The query parameter is invalid: q is limited to 50 filters";
        assert_eq!(refused(&format!("{fifty}&q=name:x")), too_many);
        assert_eq!(refused(&format!("{fifty}&q=")), too_many);
        let segments = vec!["name:x"; 51].join("%3B");
        assert_eq!(refused(&format!("q={segments}")), too_many);
        let segments = vec!["name:x"; 50].join("%3B");
        assert_eq!(ok(&format!("q={segments}")).filters.len(), 50);
    }

    #[test]
    fn a_q_value_is_bounded_at_1024_bytes() {
        let value = format!("name:{}", "x".repeat(1024 - 5));
        assert_eq!(ok(&format!("q={value}")).filters[0].values[0].len(), 1019);
        assert_eq!(
            refused(&format!("q={value}x")),
            "The query parameter is invalid: q is limited to 1024 bytes"
        );
        // Counted decoded: `%41` is one byte.
        let value = format!("name:{}", "%41".repeat(1019));
        assert_eq!(ok(&format!("q={value}")).filters[0].values[0].len(), 1019);
    }

    #[test]
    fn an_in_list_is_bounded_at_100_values() {
        let list = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        assert_eq!(
            ok(&format!("q=name+IN+{}", list(100))).filters[0]
                .values
                .len(),
            100
        );
        assert_eq!(
            refused(&format!("q=name+IN+{}", list(101))),
            "The query parameter is invalid: IN is limited to 100 values"
        );
    }

    #[test]
    fn refusals_come_in_ccs_order() {
        // CommonParams' Integer() first, in its key order.
        assert_eq!(
            refused("page=y&inline-relations-depth=x"),
            "The query parameter is invalid: inline_relations_depth must be an integer"
        );
        assert_eq!(
            refused("q=bogus:1&page=abc"),
            "The query parameter is invalid: page must be an integer"
        );
        // Then order-by, then q.
        assert_eq!(
            parse(Some("q=bogus:1&order-by=id"), FIELDS)
                .unwrap_err()
                .code,
            10012
        );
        assert_eq!(
            refused("results-per-page=101&q=bogus:1"),
            "The query parameter is invalid: bogus"
        );
        // Then the renderer's bounds, then the direction, then what Sequel would trip on.
        assert_eq!(
            refused("inline-relations-depth=9&results-per-page=101"),
            "The query parameter is invalid: results_per_page must be <= 100"
        );
        assert_eq!(
            refused("order-direction=up&inline-relations-depth=9"),
            "The query parameter is invalid: inline_relations_depth must be <= 3"
        );
        assert_eq!(
            refused("page=0&order-direction=up"),
            "The query parameter is invalid: order_direction must be 'asc' or 'desc' but was 'up'"
        );
    }

    #[test]
    fn links_across_three_pages_keep_every_q_in_both_orders() {
        for direction in ["asc", "desc"] {
            let link = |page: u32| {
                format!(
                    "/v2/service_instances?order-direction={direction}&page={page}&q=name%20IN%20a,b&q=space_guid:s1&results-per-page=2"
                )
            };
            for (page, prev, next) in [
                (1, None, Some(2)),
                (2, Some(1), Some(3)),
                (3, Some(2), None),
            ] {
                let q = ok(&format!(
                    "q=name+IN+a,b&order-direction={direction}&q=space_guid:s1&results-per-page=2&page={page}"
                ));
                assert_eq!(page_url(PATH, &q, page), link(page));
                let body: serde_json::Value =
                    serde_json::from_slice(&render_page(PATH, &q, 5, &[b"{}"])).unwrap();
                assert_eq!(body["total_pages"], 3);
                assert_eq!(
                    body["prev_url"],
                    prev.map_or(serde_json::Value::Null, |p| link(p).into())
                );
                assert_eq!(
                    body["next_url"],
                    next.map_or(serde_json::Value::Null, |p| link(p).into())
                );
            }
        }
    }

    /// Addressable 2.9.0, as CC's `url()` calls it: `query_values=` encodes all but
    /// unreserved bytes (lib/addressable/uri.rb `query_values=`, `UNRESERVED`), then
    /// `normalize` decodes what `NormalizeCharacterClasses::QUERY` allows
    /// (`a-zA-Z0-9-._~!$'()*+,=:@/?`) except `+` (left `%2B`); `%` is `%25` unless `2B`/`2b`
    /// follows. CC's own spec expects `q=organization_guid:1234` (paginated_collection_renderer_spec.rb).
    #[test]
    fn link_values_are_encoded_as_addressable_normalizes_them() {
        let q = ok("q=organization_guid:1234");
        assert_eq!(
            page_url(PATH, &q, 2),
            "/v2/service_instances?order-direction=asc&page=2&q=organization_guid:1234&results-per-page=50"
        );
        // Decoded value: `name:a+b&c#d%e=f é">%2b<!$'()*,@/?~`.
        let q = ok("q=name:a%2Bb%26c%23d%25e%3Df+%C3%A9%22%3E%252b%3C!$'()*,@/?~");
        assert_eq!(
            q.filters,
            vec![filter("name", &["a+b&c#d%e=f é\">%2b<!$'()*,@/?~"])]
        );
        assert_eq!(
            page_url(PATH, &q, 1),
            "/v2/service_instances?order-direction=asc&page=1&q=name:a%2Bb%26c%23d%25e=f%20%C3%A9%22%3E%2B%3C!$'()*,@/?~&results-per-page=50"
        );
        // `;;` is one literal `;` to the filter; the link keeps both, as given.
        let q = ok("q=name:%5B%5D%7B%7D%7C%5C%5E%60%3B%3B%0A");
        assert_eq!(q.filters, vec![filter("name", &["[]{}|\\^`;\n"])]);
        assert_eq!(
            page_url(PATH, &q, 1),
            "/v2/service_instances?order-direction=asc&page=1&q=name:%5B%5D%7B%7D%7C%5C%5E%60%3B%3B%0A&results-per-page=50"
        );
    }

    #[test]
    fn links_carry_depth_relations_and_preserved_keys_sorted() {
        let q = parse_preserving(
            Some(
                "return_user_provided_service_instances=true&q=name:x&orphan-relations=1&foo=bar\
                 &inline-relations-depth=0&include-relations=service&exclude-relations=spaces,plans",
            ),
            FIELDS,
            &["return_user_provided_service_instances"],
        )
        .unwrap();
        assert_eq!(
            page_url(PATH, &q, 2),
            "/v2/service_instances?exclude-relations=spaces&exclude-relations=plans&include-relations=service&inline-relations-depth=0&order-direction=asc&orphan-relations=1&page=2&q=name:x&results-per-page=50&return_user_provided_service_instances=true"
        );
        let preserving = |query: &str| {
            let q = parse_preserving(Some(query), FIELDS, &["after_guid"]).unwrap();
            page_url(PATH, &q, 1)
        };
        assert_eq!(
            preserving("after_guid=a+b"),
            "/v2/service_instances?after_guid=a%20b&order-direction=asc&page=1&results-per-page=50"
        );
        assert_eq!(
            preserving("after_guid="),
            "/v2/service_instances?after_guid=&order-direction=asc&page=1&results-per-page=50"
        );
        for query in [
            "after_guid",
            "",
            "exclude-relations=",
            "exclude-relations=,",
        ] {
            assert_eq!(
                preserving(query),
                "/v2/service_instances?order-direction=asc&page=1&results-per-page=50",
                "{query}"
            );
        }
        // Without preserving, the key is ignored.
        assert_eq!(
            page_url(PATH, &ok("return_user_provided_service_instances=true"), 1),
            "/v2/service_instances?order-direction=asc&page=1&results-per-page=50"
        );
    }

    #[test]
    fn an_empty_collection_has_one_page_and_no_links() {
        assert_eq!(
            text(render_page::<Vec<u8>>(PATH, &ok(""), 0, &[])),
            r#"{"total_results":0,"total_pages":1,"prev_url":null,"next_url":null,"resources":[]}"#
        );
    }

    #[test]
    fn one_page_splices_the_resources_verbatim() {
        let resources = [
            br#"{"metadata":{"guid":"a"},"entity":{"name":"x"}}"#.to_vec(),
            br#"{"metadata":{"guid":"b"},"entity":{"name":"y"}}"#.to_vec(),
        ];
        assert_eq!(
            text(render_page(PATH, &ok(""), 2, &resources)),
            r#"{"total_results":2,"total_pages":1,"prev_url":null,"next_url":null,"resources":[{"metadata":{"guid":"a"},"entity":{"name":"x"}},{"metadata":{"guid":"b"},"entity":{"name":"y"}}]}"#
        );
    }

    #[test]
    fn a_middle_page_links_both_ways() {
        let q = ok("page=2&results-per-page=2&q=name:x");
        assert_eq!(
            text(render_page(PATH, &q, 5, &[b"{\"r\":3}", b"{\"r\":4}"])),
            concat!(
                r#"{"total_results":5,"total_pages":3,"#,
                r#""prev_url":"/v2/service_instances?order-direction=asc&page=1&q=name:x&results-per-page=2","#,
                r#""next_url":"/v2/service_instances?order-direction=asc&page=3&q=name:x&results-per-page=2","#,
                r#""resources":[{"r":3},{"r":4}]}"#
            )
        );
    }

    #[test]
    fn a_full_last_page_has_no_next() {
        let q = ok("page=2&results-per-page=2");
        let body: serde_json::Value =
            serde_json::from_slice(&render_page(PATH, &q, 4, &[b"{}", b"{}"])).unwrap();
        assert_eq!(body["total_pages"], 2);
        assert_eq!(body["next_url"], serde_json::Value::Null);
    }

    #[test]
    fn a_page_past_the_end_is_empty_and_links_back_one_page() {
        let q = ok("page=5&results-per-page=2");
        assert_eq!(
            text(render_page::<Vec<u8>>(PATH, &q, 5, &[])),
            r#"{"total_results":5,"total_pages":3,"prev_url":"/v2/service_instances?order-direction=asc&page=4&results-per-page=2","next_url":null,"resources":[]}"#
        );
    }

    #[test]
    fn orphan_relations_one_adds_an_empty_orphans_map() {
        let body = text(render_page::<Vec<u8>>(
            PATH,
            &ok("orphan-relations=1"),
            0,
            &[],
        ));
        assert!(body.ends_with(r#""resources":[],"orphans":{}}"#), "{body}");
        let body = text(render_page::<Vec<u8>>(
            PATH,
            &ok("orphan-relations=0"),
            0,
            &[],
        ));
        assert!(!body.contains("orphans"), "{body}");
    }

    #[test]
    fn a_path_is_json_escaped_in_the_body() {
        let q = ok("page=2");
        let body = text(render_page::<Vec<u8>>("/v2/x\"y", &q, 0, &[]));
        assert!(
            body.contains(
                r#""prev_url":"/v2/x\"y?order-direction=asc&page=1&results-per-page=50""#
            ),
            "{body}"
        );
    }
}
