//! What a route's handler receives from the dispatcher and what it hands back.
//!
//! A handler turns one HTTP request (already authenticated, body already read) into a use-case
//! command, runs it, and answers with a [`Disposition`]: a Cloud Controller answer, or "this is
//! not brokergate's, pass the original request through".

use std::future::Future;
use std::pin::Pin;

use super::Outcome;
use crate::auth::{Identity, Scope};
use crate::cc::ApiError;
use crate::config::Runtime;
use crate::service::{Binder, Catalog, Deleter, Provisioner, Reader, Updater};

/// The use cases handlers run.
pub struct UseCases {
    pub provisioner: Provisioner,
    pub reader: Reader,
    pub updater: Updater,
    pub deleter: Deleter,
    pub binder: Binder,
    pub catalog: Catalog,
}

/// One owned request, as the dispatcher hands it over.
pub struct Request<'a> {
    /// The config snapshot the request started with.
    pub rt: &'a Runtime,
    /// The authenticated caller (routes with [`Scope::None`] get an anonymous one).
    pub caller: &'a Identity,
    /// The scope the route needs, for the use case to check in the Cloud Controller's order.
    pub scope: Scope,
    pub params: &'a Params,
    /// The request's path, as sent.
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The whole body for routes that read one; empty otherwise.
    pub body: &'a [u8],
    /// The `X-VCAP-Request-ID` the client gets back and brokers receive.
    pub request_id: &'a str,
}

impl Request<'_> {
    /// The path and query as the client sent them: what a merged list asks the upstream.
    pub fn path_and_query(&self) -> String {
        match self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.to_string(),
        }
    }
}

/// The `:name` parameters of a matched path, percent-decoded.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    pub fn new(params: Vec<(&'static str, String)>) -> Params {
        Params(params)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A handler: an async function of the use cases, the request and the outcome it records for
/// the access log and metrics (broker, broker call, error).
pub type Handler =
    for<'a> fn(&'a UseCases, Request<'a>, &'a mut Outcome) -> BoxFuture<'a, Disposition>;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the dispatcher does with the request once the handler is done.
#[derive(Debug)]
pub enum Disposition {
    /// Answer with this; the dispatcher writes it with an exact `Content-Length`.
    Reply(Answer),
    /// Not brokergate's (an unknown plan, a guid it does not hold): send the original request,
    /// unchanged, to the upstream Cloud Controller; without one, answer this error instead.
    NotOurs(ApiError),
}

/// A complete JSON answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    /// The `Location` header (a 201's resource).
    pub location: Option<String>,
}

impl Answer {
    /// 204, empty: a delete's answer.
    pub fn no_content() -> Answer {
        Answer {
            status: 204,
            body: Vec::new(),
            location: None,
        }
    }
}

impl From<&ApiError> for Answer {
    fn from(err: &ApiError) -> Self {
        Answer {
            status: err.status,
            body: err.body(),
            location: None,
        }
    }
}

impl From<ApiError> for Disposition {
    fn from(err: ApiError) -> Self {
        Disposition::Reply(Answer::from(&err))
    }
}

/// A handler that answers 200 `{}`, for tests of the table and the dispatcher.
#[cfg(test)]
pub fn test_handler<'a>(
    _: &'a UseCases,
    _: Request<'a>,
    _: &'a mut Outcome,
) -> BoxFuture<'a, Disposition> {
    Box::pin(async {
        Disposition::Reply(Answer {
            status: 200,
            body: b"{}".to_vec(),
            location: None,
        })
    })
}
