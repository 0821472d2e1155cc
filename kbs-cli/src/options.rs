//! Parsing of option values shared by the subcommands: sizes, durations, Kafka security.

use std::time::Duration;

use kbs_kafka::{
    AwsCredentialsProvider, AwsMskIam, ClientConfig, ClientCredentials, Sasl, SaslMechanism, Security, TlsConfig,
    TokenSource,
};

use crate::cli::KafkaArgs;
use crate::error::CliError;

/// Parses a byte size: a number with an optional suffix k, M, G (powers of 1024) or B.
pub fn parse_size(flag: &'static str, text: &str) -> Result<u64, CliError> {
    let text = text.trim();
    let invalid = || CliError::InvalidArgument {
        flag,
        message: format!("{text:?} is not a size like 64M, 512k or 1G"),
    };
    let (digits, multiplier) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (text, 1u64),
        Some((i, _)) => {
            let unit = text[i..].trim().to_ascii_lowercase();
            let m = match unit.as_str() {
                "b" => 1,
                "k" | "kb" | "kib" => 1 << 10,
                "m" | "mb" | "mib" => 1 << 20,
                "g" | "gb" | "gib" => 1 << 30,
                _ => return Err(invalid()),
            };
            (&text[..i], m)
        }
    };
    let n: u64 = digits.parse().map_err(|_| invalid())?;
    n.checked_mul(multiplier).filter(|&v| v > 0).ok_or_else(invalid)
}

/// Parses a duration: a number with a unit ms, s, m or h.
pub fn parse_duration(flag: &'static str, text: &str) -> Result<Duration, CliError> {
    let text = text.trim();
    let invalid = || CliError::InvalidArgument {
        flag,
        message: format!("{text:?} is not a duration like 500ms, 30s, 5m or 1h"),
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(invalid)?;
    let n: u64 = text[..split].parse().map_err(|_| invalid())?;
    match &text[split..] {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.checked_mul(60).ok_or_else(invalid)?)),
        "h" => Ok(Duration::from_secs(n.checked_mul(3600).ok_or_else(invalid)?)),
        _ => Err(invalid()),
    }
}

