//! A front proxy the tests put between the client and the broker (which advertises the
//! proxy's port): it relays every request frame by frame to the real broker, and injects the
//! faults a test asks for: it can drop a connection right after a Produce was written, to force
//! the producer to resend, and alter Fetch responses (error codes, a partition's records cut
//! short) as a broker does on a bad day.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, decode_request_header_from_buffer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does besides relaying.
#[derive(Clone, Default)]
pub(crate) struct ProxyOptions {
    /// Relay this many Produce requests to the broker but drop the connection instead of
    /// returning their responses.
    pub(crate) drop_produce_responses: Arc<AtomicUsize>,
    /// Faults for the next Fetch responses, one per relayed Fetch.
    pub(crate) fetch_faults: Arc<std::sync::Mutex<std::collections::VecDeque<FetchFault>>>,
    /// Every (API key, version) the client sent, as the wire shows them.
    pub(crate) seen: Arc<std::sync::Mutex<std::collections::BTreeSet<(i16, i16)>>>,
}

/// How the proxy alters one Fetch response.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FetchFault {
    /// Every partition answers this error code, log start and high watermark unknown (-1): e.g.
    /// OFFSET_OUT_OF_RANGE as Kafka sends it when retention deleted the fetch offset, or
    /// NOT_LEADER_OR_FOLLOWER as during a leader change.
    Error(i16),
    /// Every partition but the first gets only the first 30 bytes of its records, as Kafka
    /// sends when the response's byte budget runs out inside a partition's first batch.
    CutAllButFirst,
    /// The response's topic count (a compact array count, Fetch v12 and up) becomes 2^32 - 2
    /// while the bytes stay those of the real response, as a broken or hostile broker might
    /// send: a decoder that trusts the count reserves hundreds of gigabytes.
    HostileTopicCount,
}

/// A running proxy; stops when dropped.
pub(crate) struct FrontProxy {
    pub(crate) port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FrontProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FrontProxy {
    /// Listens on a free port, relaying to `127.0.0.1:upstream_port`.
    pub(crate) async fn start(upstream_port: u16, options: ProxyOptions) -> FrontProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let options = options.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, upstream_port, options).await;
                });
            }
        });
        FrontProxy { port, task }
    }
}

async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Bytes> {
    let size = stream.read_u32().await? as usize;
    if size > 64 << 20 {
        return Err(std::io::Error::other("frame too large"));
    }
    let mut body = BytesMut::zeroed(size);
    stream.read_exact(&mut body).await?;
    Ok(body.freeze())
}

async fn write_frame<S: AsyncWrite + Unpin>(stream: &mut S, body: &[u8]) -> std::io::Result<()> {
    stream.write_u32(body.len() as u32).await?;
    stream.write_all(body).await?;
    stream.flush().await
}

async fn serve(mut client: TcpStream, upstream_port: u16, options: ProxyOptions) -> std::io::Result<()> {
    let mut upstream = TcpStream::connect(("127.0.0.1", upstream_port)).await?;
    loop {
        let frame = read_frame(&mut client).await?;
        let mut buf = frame.clone();
        let header: RequestHeader = decode_request_header_from_buffer(&mut buf).map_err(bad)?;
        let (api, version) = (header.request_api_key, header.request_api_version);
        options.seen.lock().unwrap().insert((api, version));
        write_frame(&mut upstream, &frame).await?;
        let answer = read_frame(&mut upstream).await?;
        if api == ApiKey::Produce as i16 && take(&options.drop_produce_responses) {
            return Ok(()); // the broker wrote the batch; the client never hears of it
        }
        let injected = if api == ApiKey::Fetch as i16 {
            options.fetch_faults.lock().unwrap().pop_front()
        } else {
            None
        };
        let answer = match injected {
            Some(fault) => fetch_fault(answer, version, fault)?,
            None => answer,
        };
        write_frame(&mut client, &answer).await?;
    }
}

fn bad<E: std::fmt::Display>(e: E) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn take(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// Rewrites a Fetch response frame.
fn fetch_fault(frame: Bytes, version: i16, fault: FetchFault) -> std::io::Result<Bytes> {
    let mut buf = frame;
    let header = ResponseHeader::decode(&mut buf, FetchResponse::header_version(version)).map_err(bad)?;
    if let FetchFault::HostileTopicCount = fault {
        assert!(version >= 12, "a compact topic count needs Fetch v12 or later");
        // throttle_time_ms (4 bytes), error_code (2), session_id (4), then the count.
        let mut out = BytesMut::new();
        header
            .encode(&mut out, FetchResponse::header_version(version))
            .map_err(bad)?;
        out.extend_from_slice(&buf[..10]);
        assert!(buf[10] < 0x80, "a one-byte topic count");
        out.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        out.extend_from_slice(&buf[11..]);
        return Ok(out.freeze());
    }
    let mut body = FetchResponse::decode(&mut buf, version).map_err(bad)?;
    let mut first = true;
    for topic in &mut body.responses {
        for partition in &mut topic.partitions {
            match fault {
                FetchFault::Error(code) => {
                    partition.error_code = code;
                    partition.high_watermark = -1;
                    partition.last_stable_offset = -1;
                    partition.log_start_offset = -1;
                    partition.records = None;
                }
                FetchFault::CutAllButFirst if !first => {
                    partition.records = partition.records.take().map(|r| r.slice(..r.len().min(30)));
                }
                FetchFault::CutAllButFirst | FetchFault::HostileTopicCount => {}
            }
            first = false;
        }
    }
    let mut out = BytesMut::new();
    header
        .encode(&mut out, FetchResponse::header_version(version))
        .map_err(bad)?;
    body.encode(&mut out, version).map_err(bad)?;
    Ok(out.freeze())
}
