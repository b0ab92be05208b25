//! Who is calling: the bearer token is parsed (`bearer`), verified (`verifier`) against the
//! configured keys (`keys`) and a UAA's published keys (`uaa`), its claims checked (`claims`)
//! and turned into an [`Identity`] with scopes; verified tokens are cached (`cache`).

mod bearer;
mod cache;
mod claims;
mod keys;
mod uaa;
mod verifier;

pub use bearer::bearer_token;
pub use uaa::{KeyRefresher, UaaSettings};
pub use verifier::{Verifier, VerifierSettings};

/// The authenticated caller, taken from a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `user_id`, else `client_id`.
    pub user_id: String,
    /// The `email` claim, sent to v1 brokers (null for client tokens).
    pub email: Option<String>,
    pub scopes: Vec<String>,
    /// The token's `exp` (Unix seconds): nothing learnt with it is kept longer.
    pub expires_at: i64,
    /// The token itself, to ask the Cloud Controller on the caller's behalf.
    pub token: BearerToken,
}

/// A caller's bearer token. Its `Debug` never prints it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct BearerToken(Option<std::sync::Arc<str>>);

impl BearerToken {
    pub fn new(token: &str) -> BearerToken {
        BearerToken(Some(token.into()))
    }

    /// The token, for an `Authorization` header and nothing else.
    pub fn expose(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken([redacted])")
    }
}

/// What a route needs of the caller's token (the Cloud Controller's `read`/`write` access).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// No UAA token at all (routes authenticated another way, or not at all).
    None,
    /// `cloud_controller.read` or `cloud_controller.admin`.
    Read,
    /// `cloud_controller.write` or `cloud_controller.admin`.
    Write,
}

impl Identity {
    /// The caller of a route that needs no token: holds no scope.
    pub fn anonymous() -> Identity {
        Identity::new("", None, Vec::new())
    }

    /// A caller without a token to pass on (tests, and callers authenticated another way),
    /// whose answers may be kept as long as the cache keeps any.
    pub fn new(user_id: &str, email: Option<&str>, scopes: Vec<String>) -> Identity {
        Identity {
            user_id: user_id.to_string(),
            email: email.map(str::to_string),
            scopes,
            expires_at: i64::MAX,
            token: BearerToken::default(),
        }
    }

    /// Whether the token grants what `scope` asks.
    pub fn allows(&self, scope: Scope) -> bool {
        match scope {
            Scope::None => true,
            Scope::Read => self.can_read(),
            Scope::Write => self.can_write(),
        }
    }

    fn has(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
    pub fn is_admin(&self) -> bool {
        self.has("cloud_controller.admin")
    }
    /// Write routes need `cloud_controller.write` or admin (CC's `create_with_token?`).
    pub fn can_write(&self) -> bool {
        self.is_admin() || self.has("cloud_controller.write")
    }
    /// Read routes need `cloud_controller.read` or admin.
    pub fn can_read(&self) -> bool {
        self.is_admin() || self.has("cloud_controller.read")
    }
    /// Sees every space without asking (the Cloud Controller's admin, read-only admin and
    /// global auditor).
    pub fn reads_everything(&self) -> bool {
        self.is_admin()
            || self.has("cloud_controller.admin_read_only")
            || self.has("cloud_controller.global_auditor")
    }
}

/// Why a request is not authenticated. `Missing` is CC's NotAuthenticated (10002);
/// every `Invalid` is InvalidAuthToken (1000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("invalid token: {}", .0.as_str())]
    Invalid(InvalidReason),
}

/// Every `reason` label of `brokergate_auth_failures_total`: no token, each way a token can
/// be invalid, and a valid token without the scope.
pub fn failure_reasons() -> Vec<&'static str> {
    let invalid = InvalidReason::ALL.iter().map(|r| r.as_str());
    std::iter::once("missing")
        .chain(invalid)
        .chain(std::iter::once("insufficient_scope"))
        .collect()
}

/// Bounded set of reasons, usable as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidReason {
    Malformed,
    TooLarge,
    AlgNotAllowed,
    BadSignature,
    Expired,
    NotYetValid,
    WrongAudience,
    WrongIssuer,
    RefreshToken,
    NoIdentity,
    /// Signed with a key UAA does not publish (an unknown `kid`), even after a refresh.
    UnknownKey,
}

impl InvalidReason {
    pub const ALL: [InvalidReason; 11] = [
        InvalidReason::Malformed,
        InvalidReason::TooLarge,
        InvalidReason::AlgNotAllowed,
        InvalidReason::BadSignature,
        InvalidReason::Expired,
        InvalidReason::NotYetValid,
        InvalidReason::WrongAudience,
        InvalidReason::WrongIssuer,
        InvalidReason::RefreshToken,
        InvalidReason::NoIdentity,
        InvalidReason::UnknownKey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InvalidReason::Malformed => "malformed",
            InvalidReason::TooLarge => "too_large",
            InvalidReason::AlgNotAllowed => "alg_not_allowed",
            InvalidReason::BadSignature => "bad_signature",
            InvalidReason::Expired => "expired",
            InvalidReason::NotYetValid => "not_yet_valid",
            InvalidReason::WrongAudience => "wrong_audience",
            InvalidReason::WrongIssuer => "wrong_issuer",
            InvalidReason::RefreshToken => "refresh_token",
            InvalidReason::NoIdentity => "no_identity",
            InvalidReason::UnknownKey => "unknown_key",
        }
    }
}
