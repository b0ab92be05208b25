//! The routes brokergate owns, as data: one table of entries (method, path pattern, metrics
//! template, scope, body, handler) and one pure matching function. A request no entry matches
//! is not brokergate's: it goes to the upstream Cloud Controller unchanged (or gets 404).
//!
//! Adding a route is one entry here and one handler function in the resource's file.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

use super::handler::{Handler, Params};
use super::{catalog, handles, instances, summary};
use crate::auth::Scope;

/// Whether the dispatcher reads the request body before the handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Read in full, bounded by `server.max_body_bytes`, and kept for a pass-through replay.
    Json,
    /// Not read; an answer drains it (bounded) or closes the connection.
    None,
}

/// One owned route.
pub struct Route {
    pub method: http::Method,
    /// Literal segments and `:name` parameters, e.g. `/v2/service_instances/:guid`.
    pub pattern: &'static str,
    /// The `route` label of metrics and the access log: never request data.
    pub template: &'static str,
    /// The scope the route needs; the use case checks it where the Cloud Controller does.
    pub scope: Scope,
    pub body: Body,
    pub handler: Handler,
}

/// Every route brokergate owns. Order matters only between equally specific patterns.
pub static ROUTES: &[Route] = &[
    Route {
        method: http::Method::POST,
        pattern: "/v2/service_instances",
        template: "/v2/service_instances",
        scope: Scope::Write,
        body: Body::Json,
        handler: instances::create,
    },
    Route {
        method: http::Method::GET,
        pattern: "/v2/service_instances",
        template: "/v2/service_instances",
        scope: Scope::Read,
        body: Body::None,
        handler: instances::list,
    },
    Route {
        method: http::Method::GET,
        pattern: "/v2/service_instances/:guid",
        template: "/v2/service_instances/:guid",
        scope: Scope::Read,
        body: Body::None,
        handler: instances::read,
    },
    Route {
        method: http::Method::PUT,
        pattern: "/v2/service_instances/:guid",
        template: "/v2/service_instances/:guid",
        scope: Scope::Write,
        body: Body::Json,
        handler: instances::update,
    },
    Route {
        method: http::Method::DELETE,
        pattern: "/v2/service_instances/:guid",
        template: "/v2/service_instances/:guid",
        scope: Scope::Write,
        body: Body::None,
        handler: instances::delete,
    },
    Route {
        method: http::Method::GET,
        pattern: "/v2/service_instances/:guid/service_bindings",
        template: "/v2/service_instances/:guid/service_bindings",
        scope: Scope::Read,
        body: Body::None,
        handler: handles::instance_bindings,
    },
    Route {
        method: http::Method::GET,
        pattern: "/v2/service_instances/:guid/service_keys",
        template: "/v2/service_instances/:guid/service_keys",
        scope: Scope::Read,
        body: Body::None,
        handler: handles::instance_keys,
    },
    Route {
        method: http::Method::GET,
        pattern: "/v2/service_instances/:guid/shared_to",
        template: "/v2/service_instances/:guid/shared_to",
        scope: Scope::Read,
        body: Body::None,
        handler: instances::shared_to,
    },
    Route {
        method: http::Method::GET,
        pattern: "/v2/service_instances/:guid/shared_from",
        template: "/v2/service_instances/:guid/shared_from",
        scope: Scope::Read,
        body: Body::None,
        handler: instances::shared_from,
    },
    Route {
        method: http::Method::POST,
        pattern: "/v2/service_bindings",
        template: "/v2/service_bindings",
        scope: Scope::Write,
        body: Body::Json,
        handler: handles::create_binding,
    },
    Route {
        method: http::Method::GET,
        pattern: "/v2/service_bindings",
        template: "/v2/service_bindings",
        scope: Scope::Read,
        body: Body::None,
        handler: handles::list_bindings,
    },
    Route {
        method: http::Method::GET,
        pattern: "/v2/service_bindings/:guid",
        template: "/v2/service_bindings/:guid",
        scope: Scope::Read,
        body: Body::None,
        handler: handles::read_binding,
    },
    Route {
        method: http::Method::DELETE,
        pattern: "/v2/service_bindings/:guid",
        template: "/v2/service_bindings/:guid",
        scope: Scope::Write,
        body: Body::None,
        handler: handles::delete_binding,
    },
    Route {
        method: http::Method::POST,
        pattern: "/v2/service_keys",
        template: "/v2/service_keys",
        scope: Scope::Write,
        body: Body::Json,
        handler: handles::create_key,
    },
    Route {
        method: http::Method::GET,
        pattern: "/v2/service_keys",
        template: "/v2/service_keys",
        scope: Scope::Read,
        body: Body::None,
        handler: handles::list_keys,
    },
    Route {
        method: http::Method::GET,
        pattern: "/v2/service_keys/:guid",
        template: "/v2/service_keys/:guid",
        scope: Scope::Read,
        body: Body::None,
        handler: handles::read_key,
    },
    Route {
        method: http::Method::DELETE,
        pattern: "/v2/service_keys/:guid",
        template: "/v2/service_keys/:guid",
        scope: Scope::Write,
        body: Body::None,
        handler: handles::delete_key,
    },
    Route {
        method: http::Method::GET,
        pattern: "/v2/services",
        template: "/v2/services",
        scope: Scope::Read,
        body: Body::None,
        handler: catalog::list_services,
    },
    Route {
        method: http::Method::GET,
        pattern: "/v2/services/:guid",
        template: "/v2/services/:guid",
        scope: Scope::Read,
        body: Body::None,
        handler: catalog::read_service,
    },
    Route {
        method: http::Method::GET,
        pattern: "/v2/services/:guid/service_plans",
        template: "/v2/services/:guid/service_plans",
        scope: Scope::Read,
        body: Body::None,
        handler: catalog::service_plans,
    },
    Route {
        method: http::Method::GET,
        pattern: "/v2/service_plans",
        template: "/v2/service_plans",
        scope: Scope::Read,
        body: Body::None,
        handler: catalog::list_plans,
    },
    Route {
        method: http::Method::GET,
        pattern: "/v2/service_plans/:guid",
        template: "/v2/service_plans/:guid",
        scope: Scope::Read,
        body: Body::None,
        handler: catalog::read_plan,
    },
    Route {
        method: http::Method::GET,
        pattern: "/v2/spaces/:guid/service_instances",
        template: "/v2/spaces/:guid/service_instances",
        scope: Scope::Read,
        body: Body::None,
        handler: instances::space_list,
    },
    Route {
        method: http::Method::GET,
        pattern: "/v2/apps/:guid/service_bindings",
        template: "/v2/apps/:guid/service_bindings",
        scope: Scope::Read,
        body: Body::None,
        handler: handles::app_bindings,
    },
    Route {
        method: http::Method::GET,
        pattern: "/v2/spaces/:guid/summary",
        template: "/v2/spaces/:guid/summary",
        scope: Scope::Read,
        body: Body::None,
        handler: summary::space_summary,
    },
    Route {
        method: http::Method::GET,
        pattern: "/v2/spaces/:guid/services",
        template: "/v2/spaces/:guid/services",
        scope: Scope::Read,
        body: Body::None,
        handler: catalog::space_services,
    },
];

