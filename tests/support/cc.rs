//! The Cloud Controller's error answer, checked one way for every test file,
//! on reqwest answers ([`Response`]) and raw-socket ones ([`RawResponse`]).

use std::fmt::Debug;

use serde_json::Value;

use super::client::Response;
use super::json;
use super::raw::RawResponse;

/// Content-Type of every Cloud Controller answer.
pub const CC_JSON: &str = "application/json;charset=utf-8";

/// What the CC assertions read from an answer.
pub trait Answer: Debug {
    fn status(&self) -> u16;
    /// First value of header `name` (case-insensitive).
    fn header(&self, name: &str) -> Option<String>;
    fn body(&self) -> &[u8];
}

impl Answer for Response {
    fn status(&self) -> u16 {
        self.status
    }
    fn header(&self, name: &str) -> Option<String> {
        Response::header(self, name)
    }
    fn body(&self) -> &[u8] {
        &self.body
    }
}

impl Answer for RawResponse {
    fn status(&self) -> u16 {
        self.status
    }
    fn header(&self, name: &str) -> Option<String> {
        RawResponse::header(self, name)
    }
    fn body(&self) -> &[u8] {
        &self.body
    }
}

/// A CC error with `status`, this `code` and this `error_code`; see
/// [`assert_cc_error_shape`] for the rest. Returns the body.
pub fn assert_cc_error(resp: &impl Answer, status: u16, code: u64, error_code: &str) -> Value {
    let body = assert_cc_answer(resp, status);
    assert_eq!(body["code"], code, "{resp:?}");
    assert_eq!(body["error_code"], error_code, "{resp:?}");
    body
}

/// A CC error with `status`, whatever its code, with a `CF-` `error_code`.
/// Both assertions check: the status, CC's Content-Type, an integer `code`, a
/// string `error_code`, a non-empty `description`, the keys in CC's order
/// (`code, description, error_code[, http]`) and those of `http` (`uri,
/// method, status`). Returns the body.
pub fn assert_cc_error_shape(resp: &impl Answer, status: u16) -> Value {
    let body = assert_cc_answer(resp, status);
    assert!(
        body["error_code"]
            .as_str()
            .is_some_and(|c| c.starts_with("CF-")),
        "{resp:?}"
    );
    body
}

fn assert_cc_answer(resp: &impl Answer, status: u16) -> Value {
    assert_eq!(resp.status(), status, "{resp:?}");
    assert_eq!(
        resp.header("content-type").as_deref(),
        Some(CC_JSON),
        "{resp:?}"
    );
    let members = json::members(resp.body());
    let keys = json::keys(&members);
    let with_http = keys.get(3) == Some(&"http");
    let expected: &[&str] = if with_http {
        &["code", "description", "error_code", "http"]
    } else {
        &["code", "description", "error_code"]
    };
    assert_eq!(keys, expected, "key order of {resp:?}");
    if with_http {
        let http = json::members(json::raw(&members, "http"));
        assert_eq!(
            json::keys(&http),
            ["uri", "method", "status"],
            "key order of http in {resp:?}"
        );
    }
    let body: Value = serde_json::from_slice(resp.body()).expect("a JSON object");
    assert!(body["code"].is_u64(), "{resp:?}");
    assert!(body["error_code"].is_string(), "{resp:?}");
    assert!(
        body["description"].as_str().is_some_and(|d| !d.is_empty()),
        "{resp:?}"
    );
    body
}
