//! Parsing of option values shared by the subcommands: sizes, durations, Kafka security.

use std::time::Duration;

use kbs_kafka::{ClientConfig, Sasl, SaslMechanism, Security, TlsConfig};

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
            Some(other) => {
                return Err(CliError::InvalidArgument {
                    flag: "sasl-mechanism",
                    message: format!("{other:?} is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
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
        let password = args.sasl_password.clone().ok_or(CliError::InvalidArgument {
            flag: "sasl-password",
            message: "required with a SASL security protocol (or set KBS_SASL_PASSWORD)".into(),
        })?;
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