/// The Kafka client configuration from the command line.
pub fn kafka_config(args: &KafkaArgs) -> Result<ClientConfig, CliError> {
    let servers: Vec<String> = args
        .bootstrap_servers
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if servers.is_empty() {
        return Err(CliError::InvalidArgument {
            flag: "bootstrap-servers",
            message: "no broker given".into(),
        });
    }
    let tls = || {
        let mut tls = TlsConfig::default();
        tls.ca_file = args.ssl_ca_location.clone();
        tls.client_cert_file = args.ssl_certificate_location.clone();
        tls.client_key_file = args.ssl_key_location.clone();
        tls.server_name = args.ssl_server_name.clone();
        tls
    };
    let sasl = || -> Result<Sasl, CliError> {
        let mechanism = match args.sasl_mechanism.as_deref().map(str::to_ascii_uppercase).as_deref() {
            Some("PLAIN") => SaslMechanism::Plain,
            Some("SCRAM-SHA-256") => SaslMechanism::ScramSha256,
            Some("SCRAM-SHA-512") => SaslMechanism::ScramSha512,
            Some("OAUTHBEARER") => return oauth_bearer(args),
            Some("AWS_MSK_IAM") => return Ok(Sasl::aws_msk_iam(aws_msk_iam(args))),
            Some(other) => {
                return Err(CliError::InvalidArgument {
                    flag: "sasl-mechanism",
                    message: format!(
                        "{other:?} is not PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or AWS_MSK_IAM"
                    ),
                });
            }
            None => {
                return Err(CliError::InvalidArgument {
                    flag: "sasl-mechanism",
                    message: "required with a SASL security protocol".into(),
                });
            }
        };
        let username = args.sasl_username.clone().ok_or(CliError::InvalidArgument {
            flag: "sasl-username",
            message: "required with a SASL security protocol".into(),
        })?;
        let password = match (&args.sasl_password, &args.sasl_password_file) {
            (Some(password), _) => password.expose().to_owned(),
            (None, Some(file)) => read_secret_file("sasl-password-file", file)?,
            (None, None) => {
                return Err(CliError::InvalidArgument {
                    flag: "sasl-password",
                    message: "required with a SASL security protocol (or --sasl-password-file, or set \
                              KBS_SASL_PASSWORD)"
                        .into(),
                });
            }
        };
        Ok(Sasl::new(mechanism, username, password))
    };
    let security = match args.security_protocol.to_ascii_uppercase().as_str() {
        "PLAINTEXT" => Security::Plaintext,
        "SSL" => Security::Tls(tls()),
        "SASL_PLAINTEXT" => Security::SaslPlaintext(sasl()?),
        "SASL_SSL" => Security::SaslTls(sasl()?, tls()),
        other => {
            return Err(CliError::InvalidArgument {
                flag: "security-protocol",
                message: format!("{other:?} is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
            });
        }
    };
    Ok(ClientConfig::new(servers).with_security(security))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("x", "64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("x", "512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("x", "1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("x", "1000").unwrap(), 1000);
        for bad in ["", "0", "M", "1T", "-1", "99999999999999999999G"] {
            assert!(parse_size("x", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("x", "10ms").unwrap(), Duration::from_millis(10));
        assert_eq!(parse_duration("x", "30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("x", "5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("x", "1h").unwrap(), Duration::from_secs(3600));
        for bad in ["", "5", "m", "5d", "-1s"] {
            assert!(parse_duration("x", bad).is_err(), "{bad}");
        }
    }
}

/// A secret read from the file a `--…-file` flag names, surrounding whitespace removed.
fn read_secret_file(flag: &'static str, file: &std::path::Path) -> Result<String, CliError> {
    std::fs::read_to_string(file)
        .map(|text| text.trim().to_owned())
        .map_err(|e| CliError::InvalidArgument {
            flag,
            message: format!("cannot read {}: {e}", file.display()),
        })
}

/// MSK IAM settings: the profile's or the default chain's credentials, the region if given.
fn aws_msk_iam(args: &KafkaArgs) -> AwsMskIam {
    let credentials = match &args.aws_profile {
        Some(profile) => AwsCredentialsProvider::profile(profile.clone()),
        None => AwsCredentialsProvider::default_chain(),
    };
    let iam = AwsMskIam::new().with_credentials(credentials);
    match &args.aws_region {
        Some(region) => iam.with_region(region.clone()),
        None => iam,
    }
}

/// OAUTHBEARER credentials: exactly one of the token, its file, its command, a token endpoint
/// or an MSK IAM token.
fn oauth_bearer(args: &KafkaArgs) -> Result<Sasl, CliError> {
    let mut sources = Vec::new();
    if args.sasl_oauthbearer_aws_msk_iam {
        sources.push(TokenSource::AwsMskIam(aws_msk_iam(args)));
    }
    if let Some(token) = &args.sasl_oauthbearer_token {
        sources.push(TokenSource::Static(token.expose().to_owned()));
    }
    if let Some(file) = &args.sasl_oauthbearer_token_file {
        sources.push(TokenSource::File(file.clone()));
    }
    if let Some(command) = &args.sasl_oauthbearer_token_command {
        sources.push(TokenSource::Command(vec!["sh".into(), "-c".into(), command.clone()]));
    }
    if let Some(endpoint) = &args.sasl_oauthbearer_token_endpoint_url {
        let client_id = args
            .sasl_oauthbearer_client_id
            .clone()
            .ok_or(CliError::InvalidArgument {
                flag: "sasl-oauthbearer-client-id",
                message: "required with --sasl-oauthbearer-token-endpoint-url".into(),
            })?;
        let secret = match (
            &args.sasl_oauthbearer_client_secret,
            &args.sasl_oauthbearer_client_secret_file,
        ) {
            (Some(secret), _) => secret.expose().to_owned(),
            (None, Some(file)) => read_secret_file("sasl-oauthbearer-client-secret-file", file)?,
            (None, None) => {
                return Err(CliError::InvalidArgument {
                    flag: "sasl-oauthbearer-client-secret-file",
                    message: "required with --sasl-oauthbearer-token-endpoint-url (or \
                              KBS_SASL_OAUTHBEARER_CLIENT_SECRET)"
                        .into(),
                });
            }
        };
        let mut credentials = ClientCredentials::new(endpoint.clone(), client_id, secret);
        credentials.scope = args.sasl_oauthbearer_scope.clone();
        sources.push(TokenSource::ClientCredentials(credentials));
    }
    match sources.len() {
        1 => Ok(Sasl::oauth_bearer(sources.remove(0))),
        0 => Err(CliError::InvalidArgument {
            flag: "sasl-oauthbearer-token-file",
            message: "OAUTHBEARER needs a token: --sasl-oauthbearer-token-file, --sasl-oauthbearer-token-command, \
                      --sasl-oauthbearer-token-endpoint-url, --sasl-oauthbearer-aws-msk-iam or \
                      --sasl-oauthbearer-token (KBS_SASL_OAUTHBEARER_TOKEN)"
                .into(),
        }),
        _ => Err(CliError::InvalidArgument {
            flag: "sasl-oauthbearer-token-file",
            message: "give only one of --sasl-oauthbearer-token, --sasl-oauthbearer-token-file, \
                      --sasl-oauthbearer-token-command, --sasl-oauthbearer-token-endpoint-url and \
                      --sasl-oauthbearer-aws-msk-iam"
                .into(),
        }),
    }
}

/// Parses a point in time: Unix milliseconds, or RFC 3339 (`2026-11-21T06:00:00Z`,
/// `2026-11-21T08:00:00.250+02:00`).
pub fn parse_time(flag: &'static str, text: &str) -> Result<i64, CliError> {
    let text = text.trim();
    let invalid = || CliError::InvalidArgument {
        flag,
        message: format!("{text:?} is neither Unix milliseconds nor an RFC 3339 time like 2026-11-21T06:00:00Z"),
    };
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let b = text.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(invalid());
    }
    let num = |range: std::ops::Range<usize>| text.get(range).and_then(|s| s.parse::<i64>().ok()).ok_or_else(invalid);
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &text[19..];
    let mut millis = 0i64;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.find(|c: char| !c.is_ascii_digit()).unwrap_or(fraction.len());
        if digits == 0 {
            return Err(invalid());
        }
        let ms_digits = &fraction[..digits.min(3)];
        millis = ms_digits.parse::<i64>().map_err(|_| invalid())? * 10i64.pow(3 - ms_digits.len() as u32);
        rest = &fraction[digits..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) && &rest[3..4] == ":" => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            let h: i64 = rest[1..3].parse().map_err(|_| invalid())?;
            let m: i64 = rest[4..6].parse().map_err(|_| invalid())?;
            sign * (h * 60 + m)
        }
        _ => return Err(invalid()),
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return Err(invalid());
    }
    // Days from the civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Ok(seconds * 1000 + millis)
}

/// Parses `A=B` pairs.
pub fn parse_pairs(flag: &'static str, items: &[String]) -> Result<Vec<(String, String)>, CliError> {
    items
        .iter()
        .filter(|i| !i.trim().is_empty())
        .map(|item| {
            let (a, b) = item.split_once('=').ok_or_else(|| CliError::InvalidArgument {
                flag,
                message: format!("{item:?} is not of the form A=B"),
            })?;
            Ok((a.trim().to_string(), b.trim().to_string()))
        })
        .collect()
}

/// Parses `TOPIC:PARTITION` (the topic may itself contain no `:`, as Kafka names cannot).
pub fn parse_topic_partition(flag: &'static str, text: &str) -> Result<(String, i32), CliError> {
    let (topic, partition) = text.rsplit_once(':').ok_or_else(|| CliError::InvalidArgument {
        flag,
        message: format!("{text:?} is not of the form TOPIC:PARTITION"),
    })?;
    let partition = partition
        .parse::<i32>()
        .ok()
        .filter(|p| *p >= 0)
        .ok_or_else(|| CliError::InvalidArgument {
            flag,
            message: format!("{partition:?} is not a partition number"),
        })?;
    Ok((topic.to_string(), partition))
}

#[cfg(test)]
mod time_tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("t", "1700000000000").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_time("t", "2023-11-14T22:13:20Z").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_time("t", "2023-11-14T22:13:20.25Z").unwrap(), 1_700_000_000_250);
        assert_eq!(parse_time("t", "2023-11-15T00:13:20+02:00").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_time("t", "1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(parse_time("t", "1969-12-31T23:59:59Z").unwrap(), -1000);
        for bad in [
            "",
            "yesterday",
            "2023-13-01T00:00:00Z",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13:20+2",
        ] {
            assert!(parse_time("t", bad).is_err(), "{bad}");
        }
    }
}
