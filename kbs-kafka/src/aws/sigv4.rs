//! AWS Signature Version 4 (the parts MSK IAM needs): canonical requests, the signing key and
//! query-string presigning.
//!
//! A presigned request is signed over this canonical request (each line ended by `\n` but the
//! last):
//!
//! ```text
//! GET                                   method
//! /                                     URI-encoded path
//! Action=kafka-cluster%3AConnect&X-…    query, every name and value URI-encoded, sorted by name
//!                                       (X-Amz-Signature itself is not part of it)
//! host:b-1.example.kafka.us-east-1.amazonaws.com
//!                                       canonical headers: lower-case name, ':', trimmed value, '\n'
//! host                                  signed header names, lower-case, ';'-separated, sorted
//! e3b0c442…b855                         hex SHA-256 of the payload (the empty payload for MSK)
//! ```
//!
//! The string to sign is `AWS4-HMAC-SHA256\n<YYYYMMDDTHHMMSSZ>\n<scope>\n<hex SHA-256 of the
//! canonical request>`, with scope `<YYYYMMDD>/<region>/<service>/aws4_request`; the
//! signature is the hex HMAC-SHA256 of it under the signing key
//! `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.

use ring::{digest, hmac};

use super::AwsCredentials;
use crate::urls::percent_encode as uri_encode;

/// The algorithm name, as it appears in the string to sign and in `X-Amz-Algorithm`.
pub(crate) const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Hex SHA-256 of the empty payload.
pub(crate) const EMPTY_PAYLOAD_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The canonical query string: each name and value URI-encoded, the pairs sorted by encoded
/// name and then value, joined with `&`.
pub(crate) fn canonical_query(params: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> = params
        .iter()
        .map(|(name, value)| (uri_encode(name, false), uri_encode(value, false)))
        .collect();
    encoded.sort();
    encoded
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// One request as SigV4 sees it.
pub(crate) struct CanonicalRequest<'a> {
    /// `GET`, `POST`, ...
    pub(crate) method: &'a str,
    /// The absolute path, not yet encoded.
    pub(crate) path: &'a str,
    /// Query parameters, not yet encoded.
    pub(crate) query: &'a [(String, String)],
    /// The signed headers (names in any case).
    pub(crate) headers: &'a [(String, String)],
    /// Hex SHA-256 of the payload, or `UNSIGNED-PAYLOAD`.
    pub(crate) payload_hash: &'a str,
}

impl CanonicalRequest<'_> {
    /// The signed header names: lower-case, sorted, `;`-separated.
    pub(crate) fn signed_headers(&self) -> String {
        let mut names: Vec<String> = self.headers.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
        names.sort();
        names.join(";")
    }

    /// The canonical request text (see the module documentation).
    pub(crate) fn text(&self) -> String {
        let mut headers: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(n, v)| {
                let value = v.split_whitespace().collect::<Vec<_>>().join(" ");
                (n.to_ascii_lowercase(), value)
            })
            .collect();
        headers.sort();
        let canonical_headers: String = headers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            self.method,
            uri_encode(self.path, true),
            canonical_query(self.query),
            canonical_headers,
            self.signed_headers(),
            self.payload_hash
        )
    }
}

/// `<YYYYMMDD>/<region>/<service>/aws4_request`.
pub(crate) fn scope(amz_date: &str, region: &str, service: &str) -> String {
    format!("{}/{region}/{service}/aws4_request", &amz_date[..8.min(amz_date.len())])
}

/// The derived signing key for one day, region and service.
pub(crate) fn signing_key(secret_access_key: &str, date: &str, region: &str, service: &str) -> hmac::Key {
    let mut key = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, format!("AWS4{secret_access_key}").as_bytes()),
        date.as_bytes(),
    );
    for part in [region, service, "aws4_request"] {
        key = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key.as_ref()), part.as_bytes());
    }
    hmac::Key::new(hmac::HMAC_SHA256, key.as_ref())
}

