//! The `POST /v2/service_instances` message: decoded like CC's `JsonMessage` (nulls are
//! absent, unknown keys ignored, every failing field reported in CC's field order with
//! membrane's wording), then the name rules. The body is JSON whatever the Content-Type says.

use serde_json::{Map, Value};

use super::ApiError;

/// Longest accepted instance name (CC since 2021).
pub const MAX_NAME_CHARS: usize = 255;
/// Longest combined length of all tags.
pub const MAX_TAGS_CHARS: usize = 2048;

/// A decoded, validated create request.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateServiceInstance {
    /// Trimmed, non-empty, at most 255 characters.
    pub name: String,
    pub space_guid: String,
    pub service_plan_guid: String,
    pub parameters: Option<Map<String, Value>>,
    pub tags: Vec<String>,
    pub gateway_data: Option<Value>,
}

/// Step 1 of CC's checks: decode the body. Name rules are checked later (`validate_name`),
/// after the plan, space and scope checks, as CC orders them.
pub fn decode(body: &[u8]) -> Result<CreateServiceInstance, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::message_parse_error(&parse_detail(body, &e)))?;
    let mut object = match value {
        Value::Object(map) => map,
        Value::Null => return Err(ApiError::message_parse_error("Decoded JSON cannot be nil")),
        other => {
            return Err(ApiError::message_parse_error(&format!(
                "Decoded JSON must be an object, given an instance of {}",
                ruby_class(&other)
            )))
        }
    };
    object.retain(|_, v| !v.is_null());

    let mut errors: Vec<(&str, String)> = Vec::new();
    let name = required_string(&mut object, "name", &mut errors);
    let parameters = match object.remove("parameters") {
        None => None,
        Some(Value::Object(m)) => Some(m),
        Some(other) => {
            errors.push(("parameters", expected("Hash", &other)));
            None
        }
    };
    let tags = string_list(&mut object, "tags", &mut errors).unwrap_or_default();
    let space_guid = required_string(&mut object, "space_guid", &mut errors);
    let service_plan_guid = required_string(&mut object, "service_plan_guid", &mut errors);
    // Known to CC's message, so type-checked as CC did, though v1 brokers have no use for them.
    string_list(&mut object, "service_binding_guids", &mut errors);
    string_list(&mut object, "service_key_guids", &mut errors);

    if !errors.is_empty() {
        let detail = errors
            .iter()
            .map(|(field, err)| format!("Field: {field}, Error: {err}"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(ApiError::message_parse_error(&detail));
    }
    Ok(CreateServiceInstance {
        name: strip(&name.unwrap_or_default()).to_string(),
        space_guid: space_guid.unwrap_or_default(),
        service_plan_guid: service_plan_guid.unwrap_or_default(),
        parameters,
        tags,
        gateway_data: object.remove("gateway_data"),
    })
}

/// CC's model validations on the name and tags, in its order.
pub fn validate_name_and_tags(req: &CreateServiceInstance) -> Result<(), ApiError> {
    if req.name.is_empty() {
        return Err(ApiError::name_empty());
    }
    if req.name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::name_too_long(MAX_NAME_CHARS));
    }
    let tags_chars: usize = req.tags.iter().map(|t| t.chars().count()).sum();
    if tags_chars > MAX_TAGS_CHARS {
        return Err(ApiError::tags_too_long(&req.name));
    }
    Ok(())
}

/// The `accepts_incomplete` query flag: absent, `true` or `false`; anything else is 10004.
/// v1 brokers are synchronous, so the value changes nothing else.
pub fn accepts_incomplete(query: Option<&str>) -> Result<bool, ApiError> {
    let mut flag = false;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k == "accepts_incomplete" {
            flag = match v.as_ref() {
                "true" => true,
                "false" => false,
                _ => return Err(ApiError::invalid_request()),
            };
        }
    }
    Ok(flag)
}

/// Ruby's `String#strip`: leading and trailing whitespace and NULs.
fn strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\0' || c == '\u{0b}')
}

fn required_string(
    object: &mut Map<String, Value>,
    field: &'static str,
    errors: &mut Vec<(&'static str, String)>,
) -> Option<String> {
    match object.remove(field) {
        None => {
            errors.push((field, format!("Missing field {field}")));
            None
        }
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            errors.push((field, expected("String", &other)));
            None
        }
    }
}

fn string_list(
    object: &mut Map<String, Value>,
    field: &'static str,
    errors: &mut Vec<(&'static str, String)>,
) -> Option<Vec<String>> {
    let items = match object.remove(field)? {
        Value::Array(items) => items,
        other => {
            errors.push((
                field,
                format!(
                    "Expected instance of Array, given instance of {}",
                    ruby_class(&other)
                ),
            ));
            return None;
        }
    };
    let mut out = Vec::with_capacity(items.len());
    let mut item_errors = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Value::String(s) => out.push(s),
            other => item_errors.push(format!("At index {i}: {}", expected("String", &other))),
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
fn expected(class: &str, given: &Value) -> String {
    format!(
        "Expected instance of {class}, given an instance of {}",
        ruby_class(given)
    )
}

/// The Ruby class a JSON value decodes to in CC.
fn ruby_class(v: &Value) -> &'static str {
    match v {
        Value::Null => "NilClass",
        Value::Bool(true) => "TrueClass",
        Value::Bool(false) => "FalseClass",
        Value::Number(n) if n.is_f64() => "Float",
        Value::Number(_) => "Integer",
        Value::String(_) => "String",
        Value::Array(_) => "Array",
        Value::Object(_) => "Hash",
    }
}

fn parse_detail(body: &[u8], e: &serde_json::Error) -> String {
    if body.iter().all(u8::is_ascii_whitespace) {
        "Decoded JSON cannot be nil".into()
    } else {
        format!("invalid JSON: {e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn name_is_trimmed_and_checked() {
        let mut v = seed();
        v["name"] = "  padded \t".into();
        let r = decode_value(&v).unwrap();
        assert_eq!(r.name, "padded");
        v["name"] = "   ".into();
        assert_eq!(
            validate_name_and_tags(&decode_value(&v).unwrap())
                .unwrap_err()
                .code,
            60001
        );
        v["name"] = "é".repeat(255).into();
        assert!(validate_name_and_tags(&decode_value(&v).unwrap()).is_ok());
        v["name"] = "s".repeat(256).into();
        let e = validate_name_and_tags(&decode_value(&v).unwrap()).unwrap_err();
        assert_eq!(e.code, 60009);
        assert!(e.description.contains("255"));
    }

    #[test]
    fn tags_over_2048_characters_are_too_long() {
        let mut v = seed();
        v["tags"] = serde_json::json!(["a".repeat(1024), "b".repeat(1024)]);
        assert!(validate_name_and_tags(&decode_value(&v).unwrap()).is_ok());
        v["tags"] = serde_json::json!(["a".repeat(1024), "b".repeat(1025)]);
        let e = validate_name_and_tags(&decode_value(&v).unwrap()).unwrap_err();
        assert_eq!(e.code, 60015);
        assert!(e.description.contains("my-service-instance"));
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
