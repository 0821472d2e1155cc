//! Static keys from the AWS shared credentials file, the "profile" step of the standard AWS
//! credential chain (object_store covers the environment, web identity, container and instance
//! metadata steps itself).
//!
//! Reads `$AWS_SHARED_CREDENTIALS_FILE` (default `~/.aws/credentials`), section
//! `[$AWS_PROFILE]` (default `[default]`): `aws_access_key_id`, `aws_secret_access_key`,
//! `aws_session_token`; and the profile's `region` from `$AWS_CONFIG_FILE` (default
//! `~/.aws/config`, section `[default]` or `[profile NAME]`). Profiles that assume roles or use
//! SSO are not resolved.

use std::path::PathBuf;

use crate::options::Secret;

/// Keys (and region) of one profile.
#[derive(Debug)]
pub(crate) struct Profile {
    pub(crate) access_key_id: Secret,
    pub(crate) secret_access_key: Secret,
    pub(crate) session_token: Option<Secret>,
    pub(crate) region: Option<String>,
}

/// The selected profile's static keys, if the credentials file has them.
pub(crate) fn load() -> Option<Profile> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let credentials = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".aws/credentials")))?;
    let config = std::env::var_os("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .or_else(|| home.map(|h| h.join(".aws/config")));
    let name = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".to_owned());
    let credentials = std::fs::read_to_string(credentials).ok()?;
    let config = config
        .and_then(|path| std::fs::read_to_string(path).ok())
        .unwrap_or_default();
    parse(&credentials, &config, &name)
}

/// [`load`] on file contents.
pub(crate) fn parse(credentials: &str, config: &str, name: &str) -> Option<Profile> {
    let value = |text: &str, section: &str, key: &str| -> Option<String> {
        let mut in_section = false;
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
                continue;
            }
            if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                in_section = header.trim() == section;
                continue;
            }
            if in_section
                && let Some((k, v)) = line.split_once('=')
                && k.trim() == key
            {
                return Some(v.trim().to_owned());
            }
        }
        None
    };
    let access_key_id = value(credentials, name, "aws_access_key_id")?;
    let secret_access_key = value(credentials, name, "aws_secret_access_key")?;
    let session_token = value(credentials, name, "aws_session_token");
    let config_section = if name == "default" {
        "default".to_owned()
    } else {
        format!("profile {name}")
    };
    let region = value(config, &config_section, "region");
    Some(Profile {
        access_key_id: Secret::new(access_key_id),
        secret_access_key: Secret::new(secret_access_key),
        session_token: session_token.map(Secret::new),
        region,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREDENTIALS: &str = "\
# comment
[default]
aws_access_key_id = AKIADEFAULT
aws_secret_access_key = default-secret

[backup]
aws_access_key_id=AKIABACKUP
aws_secret_access_key=backup-secret
aws_session_token = backup-token
";

    const CONFIG: &str = "\
[default]
region = eu-west-1
[profile backup]
region = us-west-2
";

    #[test]
    fn reads_the_selected_profile() {
        let default = parse(CREDENTIALS, CONFIG, "default").unwrap();
        assert_eq!(default.access_key_id.expose(), "AKIADEFAULT");
        assert_eq!(default.secret_access_key.expose(), "default-secret");
        assert!(default.session_token.is_none());
        assert_eq!(default.region.as_deref(), Some("eu-west-1"));
        let backup = parse(CREDENTIALS, CONFIG, "backup").unwrap();
        assert_eq!(backup.access_key_id.expose(), "AKIABACKUP");
        assert_eq!(backup.session_token.as_ref().map(Secret::expose), Some("backup-token"));
        assert_eq!(backup.region.as_deref(), Some("us-west-2"));
        assert!(parse(CREDENTIALS, CONFIG, "missing").is_none());
        assert!(!format!("{backup:?}").contains("backup-secret"));
    }
}