/// The string to sign for `request` at `amz_date` (`YYYYMMDDTHHMMSSZ`) in `scope`.
pub(crate) fn string_to_sign(request: &CanonicalRequest<'_>, amz_date: &str, scope: &str) -> String {
    let hash = digest::digest(&digest::SHA256, request.text().as_bytes());
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", hex(hash.as_ref()))
}

/// The hex signature of `request`.
pub(crate) fn signature(
    request: &CanonicalRequest<'_>,
    secret_access_key: &str,
    amz_date: &str,
    region: &str,
    service: &str,
) -> String {
    let scope = scope(amz_date, region, service);
    let key = signing_key(secret_access_key, &amz_date[..8.min(amz_date.len())], region, service);
    hex(hmac::sign(&key, string_to_sign(request, amz_date, &scope).as_bytes()).as_ref())
}

/// What [`presign`] signs: a request whose only signed header is `host`.
pub(crate) struct Presign<'a> {
    /// The `host` header's value.
    pub(crate) host: &'a str,
    /// The absolute path.
    pub(crate) path: &'a str,
    /// The request's own query parameters (e.g. `Action`).
    pub(crate) params: &'a [(String, String)],
    /// `YYYYMMDDTHHMMSSZ`.
    pub(crate) amz_date: &'a str,
    /// `X-Amz-Expires`, in seconds.
    pub(crate) expires_secs: u32,
    /// The region.
    pub(crate) region: &'a str,
    /// The service, e.g. `kafka-cluster`.
    pub(crate) service: &'a str,
    /// Hex SHA-256 of the payload, or `UNSIGNED-PAYLOAD` (S3).
    pub(crate) payload_hash: &'a str,
}

/// Presigns a GET: returns the request's own parameters followed by `X-Amz-Algorithm`,
/// `X-Amz-Credential`, `X-Amz-Date`, `X-Amz-Expires`, `X-Amz-SignedHeaders`,
/// `X-Amz-Security-Token` (with temporary credentials; it is signed too) and last
/// `X-Amz-Signature`, values not encoded.
pub(crate) fn presign(request: &Presign<'_>, credentials: &AwsCredentials) -> Vec<(String, String)> {
    let scope = scope(request.amz_date, request.region, request.service);
    let mut query = request.params.to_vec();
    query.push(("X-Amz-Algorithm".into(), ALGORITHM.into()));
    query.push((
        "X-Amz-Credential".into(),
        format!("{}/{scope}", credentials.access_key_id),
    ));
    query.push(("X-Amz-Date".into(), request.amz_date.into()));
    query.push(("X-Amz-Expires".into(), request.expires_secs.to_string()));
    query.push(("X-Amz-SignedHeaders".into(), "host".into()));
    if let Some(token) = &credentials.session_token {
        query.push(("X-Amz-Security-Token".into(), token.clone()));
    }
    let headers = [("host".to_owned(), request.host.to_owned())];
    let canonical = CanonicalRequest {
        method: "GET",
        path: request.path,
        query: &query,
        headers: &headers,
        payload_hash: request.payload_hash,
    };
    let signature = signature(
        &canonical,
        &credentials.secret_access_key,
        request.amz_date,
        request.region,
        request.service,
    );
    query.push(("X-Amz-Signature".into(), signature));
    query
}

