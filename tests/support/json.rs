//! JSON as it is on the wire: an object's members in document order, each
//! with its value's raw text, for tests of key order and exact number forms.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

/// The members of a JSON object as (key, raw value text), in wire order,
/// duplicates kept; panics (with the text) when `json` is not one object.
pub fn members(json: &(impl AsRef<[u8]> + ?Sized)) -> Vec<(String, String)> {
    let json = json.as_ref();
    serde_json::from_slice::<Members>(json)
        .unwrap_or_else(|e| panic!("not a JSON object ({e}): {}", String::from_utf8_lossy(json)))
        .0
}

/// The keys of `members`, in order.
pub fn keys(members: &[(String, String)]) -> Vec<&str> {
    members.iter().map(|(k, _)| k.as_str()).collect()
}

/// The raw text of member `key` (the first, if repeated); panics when absent.
pub fn raw<'a>(members: &'a [(String, String)], key: &str) -> &'a str {
    members
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key:?} in {members:?}"))
}

/// Member `key` parsed as JSON; panics when absent.
pub fn value(members: &[(String, String)], key: &str) -> Value {
    serde_json::from_str(raw(members, key)).expect("raw member is JSON")
}

struct Members(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(MembersVisitor)
    }
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Members;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
        let mut out = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
            out.push((k, v.get().to_string()));
        }
        Ok(Members(out))
    }
}
