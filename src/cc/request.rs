//! The `POST` and `PUT /v2/service_instances` messages: decoded like CC's `JsonMessage` (nulls
//! are absent, unknown keys ignored, every failing field reported in CC's field order with
//! membrane's wording). The name rules are the use cases' (`service::rules`). The body is JSON
//! whatever the Content-Type says.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::ApiError;

/// Deepest accepted nesting of arrays and objects anywhere in the body (serde_json's own
/// limit for typed values, applied to the raw `parameters` and `gateway_data` too, which no
/// broker should have to survive deeper).
pub const MAX_NESTING: usize = 128;

/// A decoded create request. `parameters` and `gateway_data` stay raw JSON, so the broker
/// receives them byte for byte (a 30-digit number is not rounded on the way).
#[derive(Debug, Clone)]
pub struct CreateServiceInstance {
    /// Trimmed (the name rules are checked later, in CC's order).
    pub name: String,
    pub space_guid: String,
    pub service_plan_guid: String,
    /// A JSON object, when given.
    pub parameters: Option<Box<RawValue>>,
    pub tags: Vec<String>,
    /// Any JSON, when given.
    pub gateway_data: Option<Box<RawValue>>,
}

/// The top-level members of the body, in order. A repeated key is refused: two readers of one
/// body (brokergate and the Cloud Controller behind it) must never disagree on which counts.
struct Members(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members: Vec<(String, Box<RawValue>)> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if members.iter().any(|(k, _)| *k == key) {
                        return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
                    }
                    members.push((key, map.next_value()?));
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(MembersVisitor)
    }
}

impl Members {
    /// Removes a member; `null` counts as absent, as in CC's `JsonMessage`.
    fn take(&mut self, key: &str) -> Option<Box<RawValue>> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        let (_, raw) = self.0.swap_remove(i);
        (raw.get() != "null").then_some(raw)
    }
}

/// Step 1 of CC's checks: decode the body. Name rules are the provisioning use case's, after
/// the plan, space and scope checks, as CC orders them.
pub fn decode(body: &[u8]) -> Result<CreateServiceInstance, ApiError> {
    let mut members = members(body)?;
    let mut errors: Vec<(&str, String)> = Vec::new();
    let name = required_string(&mut members, "name", &mut errors);
    let parameters = object(&mut members, "parameters", &mut errors);
    let tags = string_list(&mut members, "tags", &mut errors).unwrap_or_default();
    let space_guid = required_string(&mut members, "space_guid", &mut errors);
    let service_plan_guid = required_string(&mut members, "service_plan_guid", &mut errors);
    // Known to CC's message, so type-checked as CC did, though v1 brokers have no use for them.
    string_list(&mut members, "service_binding_guids", &mut errors);
    string_list(&mut members, "service_key_guids", &mut errors);

    refuse_if_any(&errors)?;
    Ok(CreateServiceInstance {
        name: strip(&name.unwrap_or_default()).to_string(),
        space_guid: space_guid.unwrap_or_default(),
        service_plan_guid: service_plan_guid.unwrap_or_default(),
        parameters,
        tags,
        gateway_data: members.take("gateway_data"),
    })
}

/// A decoded update (`PUT /v2/service_instances/:guid`): CC's update message has every
/// attribute of the create, each optional.
#[derive(Debug, Clone, Default)]
pub struct UpdateServiceInstance {
    /// Trimmed.
    pub name: Option<String>,
    pub space_guid: Option<String>,
    pub service_plan_guid: Option<String>,
    /// A JSON object, when given.
    pub parameters: Option<Box<RawValue>>,
    pub tags: Option<Vec<String>>,
}

/// Step 1 of CC's update: decode the body, every member optional, types checked as on create.
pub fn decode_update(body: &[u8]) -> Result<UpdateServiceInstance, ApiError> {
    let mut members = members(body)?;
    let mut errors: Vec<(&str, String)> = Vec::new();
    let name = optional_string(&mut members, "name", &mut errors);
    let parameters = object(&mut members, "parameters", &mut errors);
    let tags = string_list(&mut members, "tags", &mut errors);
    let space_guid = optional_string(&mut members, "space_guid", &mut errors);
    let service_plan_guid = optional_string(&mut members, "service_plan_guid", &mut errors);
    string_list(&mut members, "service_binding_guids", &mut errors);
    string_list(&mut members, "service_key_guids", &mut errors);
    refuse_if_any(&errors)?;
    Ok(UpdateServiceInstance {
        name: name.map(|n| strip(&n).to_string()),
        space_guid,
        service_plan_guid,
        parameters,
        tags,
    })
}