/// The `route` label of requests no entry matches.
pub const NOT_OWNED: &str = "other";

/// The entry for `method` and `path` in `table`, with its parameters; `None` when brokergate
/// does not own the request. A trailing slash is tolerated; a path whose every segment matches
/// several patterns takes the one with the most literal segments (then table order).
pub fn find<'t>(
    table: &'t [Route],
    method: &http::Method,
    path: &str,
) -> Option<(&'t Route, Params)> {
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    let mut best: Option<(&Route, Params, usize)> = None;
    for route in table.iter().filter(|r| r.method == *method) {
        let Some((params, literals)) = match_pattern(route.pattern, path) else {
            continue;
        };
        if best.as_ref().is_none_or(|(_, _, l)| literals > *l) {
            best = Some((route, params, literals));
        }
    }
    best.map(|(route, params, _)| (route, params))
}

/// Matches segment by segment; returns the parameters and how many literal segments matched.
fn match_pattern(pattern: &'static str, path: &str) -> Option<(Params, usize)> {
    let mut wanted = pattern.split('/');
    let mut given = path.split('/');
    let mut params = Vec::new();
    let mut literals = 0;
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return Some((Params::new(params), literals)),
            (Some(w), Some(g)) => {
                if let Some(name) = w.strip_prefix(':') {
                    let value = decode_segment(g)?;
                    if value.is_empty() {
                        return None;
                    }
                    params.push((name, value.into_owned()));
                } else if w == g {
                    literals += 1;
                } else {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

/// A parameter's value: percent-decoded, and UTF-8 (a guid never is anything else).
fn decode_segment(segment: &str) -> Option<Cow<'_, str>> {
    percent_decode_str(segment).decode_utf8().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::handler::test_handler;

    fn route(method: http::Method, pattern: &'static str) -> Route {
        Route {
            method,
            pattern,
            template: pattern,
            scope: Scope::Read,
            body: Body::None,
            handler: test_handler,
        }
    }

    fn table() -> Vec<Route> {
        vec![
            route(http::Method::GET, "/v2/service_instances/:guid"),
            route(http::Method::GET, "/v2/service_instances/summary"),
            route(
                http::Method::GET,
                "/v2/service_instances/:guid/service_keys",
            ),
            route(http::Method::POST, "/v2/service_instances"),
        ]
    }

    fn template(method: http::Method, path: &str) -> Option<&'static str> {
        find(&table(), &method, path).map(|(r, _)| r.template)
    }

    #[test]
    fn exact_paths_and_a_tolerated_trailing_slash() {
        for path in ["/v2/service_instances", "/v2/service_instances/"] {
            assert_eq!(
                template(http::Method::POST, path),
                Some("/v2/service_instances"),
                "{path}"
            );
        }
        assert_eq!(
            template(http::Method::POST, "/v2/service_instances//"),
            None
        );
        assert_eq!(template(http::Method::POST, "/v2/service_instancesx"), None);
        assert_eq!(template(http::Method::POST, "/v2"), None);
        assert_eq!(template(http::Method::POST, "/"), None);
    }

    #[test]
    fn parameters_are_captured_and_percent_decoded() {
        let t = table();
        let (r, params) = find(&t, &http::Method::GET, "/v2/service_instances/ab%2Dcd/").unwrap();
        assert_eq!(r.template, "/v2/service_instances/:guid");
        assert_eq!(params.get("guid"), Some("ab-cd"));
        let (r, params) = find(
            &t,
            &http::Method::GET,
            "/v2/service_instances/g1/service_keys",
        )
        .unwrap();
        assert_eq!(r.template, "/v2/service_instances/:guid/service_keys");
        assert_eq!(params.get("guid"), Some("g1"));
        // An empty or undecodable segment is no guid.
        assert_eq!(
            template(http::Method::GET, "/v2/service_instances//service_keys"),
            None
        );
        assert_eq!(
            template(http::Method::GET, "/v2/service_instances/%FF"),
            None
        );
    }

    #[test]
    fn a_literal_segment_wins_over_a_parameter() {
        assert_eq!(
            template(http::Method::GET, "/v2/service_instances/summary"),
            Some("/v2/service_instances/summary")
        );
        assert_eq!(
            template(http::Method::GET, "/v2/service_instances/other"),
            Some("/v2/service_instances/:guid")
        );
    }

    #[test]
    fn other_methods_are_not_owned() {
        for method in [
            http::Method::HEAD,
            http::Method::PUT,
            http::Method::OPTIONS,
            http::Method::from_bytes(b"BREW").unwrap(),
        ] {
            assert_eq!(
                template(method.clone(), "/v2/service_instances"),
                None,
                "{method}"
            );
        }
        assert_eq!(template(http::Method::GET, "/v2/service_instances"), None);
    }

    #[test]
    fn the_real_table_owns_only_what_it_serves() {
        let owned = |m: http::Method, p: &str| find(ROUTES, &m, p).map(|(r, _)| r.template);
        assert_eq!(
            owned(http::Method::POST, "/v2/service_instances/"),
            Some("/v2/service_instances")
        );
        assert_eq!(
            owned(http::Method::GET, "/v2/service_instances/some-guid"),
            Some("/v2/service_instances/:guid")
        );
        assert_eq!(
            owned(http::Method::GET, "/v2/service_instances"),
            Some("/v2/service_instances")
        );
        assert_eq!(owned(http::Method::GET, "/v2/info"), None);
        assert_eq!(owned(http::Method::HEAD, "/v2/service_instances"), None);
        for r in ROUTES {
            assert!(
                r.pattern.starts_with('/') && !r.pattern.ends_with('/'),
                "{}",
                r.pattern
            );
            assert_ne!(r.template, NOT_OWNED);
        }
    }
}
