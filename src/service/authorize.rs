//! The Authorizer port: what a use case asks before it lets a caller act in a space — does the
//! space exist for this caller, is the caller a developer there, is the organization suspended,
//! is instance creation switched on, which spaces may the caller see — and the rules the use
//! cases share on top of those answers. Adapters live in `crate::authz`: `[[spaces]]` role
//! lists, and the Cloud Controller's v3 API asked with the caller's own token.
//!
//! An answer that cannot be had is [`Undecided`], which every use case turns into a refusal
//! (503): never into an allow.

use async_trait::async_trait;

use crate::auth::Identity;
use crate::config::Runtime;

/// What an authorizer is asked; a bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Question {
    /// The space and its organization, as the caller sees them.
    Space,
    /// Whether the caller is a developer of the space.
    Role,
    /// Whether `service_instance_creation` is on.
    FeatureFlag,
    /// Whether the organization is suspended.
    Organization,
    /// Every space the caller may see.
    VisibleSpaces,
    /// Every organization the caller belongs to (what plan visibility is decided on).
    VisibleOrganizations,
}

impl Question {
    pub const ALL: [Question; 6] = [
        Question::Space,
        Question::Role,
        Question::FeatureFlag,
        Question::Organization,
        Question::VisibleSpaces,
        Question::VisibleOrganizations,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Question::Space => "space",
            Question::Role => "role",
            Question::FeatureFlag => "feature_flag",
            Question::Organization => "organization",
            Question::VisibleSpaces => "visible_spaces",
            Question::VisibleOrganizations => "visible_organizations",
        }
    }
}

impl std::fmt::Display for Question {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A space as the caller may see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceFacts {
    /// Unknown only for a space `accept_unknown_spaces` let through.
    pub organization_guid: Option<String>,
}

/// The `service_instance_creation` feature flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeatureFlag {
    Enabled,
    /// With the operator's message for refused callers, when one is set.
    Disabled {
        custom_message: Option<String>,
    },
}

/// The spaces whose instances a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VisibleSpaces {
    All,
    /// These only (possibly none).
    Only(Vec<String>),
}

/// The organizations a caller belongs to, for plan visibility.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VisibleOrganizations {
    All,
    Only(Vec<String>),
}

impl VisibleOrganizations {
    pub fn contains(&self, organization_guid: &str) -> bool {
        match self {
            VisibleOrganizations::All => true,
            VisibleOrganizations::Only(orgs) => orgs.iter().any(|o| o == organization_guid),
        }
    }
}

/// No answer could be had: the Cloud Controller is down, slow or failing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("authorization could not be decided ({question}): {reason}")]
pub struct Undecided {
    pub question: Question,
    /// Safe to log: never a token.
    pub reason: String,
}

/// Who asks, under which configuration: what every question is asked with.
#[derive(Debug, Clone, Copy)]
pub struct AuthzContext<'a> {
    /// The request's configuration snapshot.
    pub rt: &'a Runtime,
    pub caller: &'a Identity,
    /// Sent on as `X-VCAP-Request-ID`, so the Cloud Controller's logs show whose it was.
    pub request_id: &'a str,
}

/// Asked by the use cases.
#[async_trait]
pub trait Authorizer: Send + Sync {
    /// The space, or `None` when there is no such space or the caller may not see it (the
    /// two look alike to the caller, so no space's existence leaks).
    async fn space(
        &self,
        cx: &AuthzContext<'_>,
        space_guid: &str,
    ) -> Result<Option<SpaceFacts>, Undecided>;

    /// Whether the caller may see what is in the space (its instances, bindings and keys).
    async fn can_see_space(
        &self,
        cx: &AuthzContext<'_>,
        space_guid: &str,
    ) -> Result<bool, Undecided>;

    /// Whether the caller holds the space developer role in the space.
    async fn is_space_developer(
        &self,
        cx: &AuthzContext<'_>,
        space_guid: &str,
    ) -> Result<bool, Undecided>;

    /// The `service_instance_creation` flag.
    async fn instance_creation(&self, cx: &AuthzContext<'_>) -> Result<FeatureFlag, Undecided>;

    /// Whether the organization is suspended (one the caller cannot see counts as suspended:
    /// nothing is allowed in it).
    async fn organization_suspended(
        &self,
        cx: &AuthzContext<'_>,
        organization_guid: &str,
    ) -> Result<bool, Undecided>;

    /// The spaces the caller may see instances in.
    async fn visible_spaces(&self, cx: &AuthzContext<'_>) -> Result<VisibleSpaces, Undecided>;

    /// The organizations the caller belongs to.
    async fn visible_organizations(
        &self,
        cx: &AuthzContext<'_>,
    ) -> Result<VisibleOrganizations, Undecided>;
}

/// What came of a request's authorization, for the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Denied,
    Unavailable,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Denied => "denied",
            Verdict::Unavailable => "unavailable",
        }
    }
}

/// Why a caller may not act on an instance it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The caller may not see the instance's space: it is answered as not found.
    Hidden,
    /// The caller sees it but may not change it (403 `NotAuthorized`).
    NotAuthorized,
    Undecided(Undecided),
}

impl Refusal {
    pub(crate) fn verdict(&self) -> Verdict {
        match self {
            Refusal::Hidden | Refusal::NotAuthorized => Verdict::Denied,
            Refusal::Undecided(_) => Verdict::Unavailable,
        }
    }
}

impl From<Undecided> for Refusal {
    fn from(u: Undecided) -> Self {
        Refusal::Undecided(u)
    }
}

/// A read of something in `space_guid`: callers who read everything are not asked about.
pub(crate) async fn check_visible(
    authorizer: &dyn Authorizer,
    cx: &AuthzContext<'_>,
    space_guid: &str,
) -> Result<(), Refusal> {
    if cx.caller.reads_everything() {
        return Ok(());
    }
    if authorizer.can_see_space(cx, space_guid).await? {
        Ok(())
    } else {
        Err(Refusal::Hidden)
    }
}

/// A change to an instance in `space_guid` (of `organization_guid`), or to its bindings and
/// keys, as the Cloud Controller's `ServiceInstanceAccess`: an admin may; anyone else must see
/// the space (else it is hidden), the organization must not be suspended, and the caller must
/// be a space developer.
pub(crate) async fn check_writer(
    authorizer: &dyn Authorizer,
    cx: &AuthzContext<'_>,
    space_guid: &str,
    organization_guid: Option<&str>,
) -> Result<(), Refusal> {
    if cx.caller.is_admin() {
        return Ok(());
    }
    check_visible(authorizer, cx, space_guid).await?;
    if let Some(org) = organization_guid {
        if authorizer.organization_suspended(cx, org).await? {
            return Err(Refusal::NotAuthorized);
        }
    }
    if !authorizer.is_space_developer(cx, space_guid).await? {
        return Err(Refusal::NotAuthorized);
    }
    Ok(())
}
