//! Percent-encoding and URL checks shared by the HTTP clients (the OAuth token endpoint, the
//! AWS credential sources) and the SigV4 signer.

use std::net::IpAddr;

/// Percent-encoding as RFC 3986 and SigV4 define it: unreserved characters
/// (`A-Z a-z 0-9 - _ . ~`) stay, every other byte is `%XX` (upper-case hex); `/` stays only when
/// `keep_slash` (paths, not query or form values).
pub(crate) fn percent_encode(value: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') || (keep_slash && byte == b'/') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Whether a secret may travel to `url`: over https, or over plain http only to this host's
/// loopback interface or to one of the `local` addresses (e.g. a container agent's link-local
/// address).
pub(crate) fn may_carry_secrets(url: &reqwest::Url, local: &[IpAddr]) -> bool {
    if url.scheme() == "https" {
        return true;
    }
    let host = url.host_str().unwrap_or_default();
    let on_this_host = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || local.contains(&ip));
    url.scheme() == "http" && on_this_host
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding() {
        assert_eq!(percent_encode("a b/c~d:e", false), "a%20b%2Fc~d%3Ae");
        assert_eq!(percent_encode("/a b/", true), "/a%20b/");
    }

    #[test]
    fn secrets_travel_over_https_or_to_this_host() {
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        let link_local: IpAddr = "169.254.170.2".parse().unwrap();
        assert!(may_carry_secrets(&url("https://idp.example.com/token"), &[]));
        for local in ["http://localhost:8080/t", "http://127.0.0.1/t", "http://[::1]:1/t"] {
            assert!(may_carry_secrets(&url(local), &[]), "{local}");
        }
        assert!(!may_carry_secrets(&url("http://idp.example.com/token"), &[]));
        assert!(!may_carry_secrets(&url("http://169.254.170.2/creds"), &[]));
        assert!(may_carry_secrets(&url("http://169.254.170.2/creds"), &[link_local]));
        assert!(!may_carry_secrets(&url("ftp://127.0.0.1/t"), &[]));
    }
}
