//! An [`Authorizer`] for the use cases' unit tests: says yes to everything unless told
//! otherwise, and counts what it was asked.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

use super::authorize::{
    Authorizer, AuthzContext, FeatureFlag, Question, SpaceFacts, Undecided, VisibleOrganizations,
    VisibleSpaces,
};

#[derive(Default)]
pub struct FakeAuthorizer {
    /// Spaces the caller may not see.
    pub hidden: Mutex<HashSet<String>>,
    /// Spaces where the caller is not a developer.
    pub not_developer: Mutex<HashSet<String>>,
    pub flag_message: Mutex<Option<Option<String>>>,
    pub suspended: Mutex<HashSet<String>>,
    /// The caller's organizations; `None`: all.
    pub organizations: Mutex<Option<Vec<String>>>,
    /// Every question fails.
    pub down: std::sync::atomic::AtomicBool,
    pub asked: AtomicUsize,
}

impl FakeAuthorizer {
    pub fn hide(&self, space: &str) {
        self.hidden.lock().unwrap().insert(space.into());
    }
    pub fn deny_developer(&self, space: &str) {
        self.not_developer.lock().unwrap().insert(space.into());
    }
    pub fn disable_creation(&self, message: Option<&str>) {
        *self.flag_message.lock().unwrap() = Some(message.map(str::to_string));
    }
    pub fn suspend(&self, org: &str) {
        self.suspended.lock().unwrap().insert(org.into());
    }
    pub fn go_down(&self) {
        self.down.store(true, Ordering::SeqCst);
    }
    pub fn asked(&self) -> usize {
        self.asked.load(Ordering::SeqCst)
    }

    fn ask(&self, question: Question) -> Result<(), Undecided> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(Undecided {
                question,
                reason: "down".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Authorizer for FakeAuthorizer {
    async fn space(
        &self,
        cx: &AuthzContext<'_>,
        space_guid: &str,
    ) -> Result<Option<SpaceFacts>, Undecided> {
        self.ask(Question::Space)?;
        if self.hidden.lock().unwrap().contains(space_guid) {
            return Ok(None);
        }
        let organization_guid = match cx.rt.space_organization(space_guid) {
            Some(org) => Some(org.to_string()),
            None if cx.rt.accept_unknown_spaces => None,
            None => return Ok(None),
        };
        Ok(Some(SpaceFacts { organization_guid }))
    }

    async fn can_see_space(
        &self,
        _: &AuthzContext<'_>,
        space_guid: &str,
    ) -> Result<bool, Undecided> {
        self.ask(Question::Space)?;
        Ok(!self.hidden.lock().unwrap().contains(space_guid))
    }

    async fn is_space_developer(
        &self,
        _: &AuthzContext<'_>,
        space_guid: &str,
    ) -> Result<bool, Undecided> {
        self.ask(Question::Role)?;
        Ok(!self.not_developer.lock().unwrap().contains(space_guid))
    }

    async fn instance_creation(&self, _: &AuthzContext<'_>) -> Result<FeatureFlag, Undecided> {
        self.ask(Question::FeatureFlag)?;
        Ok(match self.flag_message.lock().unwrap().clone() {
            Some(custom_message) => FeatureFlag::Disabled { custom_message },
            None => FeatureFlag::Enabled,
        })
    }

    async fn organization_suspended(
        &self,
        _: &AuthzContext<'_>,
        organization_guid: &str,
    ) -> Result<bool, Undecided> {
        self.ask(Question::Organization)?;
        Ok(self.suspended.lock().unwrap().contains(organization_guid))
    }

    async fn visible_spaces(&self, _: &AuthzContext<'_>) -> Result<VisibleSpaces, Undecided> {
        self.ask(Question::VisibleSpaces)?;
        let hidden = self.hidden.lock().unwrap();
        if hidden.is_empty() {
            return Ok(VisibleSpaces::All);
        }
        // Tests name their spaces S, S1, S2, …: everything but the hidden ones.
        let all = ["S", "S1", "S2", "S3", "T"];
        Ok(VisibleSpaces::Only(
            all.iter()
                .filter(|s| !hidden.contains(**s))
                .map(|s| s.to_string())
                .collect(),
        ))
    }

    async fn visible_organizations(
        &self,
        _: &AuthzContext<'_>,
    ) -> Result<VisibleOrganizations, Undecided> {
        self.ask(Question::VisibleOrganizations)?;
        Ok(match self.organizations.lock().unwrap().clone() {
            Some(orgs) => VisibleOrganizations::Only(orgs),
            None => VisibleOrganizations::All,
        })
    }
}

/// A configuration with nothing in it, for use cases that only pass it on.
pub fn test_runtime() -> crate::config::Runtime {
    let file = crate::config::parse("", Vec::new()).unwrap();
    crate::config::Runtime::from_file(&file, &|_| None).unwrap()
}
