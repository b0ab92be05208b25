//! The service offerings and plans a configuration serves: `[[services]]` resolved to their
//! brokers, and every `[[plans]]` entry to its offering — a declared one, or (for a plan that
//! carries `broker`, `label` and `version` itself) one derived per (label, version) with a
//! stable guid.

use std::collections::HashMap;
use std::sync::Arc;

use uuid::Uuid;

use super::file::{PlanSection, ServiceSection};
use super::runtime::{Broker, Plan, Service, ServiceListing, Visibility};
use super::ConfigError;

/// The namespace of derived offering guids, `3d5c3f1e-8b8a-5b0e-9d2f-6c1a7e40b2c9`: fixed
/// forever, so a derived guid never changes between versions, reloads or replicas.
const DERIVED_NAMESPACE: Uuid = Uuid::from_u128(0x3d5c_3f1e_8b8a_5b0e_9d2f_6c1a_7e40_b2c9);

/// The guid an offering declared only through its plans gets: UUID v5 in
/// [`DERIVED_NAMESPACE`] of the JSON array `["<label>","<version>"]` (unambiguous whatever
/// characters the label holds).
pub fn derived_service_guid(label: &str, version: &str) -> String {
    let name = serde_json::json!([label, version]).to_string();
    Uuid::new_v5(&DERIVED_NAMESPACE, name.as_bytes()).to_string()
}

/// The plans, indexed by guid, each pointing at its offering and broker.
pub fn resolve(
    services: &[ServiceSection],
    plans: &[PlanSection],
    brokers: &HashMap<&str, Arc<Broker>>,
) -> Result<HashMap<String, Plan>, ConfigError> {
    let mut declared: HashMap<&str, Arc<Service>> = HashMap::new();
    for (i, s) in services.iter().enumerate() {
        let key = |k: &str| format!("services[{i}].{k}");
        for (k, v) in [
            ("guid", &s.guid),
            ("label", &s.label),
            ("version", &s.version),
        ] {
            if v.is_empty() {
                return Err(ConfigError::invalid(key(k), "must not be empty"));
            }
        }
        let broker = broker_named(brokers, key("broker"), &s.broker)?;
        let listing = ServiceListing {
            url: s
                .url
                .clone()
                .unwrap_or_else(|| broker.target.display_url.clone()),
            long_description: s.long_description.clone(),
            info_url: s.info_url.clone(),
            documentation_url: s.documentation_url.clone(),
            tags: s.tags.clone(),
            extra: json_text(&key("extra"), &s.extra)?,
            unique_id: s.unique_id.clone().unwrap_or_else(|| s.guid.clone()),
            bindable: s.bindable,
            active: s.active,
        };
        let service = Arc::new(Service {
            guid: s.guid.clone(),
            label: s.label.clone(),
            provider: s.provider.clone().filter(|p| !p.is_empty()),
            version: s.version.clone(),
            description: s.description.clone(),
            broker,
            listing,
        });
        if declared.insert(&s.guid, service).is_some() {
            return Err(ConfigError::invalid(
                key("guid"),
                format!("duplicate service guid {:?}", s.guid),
            ));
        }
    }

    // Offerings derived from plans, by (label, version); the first plan that names one decides
    // its broker and provider, and every later one must agree.
    let mut derived: HashMap<(String, String), Arc<Service>> = HashMap::new();
    let mut out = HashMap::new();
    for (i, p) in plans.iter().enumerate() {
        let key = |k: &str| format!("plans[{i}].{k}");
        for (k, v) in [
            ("guid", &p.guid),
            ("name", &p.name),
            ("unique_id", &p.unique_id),
        ] {
            if v.is_empty() {
                return Err(ConfigError::invalid(key(k), "must not be empty"));
            }
        }
        let service = match &p.service {
            Some(guid) => {
                for (k, v) in [
                    ("broker", &p.broker),
                    ("label", &p.label),
                    ("version", &p.version),
                    ("provider", &p.provider),
                ] {
                    if v.is_some() {
                        return Err(ConfigError::invalid(
                            key(k),
                            "set on the plan's [[services]] entry, not on a plan naming one",
                        ));
                    }
                }
                declared.get(guid.as_str()).cloned().ok_or_else(|| {
                    ConfigError::invalid(key("service"), format!("unknown service {guid:?}"))
                })?
            }
            None => derive(p, &key, brokers, &mut derived)?,
        };
        let visibility = match (p.public, p.organizations.is_empty()) {
            (true, true) => Visibility::Public,
            (true, false) => {
                return Err(ConfigError::invalid(
                    key("organizations"),
                    "restricts a plan only with public = false",
                ))
            }
            (false, _) => {
                if let Some(bad) = p.organizations.iter().find(|o| o.is_empty()) {
                    return Err(ConfigError::invalid(
                        key("organizations"),
                        format!("must not hold an empty guid: {bad:?}"),
                    ));
                }
                Visibility::Organizations(p.organizations.clone())
            }
        };
        let plan = Plan {
            guid: p.guid.clone(),
            broker: service.broker.clone(),
            service,
            name: p.name.clone(),
            unique_id: p.unique_id.clone(),
            visibility,
            description: p.description.clone(),
            free: p.free,
            extra: json_text(&key("extra"), &p.extra)?,
            active: p.active,
        };
        if out.insert(p.guid.clone(), plan).is_some() {
            return Err(ConfigError::invalid(
                key("guid"),
                format!("duplicate plan guid {:?}", p.guid),
            ));
        }
    }
    Ok(out)
}

