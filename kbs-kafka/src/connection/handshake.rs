//! Setting a connection up: sequential request/response on the fresh stream, ApiVersions
//! negotiation (the highest version both sides speak) and SASL.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiVersionsRequest;
use kafka_protocol::protocol::{Request, StrBytes};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::Closed;
use super::wire::read_frame;
use crate::error::{Error, ErrorCode, Result};
use crate::protocol::{self, Api};

/// The API version ranges a broker announced in ApiVersions.
#[derive(Debug, Clone, Default)]
pub(crate) struct Versions {
    pub(super) ranges: HashMap<i16, (i16, i16)>,
}

impl Versions {
    /// The highest version of `R` both sides support.
    pub(crate) fn pick<R: Api>(&self, broker: &str) -> Result<i16> {
        let unsupported = |broker_versions: String| Error::UnsupportedVersion {
            broker: broker.to_owned(),
            api: R::NAME,
            broker_versions,
            client_min: R::MIN,
            client_max: R::MAX,
        };
        let Some(&(min, max)) = self.ranges.get(&R::KEY) else {
            return Err(unsupported("none".into()));
        };
        let low = min.max(R::MIN);
        let high = max.min(R::MAX);
        if low > high {
            return Err(unsupported(format!("{min}..={max}")));
        }
        Ok(high)
    }
}

/// The stream during the handshake, before it is split into reader and writer.
pub(super) enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Sequential request/response on a fresh stream: ApiVersions and SASL happen here.
pub(crate) struct Handshake<'a> {
    pub(super) stream: &'a mut Stream,
    pub(super) broker: &'a str,
    pub(super) client_id: &'a StrBytes,
    pub(super) correlation: i32,
    pub(super) max_response_bytes: usize,
    pub(super) versions: Versions,
}

impl crate::sasl::SaslChannel for Handshake<'_> {
    fn broker(&self) -> &str {
        self.broker
    }

    fn version<R: Api>(&self) -> Result<i16> {
        self.versions.pick::<R>(self.broker)
    }

    async fn call<R: Api>(&mut self, request: &R, version: i16) -> Result<R::Response> {
        let body = self.round_trip(request, version).await?;
        protocol::decode_response::<R>(body, version).map_err(|reason| Error::Protocol {
            broker: self.broker.to_owned(),
            api: R::NAME,
            reason,
        })
    }
}

impl Handshake<'_> {
    /// Sends one request and reads its response (the raw body).
    async fn round_trip<R: Api>(&mut self, request: &R, version: i16) -> Result<Bytes> {
        let correlation_id = self.correlation;
        self.correlation += 1;
        let broker = self.broker;
        let frame = protocol::encode_request(request, version, correlation_id, self.client_id).map_err(|reason| {
            Error::Protocol {
                broker: broker.to_owned(),
                api: R::NAME,
                reason: format!("cannot encode: {reason}"),
            }
        })?;
        let io_error = |e: io::Error| Error::Connection {
            broker: broker.to_owned(),
            reason: e.to_string(),
        };
        self.stream.write_all(&frame).await.map_err(io_error)?;
        self.stream.flush().await.map_err(io_error)?;
        let mut buf = BytesMut::new();
        let mut frame = read_frame(self.stream, &mut buf, self.max_response_bytes)
            .await
            .map_err(|why| match why {
                Closed::Io(reason) => Error::Connection {
                    broker: broker.to_owned(),
                    reason,
                },
                Closed::TooLarge { size, limit } => Error::ResponseTooLarge {
                    broker: broker.to_owned(),
                    size,
                    limit,
                },
            })?;
        let header = protocol::strip_response_header(&mut frame, protocol::response_header_version::<R>(version))
            .map_err(|reason| Error::Protocol {
                broker: broker.to_owned(),
                api: R::NAME,
                reason,
            })?;
        if header.correlation_id != correlation_id {
            return Err(Error::Protocol {
                broker: broker.to_owned(),
                api: R::NAME,
                reason: format!(
                    "correlation id {} answers request {correlation_id}",
                    header.correlation_id
                ),
            });
        }
        Ok(frame)
    }

    /// ApiVersions: asks at the highest version we know; a broker that does not know it answers
    /// UNSUPPORTED_VERSION with a version-0 body listing what it does support.
    pub(super) async fn negotiate_versions(&mut self) -> Result<()> {
        let mut version = <ApiVersionsRequest as Api>::MAX;
        for attempt in 0..2 {
            let mut request = ApiVersionsRequest::default();
            request.client_software_name = StrBytes::from_static_str("kbs-kafka");
            request.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
            let body = self.round_trip(&request, version).await?;
            let response = protocol::decode_response::<ApiVersionsRequest>(body.clone(), version)
                .or_else(|_| protocol::decode_response::<ApiVersionsRequest>(body, 0))
                .map_err(|reason| Error::Protocol {
                    broker: self.broker.to_owned(),
                    api: "ApiVersions",
                    reason,
                })?;
            let ranges: HashMap<i16, (i16, i16)> = response
                .api_keys
                .iter()
                .map(|k| (k.api_key, (k.min_version, k.max_version)))
                .collect();
            match ErrorCode::check(response.error_code) {
                None => {
                    self.versions = Versions { ranges };
                    return Ok(());
                }
                Some(code) if code.0 == 35 && attempt == 0 => {
                    let broker_max = ranges.get(&<ApiVersionsRequest as Request>::KEY).map_or(0, |r| r.1);
                    version = broker_max.clamp(0, <ApiVersionsRequest as Api>::MAX);
                }
                Some(code) => {
                    return Err(Error::Broker {
                        api: "ApiVersions",
                        code,
                        message: None,
                    });
                }
            }
        }
        Err(Error::Broker {
            api: "ApiVersions",
            code: ErrorCode(35),
            message: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_negotiation_picks_the_highest_common_version_or_names_the_api() {
        use kafka_protocol::messages::{FetchRequest, ProduceRequest};
        let versions = Versions {
            ranges: HashMap::from([(1, (0, 17)), (0, (0, 2))]),
        };
        assert_eq!(versions.pick::<FetchRequest>("b:9092").unwrap(), 17);
        let too_old = versions.pick::<ProduceRequest>("b:9092").unwrap_err();
        assert_eq!(
            too_old.to_string(),
            "broker b:9092 supports Produce versions 0..=2, kbs-kafka supports 3..=11: no common version"
        );
        let newer = Versions {
            ranges: HashMap::from([(1, (4, 30))]),
        };
        assert_eq!(
            newer.pick::<FetchRequest>("b:9092").unwrap(),
            <FetchRequest as Api>::MAX
        );
        let missing = Versions::default().pick::<FetchRequest>("b:9092").unwrap_err();
        assert!(
            missing.to_string().contains("supports Fetch versions none"),
            "{missing}"
        );
    }
}