/// `YYYYMMDDTHHMMSSZ` of a point in time (UTC).
pub(crate) fn amz_date(at: std::time::SystemTime) -> String {
    // humantime writes `YYYY-MM-DDTHH:MM:SSZ`.
    humantime::format_rfc3339_seconds(at)
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn credentials(access_key_id: &str, secret: &str, token: Option<&str>) -> AwsCredentials {
        AwsCredentials::new(access_key_id, secret, token.map(str::to_owned))
    }

    /// AWS's worked example of signing a request (IAM ListUsers, "Create a signed AWS API
    /// request" in the IAM user guide): canonical request hash, signing key and signature.
    #[test]
    fn the_documented_iam_list_users_request_signs_as_published() {
        let query = [
            ("Action".to_owned(), "ListUsers".to_owned()),
            ("Version".to_owned(), "2010-05-08".to_owned()),
        ];
        let headers = [
            (
                "Content-Type".to_owned(),
                "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
            ),
            ("Host".to_owned(), "iam.amazonaws.com".to_owned()),
            ("X-Amz-Date".to_owned(), "20150830T123600Z".to_owned()),
        ];
        let request = CanonicalRequest {
            method: "GET",
            path: "/",
            query: &query,
            headers: &headers,
            payload_hash: EMPTY_PAYLOAD_SHA256,
        };
        assert_eq!(
            request.text(),
            "GET\n/\nAction=ListUsers&Version=2010-05-08\n\
             content-type:application/x-www-form-urlencoded; charset=utf-8\nhost:iam.amazonaws.com\n\
             x-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let scope = scope("20150830T123600Z", "us-east-1", "iam");
        assert_eq!(
            string_to_sign(&request, "20150830T123600Z", &scope),
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\n\
             f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        let key = signing_key(DOC_SECRET, "20150830", "us-east-1", "iam");
        // The published key is the HMAC key's bytes; compare through a signature of nothing.
        let published_key = [
            0xc4, 0xaf, 0xb1, 0xcc, 0x57, 0x71, 0xd8, 0x71, 0x76, 0x3a, 0x39, 0x3e, 0x44, 0xb7, 0x03, 0x57, 0x1b, 0x55,
            0xcc, 0x28, 0x42, 0x4d, 0x1a, 0x5e, 0x86, 0xda, 0x6e, 0xd3, 0xc1, 0x54, 0xa4, 0xb9,
        ];
        assert_eq!(
            hmac::sign(&key, b"").as_ref(),
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &published_key), b"").as_ref()
        );
        assert_eq!(
            signature(&request, DOC_SECRET, "20150830T123600Z", "us-east-1", "iam"),
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    /// AWS's presigned URL example (S3 "Authenticating Requests: Using Query Parameters"):
    /// GET examplebucket/test.txt, valid 86400 s.
    #[test]
    fn the_documented_s3_presigned_url_signs_as_published() {
        let query = presign(
            &Presign {
                host: "examplebucket.s3.amazonaws.com",
                path: "/test.txt",
                params: &[],
                amz_date: "20130524T000000Z",
                expires_secs: 86400,
                region: "us-east-1",
                service: "s3",
                payload_hash: "UNSIGNED-PAYLOAD",
            },
            &credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", None),
        );
        let text: Vec<String> = query
            .iter()
            .map(|(n, v)| format!("{n}={}", uri_encode(v, false)))
            .collect();
        assert_eq!(
            text.join("&"),
            "X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    #[test]
    fn a_session_token_is_signed_with_the_rest() {
        let presign_with = |token: Option<&str>| {
            presign(
                &Presign {
                    host: "b-1.example.kafka.us-east-1.amazonaws.com",
                    path: "/",
                    params: &[("Action".to_owned(), "kafka-cluster:Connect".to_owned())],
                    amz_date: "20261202T050000Z",
                    expires_secs: 900,
                    region: "us-east-1",
                    service: "kafka-cluster",
                    payload_hash: EMPTY_PAYLOAD_SHA256,
                },
                &credentials("AKID", "secret", token),
            )
        };
        let signature_of = |q: &[(String, String)]| q.last().unwrap().1.clone();
        let plain = presign_with(None);
        let with_token = presign_with(Some("token/+="));
        assert_ne!(signature_of(&plain), signature_of(&with_token));
        assert!(
            with_token
                .iter()
                .any(|(n, v)| n == "X-Amz-Security-Token" && v == "token/+=")
        );
        assert_eq!(plain[0], ("Action".to_owned(), "kafka-cluster:Connect".to_owned()));
    }

    #[test]
    fn encoding_and_dates() {
        assert_eq!(
            amz_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160)),
            "20150830T123600Z"
        );
    }
}