/// A decoded `POST /v2/service_bindings`.
#[derive(Debug, Clone)]
pub struct CreateServiceBinding {
    pub service_instance_guid: String,
    pub app_guid: String,
    pub name: Option<String>,
    /// A JSON object, when given: v1's `binding_options`.
    pub parameters: Option<Box<RawValue>>,
}

pub fn decode_binding(body: &[u8]) -> Result<CreateServiceBinding, ApiError> {
    let mut members = members(body)?;
    let mut errors: Vec<(&str, String)> = Vec::new();
    let service_instance_guid = required_string(&mut members, "service_instance_guid", &mut errors);
    let app_guid = required_string(&mut members, "app_guid", &mut errors);
    let name = optional_string(&mut members, "name", &mut errors);
    let parameters = object(&mut members, "parameters", &mut errors);
    refuse_if_any(&errors)?;
    Ok(CreateServiceBinding {
        service_instance_guid: service_instance_guid.unwrap_or_default(),
        app_guid: app_guid.unwrap_or_default(),
        name,
        parameters,
    })
}

/// A decoded `POST /v2/service_keys`.
#[derive(Debug, Clone)]
pub struct CreateServiceKey {
    pub service_instance_guid: String,
    pub name: String,
    /// A JSON object, when given: v1's `binding_options`.
    pub parameters: Option<Box<RawValue>>,
}

pub fn decode_key(body: &[u8]) -> Result<CreateServiceKey, ApiError> {
    let mut members = members(body)?;
    let mut errors: Vec<(&str, String)> = Vec::new();
    let service_instance_guid = required_string(&mut members, "service_instance_guid", &mut errors);
    let name = required_string(&mut members, "name", &mut errors);
    let parameters = object(&mut members, "parameters", &mut errors);
    refuse_if_any(&errors)?;
    Ok(CreateServiceKey {
        service_instance_guid: service_instance_guid.unwrap_or_default(),
        name: name.unwrap_or_default(),
        parameters,
    })
}

/// The body's top-level members: JSON, an object, nested at most [`MAX_NESTING`] deep.
fn members(body: &[u8]) -> Result<Members, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::message_parse_error("Decoded JSON cannot be nil"));
    }
    if nesting_exceeds(body, MAX_NESTING) {
        return Err(ApiError::message_parse_error(&format!(
            "invalid JSON: nested deeper than {MAX_NESTING} levels"
        )));
    }
    let parse_error =
        |e: serde_json::Error| ApiError::message_parse_error(&format!("invalid JSON: {e}"));
    let raw: Box<RawValue> = serde_json::from_slice(body).map_err(parse_error)?;
    match ruby_class(&raw) {
        "Hash" => serde_json::from_str::<Members>(raw.get()).map_err(parse_error),
        "NilClass" => Err(ApiError::message_parse_error("Decoded JSON cannot be nil")),
        class => Err(ApiError::message_parse_error(&format!(
            "Decoded JSON must be an object, given an instance of {class}"
        ))),
    }
}

/// One 1001 naming every failing field, in order.
fn refuse_if_any(errors: &[(&str, String)]) -> Result<(), ApiError> {
    if errors.is_empty() {
        return Ok(());
    }
    let detail = errors
        .iter()
        .map(|(field, err)| format!("Field: {field}, Error: {err}"))
        .collect::<Vec<_>>()
        .join(", ");
    Err(ApiError::message_parse_error(&detail))
}

/// The `accepts_incomplete` query flag: absent, `true` or `false`; anything else is 10004.
/// v1 brokers are synchronous, so the value changes nothing else.
pub fn accepts_incomplete(query: Option<&str>) -> Result<bool, ApiError> {
    flag(query, "accepts_incomplete")
}

/// A boolean query flag as CC's `convert_flag_to_bool`: absent (false), `true` or `false`;
/// anything else is 10004.
pub fn flag(query: Option<&str>, name: &str) -> Result<bool, ApiError> {
    let mut value = false;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k == name {
            value = match v.as_ref() {
                "true" => true,
                "false" => false,
                _ => return Err(ApiError::invalid_request()),
            };
        }
    }
    Ok(value)
}

/// True when arrays/objects nest deeper than `limit`, counting only brackets outside strings.
fn nesting_exceeds(body: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Ruby's `String#strip`: leading and trailing whitespace and NULs.
fn strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\0' || c == '\u{0b}')
}

