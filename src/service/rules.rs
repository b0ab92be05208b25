//! The Cloud Controller's model validations of an instance's name and tags, in its order.

/// Longest accepted instance name, in characters (the Cloud Controller since 2021).
pub const MAX_NAME_CHARS: usize = 255;
/// Longest combined length of all tags, in characters.
pub const MAX_TAGS_CHARS: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleViolation {
    NameEmpty,
    NameTooLong { limit: usize },
    TagsTooLong { limit: usize },
}

/// `name` is already trimmed; lengths count characters, not bytes.
pub fn check_name_and_tags(name: &str, tags: &[String]) -> Result<(), RuleViolation> {
    if name.is_empty() {
        return Err(RuleViolation::NameEmpty);
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(RuleViolation::NameTooLong {
            limit: MAX_NAME_CHARS,
        });
    }
    let tags_chars: usize = tags.iter().map(|t| t.chars().count()).sum();
    if tags_chars > MAX_TAGS_CHARS {
        return Err(RuleViolation::TagsTooLong {
            limit: MAX_TAGS_CHARS,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_then_long_names_then_long_tags() {
        assert_eq!(
            check_name_and_tags("", &["x".repeat(3000)]),
            Err(RuleViolation::NameEmpty)
        );
        assert_eq!(
            check_name_and_tags(&"n".repeat(256), &["x".repeat(3000)]),
            Err(RuleViolation::NameTooLong { limit: 255 })
        );
        assert_eq!(check_name_and_tags(&"n".repeat(255), &[]), Ok(()));
        assert_eq!(
            check_name_and_tags("n", &["x".repeat(2000), "y".repeat(49)]),
            Err(RuleViolation::TagsTooLong { limit: 2048 })
        );
        assert_eq!(check_name_and_tags("n", &["x".repeat(2048)]), Ok(()));
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        assert_eq!(
            check_name_and_tags(&"é".repeat(255), &["ü".repeat(2048)]),
            Ok(())
        );
    }
}
