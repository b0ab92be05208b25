//! `X-VCAP-Request-ID` as CC's middleware makes it: the client's id (or `X-Request-ID`)
//! stripped to `[A-Za-z0-9_-]`, cut to 255 characters, with `::<uuid4>` appended; else a
//! fresh uuid4. It goes back to the client and on to the broker.

pub fn request_id(vcap: Option<&[u8]>, plain: Option<&[u8]>) -> String {
    let given = [vcap, plain].into_iter().flatten().find(|v| !v.is_empty());
    let fresh = uuid::Uuid::new_v4();
    match given {
        None => fresh.to_string(),
        Some(v) => {
            let kept: String = v
                .iter()
                .filter(|b| b.is_ascii_alphanumeric() || **b == b'_' || **b == b'-')
                .take(255)
                .map(|b| char::from(*b))
                .collect();
            format!("{kept}::{fresh}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_and_appends_a_uuid() {
        let id = request_id(Some(b"abc/def\r\n<x>-_1"), None);
        let (kept, uuid) = id.split_once("::").unwrap();
        assert_eq!(kept, "abcdefx-_1");
        assert!(uuid::Uuid::parse_str(uuid).is_ok());
        let long = request_id(Some("a".repeat(400).as_bytes()), None);
        assert_eq!(long.split_once("::").unwrap().0.len(), 255);
    }

    #[test]
    fn falls_back_to_x_request_id_then_a_fresh_uuid() {
        assert!(request_id(None, Some(b"zz")).starts_with("zz::"));
        assert!(uuid::Uuid::parse_str(&request_id(None, None)).is_ok());
    }
}
