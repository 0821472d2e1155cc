//! Encryption at rest on the command line: reading age identity files and matching keys
//! against the recipients a backup's manifest records.

use std::path::Path;

use kbs_format::{FormatError, Identities, ReadLimits, Recipients, SegmentReader, SegmentStreamReader, SegmentSummary};
use kbs_manifest::{Encryption, Manifest};

use crate::CliError;

/// Reads an age identity file. Errors name the file, never its contents.
pub fn read_identity_file(path: &Path) -> Result<Identities, CliError> {
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|source| CliError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?);
    Identities::parse(&text).map_err(|e| CliError::InvalidArgument {
        flag: "identity",
        message: format!("{}: {e}", path.display()),
    })
}

/// Reads `--identity FILE` when it was given.
pub fn read_identity_option(path: Option<&Path>) -> Result<Option<Identities>, CliError> {
    path.map(read_identity_file).transpose()
}

/// Opens a segment held in memory, with `identities` when the backup is encrypted.
pub fn open_segment(data: bytes::Bytes, identities: Option<&Identities>) -> Result<SegmentReader, FormatError> {
    match identities {
        Some(identities) => SegmentReader::with_identities(data, ReadLimits::default(), identities),
        None => SegmentReader::new(data),
    }
}

/// Opens a segment as a stream, with `identities` when the backup is encrypted.
pub fn open_stream<R: std::io::Read>(
    reader: R,
    identities: Option<&Identities>,
) -> Result<SegmentStreamReader<R>, FormatError> {
    match identities {
        Some(identities) => SegmentStreamReader::with_identities(reader, ReadLimits::default(), identities),
        None => SegmentStreamReader::new(reader),
    }
}

/// Verifies a whole segment held in memory, with `identities` when the backup is encrypted.
pub fn verify_segment(data: &[u8], identities: Option<&Identities>) -> Result<SegmentSummary, FormatError> {
    match identities {
        Some(identities) => kbs_format::verify_segment_with_identities(data, ReadLimits::default(), identities),
        None => kbs_format::verify_segment(data, ReadLimits::default()),
    }
}

/// Writes a new identity to `path` (created new, mode 0600 on Unix) and returns its public key.
pub fn write_new_identity(path: &Path) -> Result<String, CliError> {
    use std::io::Write as _;
    let identities = Identities::generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let write_error =
        |e: std::io::Error| CliError::Encryption(format!("cannot write the identity to {}: {e}", path.display()));
    let mut file = options.open(path).map_err(write_error)?;
    let public = identities.recipients().remove(0);
    let text = format!(
        "# kbs keygen: the secret key of {public}; keep it safe, and never next to the backups\n{}",
        identities.to_file_text().as_str()
    );
    file.write_all(text.as_bytes()).map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    Ok(public)
}

/// Parses the `--encrypt-to` recipients (`None` when none were given).
pub fn recipients(keys: &[String]) -> Result<Option<Recipients>, CliError> {
    if keys.is_empty() {
        return Ok(None);
    }
    Recipients::parse(keys)
        .map(Some)
        .map_err(|e| CliError::InvalidArgument {
            flag: "encrypt-to",
            message: e.to_string(),
        })
}

/// The identities that read `manifest`'s segments: `None` for a plain backup; an error naming
/// the backup and its recipients when it is encrypted and `given` is missing or opens none of
/// them.
pub fn identities_for<'a>(
    manifest: &Manifest,
    given: Option<&'a Identities>,
) -> Result<Option<&'a Identities>, CliError> {
    let Some(encryption) = &manifest.encryption else {
        return Ok(None);
    };
    let backup_id = &manifest.backup_id;
    let recipients = encryption.recipients.join(", ");
    let Some(identities) = given else {
        return Err(CliError::Encryption(format!(
            "backup {backup_id} is encrypted to {recipients}: pass --identity FILE with the secret key of one of them"
        )));
    };
    let own = identities.recipients();
    if !own.iter().any(|key| encryption.recipients.contains(key)) {
        return Err(CliError::Encryption(format!(
            "backup {backup_id} is encrypted to {recipients}; the identity given is for {}, none of them",
            own.join(", ")
        )));
    }
    Ok(Some(identities))
}

/// Checks that continuing a backup keeps its encryption: the same recipients, or none for a
/// plain backup. Mixing would leave segments that some readers cannot open.
pub fn check_continuation(
    backup_id: &str,
    recorded: Option<&Encryption>,
    given: Option<&Recipients>,
) -> Result<(), CliError> {
    let given_keys = given.map(Recipients::to_strings);
    match (recorded, given_keys) {
        (None, None) => Ok(()),
        (Some(recorded), Some(keys)) if same_set(&recorded.recipients, &keys) => Ok(()),
        (Some(recorded), Some(keys)) => Err(CliError::Encryption(format!(
            "backup {backup_id} is encrypted to {}, not to {}: continue it with the same --encrypt-to, or start a \
             new --backup-id",
            recorded.recipients.join(", "),
            keys.join(", ")
        ))),
        (Some(recorded), None) => Err(CliError::Encryption(format!(
            "backup {backup_id} is encrypted to {}: continue it with the same --encrypt-to (kbs never adds plain \
             segments to an encrypted backup)",
            recorded.recipients.join(", ")
        ))),
        (None, Some(_)) => Err(CliError::Encryption(format!(
            "backup {backup_id} holds unencrypted segments: --encrypt-to needs a new --backup-id"
        ))),
    }
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.iter().all(|key| b.contains(key)) && b.iter().all(|key| a.contains(key))
}