/// An `extra`: any JSON document, kept as the text the operator wrote (the catalog shows it
/// as a string, as the Cloud Controller does).
fn json_text(key: &str, value: &Option<String>) -> Result<Option<String>, ConfigError> {
    match value {
        None => Ok(None),
        Some(text) => match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => Ok(Some(text.clone())),
            Err(e) => Err(ConfigError::invalid(key, format!("must be JSON text: {e}"))),
        },
    }
}

fn broker_named(
    brokers: &HashMap<&str, Arc<Broker>>,
    key: String,
    name: &str,
) -> Result<Arc<Broker>, ConfigError> {
    brokers
        .get(name)
        .cloned()
        .ok_or_else(|| ConfigError::invalid(key, format!("unknown broker {name:?}")))
}

/// The offering of a plan that carries its own `broker`, `label` and `version`.
fn derive(
    p: &PlanSection,
    key: &dyn Fn(&str) -> String,
    brokers: &HashMap<&str, Arc<Broker>>,
    derived: &mut HashMap<(String, String), Arc<Service>>,
) -> Result<Arc<Service>, ConfigError> {
    let required = |k: &str, v: &Option<String>| {
        v.clone().filter(|v| !v.is_empty()).ok_or_else(|| {
            ConfigError::invalid(key(k), "must not be empty (or name a [[services]] entry)")
        })
    };
    let label = required("label", &p.label)?;
    let version = required("version", &p.version)?;
    let broker = broker_named(brokers, key("broker"), &required("broker", &p.broker)?)?;
    let provider = p.provider.clone().filter(|s| !s.is_empty());
    if let Some(existing) = derived.get(&(label.clone(), version.clone())) {
        if existing.broker.name != broker.name || existing.provider != provider {
            return Err(ConfigError::invalid(
                key("broker"),
                format!(
                    "plans of {label} {version} must share one broker and provider \
                     (or declare the offering in [[services]])"
                ),
            ));
        }
        return Ok(existing.clone());
    }
    let guid = derived_service_guid(&label, &version);
    let listing = ServiceListing {
        url: broker.target.display_url.clone(),
        long_description: None,
        info_url: None,
        documentation_url: None,
        tags: Vec::new(),
        extra: None,
        unique_id: guid.clone(),
        bindable: true,
        active: true,
    };
    let service = Arc::new(Service {
        guid,
        label: label.clone(),
        provider,
        version: version.clone(),
        description: String::new(),
        broker,
        listing,
    });
    derived.insert((label, version), service.clone());
    Ok(service)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, Runtime};

    const BROKERS: &str = r#"