/// A member that must be a JSON object, kept raw.
fn object(
    members: &mut Members,
    field: &'static str,
    errors: &mut Vec<(&'static str, String)>,
) -> Option<Box<RawValue>> {
    let raw = members.take(field)?;
    if ruby_class(&raw) != "Hash" {
        errors.push((field, expected("Hash", &raw)));
        return None;
    }
    Some(raw)
}

fn optional_string(
    members: &mut Members,
    field: &'static str,
    errors: &mut Vec<(&'static str, String)>,
) -> Option<String> {
    let raw = members.take(field)?;
    string(&raw).map_err(|err| errors.push((field, err))).ok()
}

fn required_string(
    members: &mut Members,
    field: &'static str,
    errors: &mut Vec<(&'static str, String)>,
) -> Option<String> {
    let Some(raw) = members.take(field) else {
        errors.push((field, format!("Missing field {field}")));
        return None;
    };
    match string(&raw) {
        Ok(s) => Some(s),
        Err(err) => {
            errors.push((field, err));
            None
        }
    }
}

/// A JSON string's value, or the error text for a member that is not one.
fn string(raw: &RawValue) -> Result<String, String> {
    if ruby_class(raw) != "String" {
        return Err(expected("String", raw));
    }
    serde_json::from_str(raw.get()).map_err(|e| format!("invalid string: {e}"))
}

fn string_list(
    members: &mut Members,
    field: &'static str,
    errors: &mut Vec<(&'static str, String)>,
) -> Option<Vec<String>> {
    let raw = members.take(field)?;
    let items: Vec<Box<RawValue>> = match serde_json::from_str(raw.get()) {
        Ok(items) if ruby_class(&raw) == "Array" => items,
        _ => {
            errors.push((
                field,
                format!(
                    "Expected instance of Array, given instance of {}",
                    ruby_class(&raw)
                ),
            ));
            return None;
        }
    };
    let mut out = Vec::with_capacity(items.len());
    let mut item_errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match string(item) {
            Ok(s) => out.push(s),
            Err(e) => item_errors.push(format!("At index {i}: {e}")),
        }
    }
    if item_errors.is_empty() {
        Some(out)
    } else {
        errors.push((field, item_errors.join(", ")));
        None
    }
}

/// membrane's class-schema message.
fn expected(class: &str, given: &RawValue) -> String {
    format!(
        "Expected instance of {class}, given an instance of {}",
        ruby_class(given)
    )
}

/// The Ruby class a JSON value decodes to in CC, read off already-validated JSON text.
fn ruby_class(raw: &RawValue) -> &'static str {
    let text = raw.get().trim_start();
    match text.as_bytes().first() {
        Some(b'{') => "Hash",
        Some(b'[') => "Array",
        Some(b'"') => "String",
        Some(b't') => "TrueClass",
        Some(b'f') => "FalseClass",
        Some(b'n') => "NilClass",
        _ if text.contains(['.', 'e', 'E']) => "Float",
        _ => "Integer",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn seed() -> Value {
        serde_json::json!({
            "space_guid": "f24c6904-30e0-4559-9523-06d2d93f0c9c",
            "name": "my-service-instance",
            "service_plan_guid": "6df3af55-8f97-4dbe-9d6b-098eb53d8c17"
        })
    }

    fn decode_value(v: &Value) -> Result<CreateServiceInstance, ApiError> {
        decode(v.to_string().as_bytes())
    }

    #[test]
    fn decodes_the_seed_request() {
        let r = decode_value(&seed()).unwrap();
        assert_eq!(r.name, "my-service-instance");
        assert_eq!(r.space_guid, "f24c6904-30e0-4559-9523-06d2d93f0c9c");
        assert_eq!(r.service_plan_guid, "6df3af55-8f97-4dbe-9d6b-098eb53d8c17");
        assert!(r.tags.is_empty() && r.parameters.is_none() && r.gateway_data.is_none());
    }

    #[test]
    fn missing_fields_are_listed_in_cc_order() {
        let e = decode(b"{\"tags\":[1,\"a\",true]}").unwrap_err();
        assert_eq!(e.code, 1001);
        assert_eq!(
            e.description,
            "Request invalid due to parse error: Field: name, Error: Missing field name, \
             Field: tags, Error: At index 0: Expected instance of String, given an instance of Integer, \
             At index 2: Expected instance of String, given an instance of TrueClass, \
             Field: space_guid, Error: Missing field space_guid, \
             Field: service_plan_guid, Error: Missing field service_plan_guid"
        );
    }

    #[test]
    fn wrong_types_use_membrane_wording() {
        let mut v = seed();
        v["parameters"] = "foo".into();
        v["name"] = 5.into();
        let e = decode_value(&v).unwrap_err();
        assert_eq!(
            e.description,
            "Request invalid due to parse error: Field: name, Error: Expected instance of String, \
             given an instance of Integer, Field: parameters, Error: Expected instance of Hash, \
             given an instance of String"
        );
        let mut v = seed();
        v["tags"] = "x".into();
        assert!(decode_value(&v)
            .unwrap_err()
            .description
            .ends_with("Field: tags, Error: Expected instance of Array, given instance of String"));
    }

    #[test]
    fn nulls_are_absent_and_unknown_keys_ignored() {
        let mut v = seed();
        v["parameters"] = Value::Null;
        v["tags"] = Value::Null;
        v["whatever"] = 1.into();
        assert!(decode_value(&v).is_ok());
        let mut v = seed();
        v["name"] = Value::Null;
        assert!(decode_value(&v)
            .unwrap_err()
            .description
            .contains("Missing field name"));
    }

    #[test]
    fn non_objects_and_bad_json_are_400_parse_errors() {
        for body in [
            &b"[1,2]"[..],
            b"\"x\"",
            b"5",
            b"null",
            b"",
            b"{",
            b"\xff\xfe",
        ] {
            let e = decode(body).unwrap_err();
            assert_eq!(
                (e.status, e.code),
                (400, 1001),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(decode(b"")
            .unwrap_err()
            .description
            .ends_with("Decoded JSON cannot be nil"));
    }

    #[test]
    fn nesting_is_bounded_anywhere_in_the_body() {
        let deep = |n: usize| {
            format!(
                r#"{{"name":"a","space_guid":"s","service_plan_guid":"p","parameters":{}1{}}}"#,
                r#"{"a":"#.repeat(n),
                "}".repeat(n)
            )
        };
        assert!(decode(deep(100).as_bytes()).is_ok());
        let e = decode(deep(200).as_bytes()).unwrap_err();
        assert!(e.description.contains("nested deeper"), "{}", e.description);
        // Brackets inside strings do not count.
        let text = format!(
            r#"{{"name":"{}","space_guid":"s","service_plan_guid":"p"}}"#,
            "[\\\"[".repeat(300)
        );
        assert!(decode(text.as_bytes()).is_ok(), "{text}");
    }

    #[test]
    fn duplicate_top_level_keys_are_refused() {
        let body = br#"{"name":"a","name":"b","space_guid":"s","service_plan_guid":"p"}"#;
        let e = decode(body).unwrap_err();
        assert_eq!(e.code, 1001);
        assert!(e.description.contains("duplicate key"), "{}", e.description);
    }

    #[test]
    fn parameters_and_gateway_data_are_kept_byte_for_byte() {
        let body = br#"{"name":"a","space_guid":"s","service_plan_guid":"p",
            "parameters":{"n":123456789012345678901234567890,"f":2.50},"gateway_data":[1, "x"]}"#;
        let r = decode(body).unwrap();
        assert_eq!(
            r.parameters.unwrap().get(),
            r#"{"n":123456789012345678901234567890,"f":2.50}"#
        );
        assert_eq!(r.gateway_data.unwrap().get(), r#"[1, "x"]"#);
    }

    #[test]
    fn name_is_trimmed() {
        let mut v = seed();
        v["name"] = "  padded \t".into();
        let r = decode_value(&v).unwrap();
        assert_eq!(r.name, "padded");
        v["name"] = "   ".into();
        assert_eq!(decode_value(&v).unwrap().name, "");
    }

    #[test]
    fn accepts_incomplete_flag() {
        assert_eq!(accepts_incomplete(None), Ok(false));
        assert_eq!(
            accepts_incomplete(Some("accepts_incomplete=true")),
            Ok(true)
        );
        assert_eq!(
            accepts_incomplete(Some("a=1&accepts_incomplete=false")),
            Ok(false)
        );
        assert_eq!(
            accepts_incomplete(Some("accepts_incomplete=lol"))
                .unwrap_err()
                .code,
            10004
        );
        assert_eq!(
            accepts_incomplete(Some("accepts_incomplete="))
                .unwrap_err()
                .code,
            10004
        );
    }
}
