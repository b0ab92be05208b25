//! Extracting the token from `Authorization: bearer <JWT>` the way CC's TokenCoder does:
//! exactly two space-separated parts, the first `bearer` in any case.

use super::{AuthError, InvalidReason};

/// Returns the token, `Missing` when there is no usable bearer header, or `TooLarge`.
pub fn bearer_token(header: Option<&[u8]>, max_token_bytes: usize) -> Result<&str, AuthError> {
    let value = header.ok_or(AuthError::Missing)?;
    let value = std::str::from_utf8(value).map_err(|_| AuthError::Missing)?;
    let mut parts = value.split(' ').filter(|p| !p.is_empty());
    let (Some(scheme), Some(token), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(AuthError::Missing);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Missing);
    }
    if token.len() > max_token_bytes {
        return Err(AuthError::Invalid(InvalidReason::TooLarge));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_is_case_insensitive() {
        for h in ["bearer abc", "Bearer abc", "BEARER abc", "bEaReR  abc"] {
            assert_eq!(bearer_token(Some(h.as_bytes()), 100), Ok("abc"), "{h}");
        }
    }

    #[test]
    fn missing_or_other_schemes_are_not_authenticated() {
        for h in ["", "bearer", "Basic dXNlcjpwdw==", "bearer a b", "abc"] {
            assert_eq!(
                bearer_token(Some(h.as_bytes()), 100),
                Err(AuthError::Missing),
                "{h:?}"
            );
        }
        assert_eq!(bearer_token(None, 100), Err(AuthError::Missing));
    }

    #[test]
    fn oversized_token_is_invalid_not_missing() {
        let h = format!("bearer {}", "a".repeat(101));
        assert_eq!(
            bearer_token(Some(h.as_bytes()), 100),
            Err(AuthError::Invalid(InvalidReason::TooLarge))
        );
    }
}