[auth]
symmetric_secrets = ["s"]
[[brokers]]
name = "b1"
url = "http://127.0.0.1:9"
token = "t"
[[brokers]]
name = "b2"
url = "http://127.0.0.1:9"
token = "t"
"#;

    fn runtime(toml: &str) -> Result<Runtime, ConfigError> {
        let file = parse(&format!("{BROKERS}{toml}"), Vec::new())?;
        Runtime::from_file(&file, &|_| None)
    }

    fn reason(toml: &str) -> String {
        runtime(toml).unwrap_err().to_string()
    }

    #[test]
    fn plans_name_declared_services_or_carry_their_own() {
        let rt = runtime(
            r#"
[[services]]
guid = "svc-mysql"
label = "mysql"
version = "5.7"
provider = "core"
description = "MySQL"
broker = "b2"
[[plans]]
guid = "p-small"
service = "svc-mysql"
name = "small"
unique_id = "mysql-small"
[[plans]]
guid = "p-old-1"
broker = "b1"
label = "echo"
version = "1.0"
name = "free"
unique_id = "echo-free"
[[plans]]
guid = "p-old-2"
broker = "b1"
label = "echo"
version = "1.0"
name = "paid"
unique_id = "echo-paid"
"#,
        )
        .unwrap();
        let small = rt.plan("p-small").unwrap();
        assert_eq!(small.service.guid, "svc-mysql");
        assert_eq!(small.broker.name, "b2");
        assert_eq!(small.service.provider.as_deref(), Some("core"));
        let (free, paid) = (rt.plan("p-old-1").unwrap(), rt.plan("p-old-2").unwrap());
        assert!(
            Arc::ptr_eq(&free.service, &paid.service),
            "one derived offering"
        );
        assert_eq!(free.service.guid, derived_service_guid("echo", "1.0"));
        assert_eq!(free.broker.name, "b1");
    }

    #[test]
    fn a_plan_is_public_unless_restricted_to_organizations() {
        let plan = |keys: &str| {
            runtime(&format!(
                "[[plans]]\nguid = \"p\"\nbroker = \"b1\"\nlabel = \"l\"\nversion = \"1\"\nprovider = \"core\"\nname = \"n\"\nunique_id = \"u\"\n{keys}\n"
            ))
        };
        let rt = plan("").unwrap();
        assert_eq!(rt.plan("p").unwrap().visibility, Visibility::Public);
        let rt = plan("public = false\norganizations = [\"o1\"]").unwrap();
        let v = &rt.plan("p").unwrap().visibility;
        assert!(v.admits(Some("o1")) && !v.admits(Some("o2")) && !v.admits(None));
        let e = plan("organizations = [\"o1\"]").unwrap_err().to_string();
        assert!(
            e.contains("plans[0].organizations") && e.contains("public = false"),
            "{e}"
        );
        let e = plan("public = false\norganizations = [\"\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("plans[0].organizations"), "{e}");
    }

    #[test]
    fn offering_mistakes_name_the_key() {
        let service = r#"
[[services]]
guid = "svc"
label = "mysql"
version = "5.7"
broker = "b1"
"#;
        let plan = |extra: &str| {
            format!("{service}[[plans]]\nguid = \"p\"\nname = \"n\"\nunique_id = \"u\"\n{extra}")
        };
        assert_eq!(
            reason(&plan("service = \"nope\"")),
            "plans[0].service: unknown service \"nope\""
        );
        assert!(
            reason(&plan("service = \"svc\"\nlabel = \"x\"")).starts_with("plans[0].label: set on"),
        );
        assert!(reason(&plan("")).starts_with("plans[0].label: must not be empty"));
        assert_eq!(
            reason(&format!("{service}{service}")),
            "services[1].guid: duplicate service guid \"svc\""
        );
        assert_eq!(
            reason("[[services]]\nguid = \"s\"\nlabel = \"l\"\nversion = \"1\"\nbroker = \"zz\""),
            "services[0].broker: unknown broker \"zz\""
        );
        let two_brokers = r#"
[[plans]]
guid = "a"
broker = "b1"
label = "echo"
version = "1.0"
name = "a"
unique_id = "a"
[[plans]]
guid = "b"
broker = "b2"
label = "echo"
version = "1.0"
name = "b"
unique_id = "b"
"#;
        assert!(
            reason(two_brokers).starts_with("plans[1].broker: plans of echo 1.0 must share"),
            "{}",
            reason(two_brokers)
        );
    }

    #[test]
    fn derived_guids_are_stable_and_tell_label_and_version_apart() {
        // A fixed value (also in the README): changing the derivation would change every
        // derived offering's guid.
        assert_eq!(
            derived_service_guid("echo", "1.0"),
            "3dcca525-780d-5783-84f7-8a1c014e5780"
        );
        let guid = derived_service_guid("echo", "1.0");
        assert_eq!(Uuid::parse_str(&guid).unwrap().get_version_num(), 5);
        assert_ne!(
            derived_service_guid("a-b", "c"),
            derived_service_guid("a", "b-c")
        );
        assert_ne!(
            derived_service_guid("echo", "1.0"),
            derived_service_guid("echo", "2.0")
        );
    }
}
