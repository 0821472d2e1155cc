//! Object key and list-prefix validation.
//!
//! A key is a `/`-separated path relative to the store's root, e.g.
//! `b1/topics/orders/0/segment-00000000.kbs`. The rules (shared by every backend, so a key that
//! works on the filesystem also works on S3):
//!
//! * not empty, at most [`MAX_KEY_LEN`] bytes;
//! * no leading or trailing `/`, no empty segment (`a//b`);
//! * no `.` or `..` segment;
//! * no ASCII control character (this includes `\0`) and no `\`;
//! * no segment starting with `.kbs-` or containing `.kbs-tmp-`: those names are reserved for
//!   the filesystem backend's lock and temporary files and the capability probe.

use crate::error::{Error, Result};

/// The longest key accepted, in bytes (S3's limit).
pub const MAX_KEY_LEN: usize = 1024;

/// The marker inside the names of the filesystem backend's temporary files.
pub(crate) const TEMP_MARKER: &str = ".kbs-tmp-";

/// The prefix of names reserved for this crate (lock directory, probe objects).
pub(crate) const RESERVED_PREFIX: &str = ".kbs-";

/// Checks `key` against the rules in the module docs.
pub(crate) fn validate_key(key: &str) -> Result<()> {
    let invalid = |reason| {
        Err(Error::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() {
        return invalid("the key is empty");
    }
    if key.len() > MAX_KEY_LEN {
        return invalid("the key is longer than 1024 bytes");
    }
    if key.starts_with('/') {
        return invalid("the key starts with '/' (keys are relative to the store's root)");
    }
    if key.ends_with('/') {
        return invalid("the key ends with '/'");
    }
    for segment in key.split('/') {
        validate_segment(key, segment)?;
    }
    Ok(())
}

/// Checks a list prefix: empty (the whole store) or a key-like path; one trailing `/` is
/// allowed. Returns the prefix without the trailing `/`.
pub(crate) fn validate_prefix(prefix: &str) -> Result<&str> {
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    if trimmed.is_empty() {
        if prefix.is_empty() {
            return Ok("");
        }
        return Err(Error::InvalidKey {
            key: prefix.to_owned(),
            reason: "the prefix is '/' (use \"\" for everything)",
        });
    }
    validate_key(trimmed).map_err(|e| match e {
        Error::InvalidKey { reason, .. } => Error::InvalidKey {
            key: prefix.to_owned(),
            reason,
        },
        other => other,
    })?;
    Ok(trimmed)
}

fn validate_segment(key: &str, segment: &str) -> Result<()> {
    let invalid = |reason| {
        Err(Error::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    if segment.is_empty() {
        return invalid("the key has an empty segment ('//')");
    }
    if segment == "." || segment == ".." {
        return invalid("the key has a '.' or '..' segment");
    }
    if segment.chars().any(|c| c.is_ascii_control()) {
        return invalid("the key contains a control character");
    }
    if segment.contains('\\') {
        return invalid("the key contains '\\'");
    }
    if segment.starts_with(RESERVED_PREFIX) || segment.contains(TEMP_MARKER) {
        return invalid("names starting with '.kbs-' or containing '.kbs-tmp-' are reserved");
    }
    Ok(())
}

/// Whether a name found in a listing is one of this crate's internal names (temporary file,
/// lock directory, probe object) that must never be returned as an object.
pub(crate) fn is_internal_name(name: &str) -> bool {
    name.starts_with(RESERVED_PREFIX) || name.contains(TEMP_MARKER)
}

/// Joins a list prefix (already validated, without trailing `/`) and a relative name.
pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_backup_layout_keys() {
        for key in [
            "b1/manifest.json",
            "b1/topics/orders/0/segment-00000000.kbs",
            "b1/checkpoints/checkpoint.json",
            "a",
            "with space/and-ünïcode",
            ".hidden",
        ] {
            validate_key(key).unwrap();
        }
    }

    #[test]
    fn rejects_bad_keys_with_a_reason() {
        let long = "a".repeat(MAX_KEY_LEN + 1);
        for (key, needle) in [
            ("", "empty"),
            ("/abs", "starts with '/'"),
            ("dir/", "ends with '/'"),
            ("a//b", "empty segment"),
            ("a/../b", "'..'"),
            ("./a", "'.'"),
            ("a\0b", "control"),
            ("a\nb", "control"),
            ("a\\b", "'\\'"),
            ("b1/.kbs-locks", "reserved"),
            ("b1/.x.kbs-tmp-1-2", "reserved"),
            (long.as_str(), "1024"),
        ] {
            let err = validate_key(key).unwrap_err();
            let message = err.to_string();
            assert!(message.contains(needle), "{key:?}: {message}");
            assert!(matches!(err, Error::InvalidKey { .. }));
        }
    }

    #[test]
    fn prefixes() {
        assert_eq!(validate_prefix("").unwrap(), "");
        assert_eq!(validate_prefix("b1").unwrap(), "b1");
        assert_eq!(validate_prefix("b1/").unwrap(), "b1");
        assert_eq!(validate_prefix("b1/topics/").unwrap(), "b1/topics");
        assert!(validate_prefix("/").is_err());
        assert!(validate_prefix("b1//").is_err());
        assert!(validate_prefix("../x").is_err());
    }

    #[test]
    fn internal_names() {
        assert!(is_internal_name(".kbs-locks"));
        assert!(is_internal_name(".kbs-probe-123"));
        assert!(is_internal_name(".seg.kbs.kbs-tmp-12-3"));
        assert!(!is_internal_name("segment-0.kbs"));
        assert!(!is_internal_name(".hidden"));
    }
}
