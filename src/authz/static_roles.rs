//! `[authorization] source = "static"`: the answers `[[spaces]]` gives. A space without role
//! lists is open to every token with the route's scope (today's behaviour); a space with
//! them is seen by its members and changed by its developers only, as the Cloud Controller's
//! roles would allow. Once any space has role lists, a space `[[spaces]]` does not list is
//! seen by read-all tokens only. No feature flags, no suspended organizations.

use crate::auth::Identity;
use crate::config::Runtime;
use crate::service::{FeatureFlag, SpaceFacts, VisibleOrganizations, VisibleSpaces};

/// Whether `caller` may see instances in the space.
pub(super) fn can_see(rt: &Runtime, caller: &Identity, space_guid: &str) -> bool {
    if caller.reads_everything() {
        return true;
    }
    match rt.space(space_guid) {
        Some(entry) => entry
            .roles
            .as_ref()
            .is_none_or(|roles| roles.is_member(&caller.user_id)),
        None => !rt.static_roles(),
    }
}

/// The space as the caller may see it: configured (or let through by
/// `accept_unknown_spaces`), and visible to the caller.
pub(super) fn space(rt: &Runtime, caller: &Identity, space_guid: &str) -> Option<SpaceFacts> {
    let organization_guid = match rt.space(space_guid) {
        Some(entry) => Some(entry.organization_guid.clone()),
        None if rt.accept_unknown_spaces => None,
        None => return None,
    };
    can_see(rt, caller, space_guid).then_some(SpaceFacts { organization_guid })
}

pub(super) fn is_space_developer(rt: &Runtime, caller: &Identity, space_guid: &str) -> bool {
    match rt.space(space_guid) {
        Some(entry) => entry
            .roles
            .as_ref()
            .is_none_or(|roles| roles.is_developer(&caller.user_id)),
        None => !rt.static_roles(),
    }
}

pub(super) fn instance_creation() -> FeatureFlag {
    FeatureFlag::Enabled
}

pub(super) fn organization_suspended() -> bool {
    false
}

pub(super) fn visible_spaces(rt: &Runtime, caller: &Identity) -> VisibleSpaces {
    if caller.reads_everything() || !rt.static_roles() {
        return VisibleSpaces::All;
    }
    let mut spaces: Vec<String> = rt
        .spaces()
        .filter(|(_, entry)| {
            entry
                .roles
                .as_ref()
                .is_none_or(|roles| roles.is_member(&caller.user_id))
        })
        .map(|(guid, _)| guid.to_string())
        .collect();
    spaces.sort();
    VisibleSpaces::Only(spaces)
}

/// The organizations of the spaces the caller may see (every listed space's, without role
/// lists); read-all tokens belong everywhere.
pub(super) fn visible_organizations(rt: &Runtime, caller: &Identity) -> VisibleOrganizations {
    if caller.reads_everything() {
        return VisibleOrganizations::All;
    }
    let mut orgs: Vec<String> = rt
        .spaces()
        .filter(|(guid, _)| can_see(rt, caller, guid))
        .map(|(_, entry)| entry.organization_guid.clone())
        .collect();
    orgs.sort();
    orgs.dedup();
    VisibleOrganizations::Only(orgs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime(spaces: &str, accept_unknown: bool) -> Runtime {
        let text = format!(
            "[server]\naccept_unknown_spaces = {accept_unknown}\n[auth]\nsymmetric_secrets = [\"s\"]\n{spaces}"
        );
        let file = crate::config::parse(&text, Vec::new()).unwrap();
        Runtime::from_file(&file, &|_| None).unwrap()
    }

    fn user(id: &str) -> Identity {
        Identity::new(id, None, vec!["cloud_controller.write".into()])
    }

    const OPEN: &str = "[[spaces]]\nguid = \"open\"\norganization_guid = \"o1\"\n";
    const ROLES: &str = "[[spaces]]\nguid = \"closed\"\norganization_guid = \"o2\"\ndevelopers = [\"dev\"]\nauditors = [\"aud\"]\n";

    #[test]
    fn without_role_lists_every_writer_is_let_in() {
        let rt = runtime(OPEN, true);
        let anyone = user("anyone");
        assert_eq!(
            space(&rt, &anyone, "open"),
            Some(SpaceFacts {
                organization_guid: Some("o1".into())
            })
        );
        assert!(is_space_developer(&rt, &anyone, "open"));
        // accept_unknown_spaces: an unlisted space, without an organization.
        assert_eq!(
            space(&rt, &anyone, "elsewhere"),
            Some(SpaceFacts {
                organization_guid: None
            })
        );
        assert!(can_see(&rt, &anyone, "elsewhere"));
        assert_eq!(visible_spaces(&rt, &anyone), VisibleSpaces::All);
        assert_eq!(space(&runtime(OPEN, false), &anyone, "elsewhere"), None);
    }

    #[test]
    fn role_lists_are_enforced() {
        let rt = runtime(&format!("{OPEN}{ROLES}"), true);
        let (dev, aud, outsider) = (user("dev"), user("aud"), user("outsider"));
        assert!(space(&rt, &dev, "closed").is_some());
        assert!(is_space_developer(&rt, &dev, "closed"));
        // An auditor sees the space but is no developer.
        assert!(space(&rt, &aud, "closed").is_some());
        assert!(!is_space_developer(&rt, &aud, "closed"));
        // An outsider does not even see it; the open space stays open.
        assert_eq!(space(&rt, &outsider, "closed"), None);
        assert!(!is_space_developer(&rt, &outsider, "closed"));
        assert!(is_space_developer(&rt, &outsider, "open"));
        // With role lists in use, an unlisted space is for read-all tokens only.
        assert_eq!(space(&rt, &outsider, "elsewhere"), None);
        assert!(!is_space_developer(&rt, &outsider, "elsewhere"));
        assert_eq!(
            visible_spaces(&rt, &outsider),
            VisibleSpaces::Only(vec!["open".into()])
        );
        assert_eq!(
            visible_spaces(&rt, &aud),
            VisibleSpaces::Only(vec!["closed".into(), "open".into()])
        );
        let auditor = Identity::new(
            "global",
            None,
            vec!["cloud_controller.global_auditor".into()],
        );
        assert!(can_see(&rt, &auditor, "closed"));
        assert_eq!(visible_spaces(&rt, &auditor), VisibleSpaces::All);
        assert_eq!(
            visible_organizations(&rt, &outsider),
            VisibleOrganizations::Only(vec!["o1".into()])
        );
        assert_eq!(
            visible_organizations(&rt, &dev),
            VisibleOrganizations::Only(vec!["o1".into(), "o2".into()])
        );
    }
}
