//! One connection to one broker: TCP (+ TLS), ApiVersions negotiation, SASL, then a writer task
//! and a reader task so that many requests can be in flight at once, matched to their responses
//! by correlation id.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::ApiVersionsRequest;
use kafka_protocol::protocol::{Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio_rustls::rustls;

use crate::config::{Sasl, TlsConfig};
use crate::error::{Error, ErrorCode, Result};
use crate::protocol::{self, Api};

/// Everything needed to open a connection, derived once from the client configuration.
#[derive(Clone)]
pub(crate) struct ConnectOptions {
    pub(crate) client_id: StrBytes,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) keepalive: Option<Duration>,
    pub(crate) max_response_bytes: usize,
    pub(crate) tls: Option<(Arc<rustls::ClientConfig>, TlsConfig)>,
    pub(crate) sasl: Option<Sasl>,
    pub(crate) events: Option<crate::events::EventsHook>,
}

/// The API version ranges a broker announced in ApiVersions.
#[derive(Debug, Clone, Default)]
pub(crate) struct Versions {
    ranges: HashMap<i16, (i16, i16)>,
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

/// Why a connection closed.
#[derive(Debug, Clone)]
enum Closed {
    Io(String),
    TooLarge { size: usize, limit: usize },
}

#[derive(Default)]
struct State {
    pending: HashMap<i32, Waiter>,
    closed: Option<Closed>,
    /// Until when the broker throttles this connection (KIP-219): nothing is sent before.
    throttled_until: Option<tokio::time::Instant>,
    /// The SASL session the broker granted, when it set a lifetime (KIP-368).
    session: Option<Session>,
    /// While the connection re-authenticates: the frames sent meanwhile, in order, to go out
    /// once it is done (the broker takes nothing but SASL between the two).
    held: Option<Vec<Bytes>>,
}

/// A SASL session with an end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Session {
    /// When to authenticate again: 85–95 % into the lifetime, as Kafka's own clients do.
    reauthenticate_at: tokio::time::Instant,
    /// When the broker stops taking requests on this connection.
    expires_at: tokio::time::Instant,
}

impl Session {
    /// The session that starts now and lasts `lifetime`.
    pub(crate) fn starting_now(lifetime: Duration) -> Session {
        let now = tokio::time::Instant::now();
        // Jitter, so that connections authenticated together do not all re-authenticate at once.
        let jitter = f64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_nanos()
                % 1000,
        ) / 10_000.0;
        Session {
            reauthenticate_at: now + lifetime.mul_f64(0.85 + jitter),
            expires_at: now + lifetime,
        }
    }
}

struct Waiter {
    header_version: i16,
    reply: oneshot::Sender<std::result::Result<Bytes, Closed>>,
}

struct Shared {
    broker: String,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the map inconsistent; keep going.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks the connection closed and fails every waiting request.
    fn close(&self, why: Closed) {
        let waiters = {
            let mut state = self.lock();
            if state.closed.is_none() {
                tracing::debug!(broker = %self.broker, reason = ?why, "connection closed");
                state.closed = Some(why.clone());
            }
            std::mem::take(&mut state.pending)
        };
        for (_, waiter) in waiters {
            let _ = waiter.reply.send(Err(why.clone()));
        }
    }

    fn error(&self, why: Closed) -> Error {
        match why {
            Closed::Io(reason) => Error::Connection {
                broker: self.broker.clone(),
                reason,
            },
            Closed::TooLarge { size, limit } => Error::ResponseTooLarge {
                broker: self.broker.clone(),
                size,
                limit,
            },
        }
    }
}

/// An open, authenticated connection.
pub(crate) struct Connection {
    shared: Arc<Shared>,
    outgoing: mpsc::UnboundedSender<Bytes>,
    versions: Versions,
    next_correlation: AtomicI32,
    client_id: StrBytes,
    request_timeout: Duration,
    tasks: [AbortHandle; 2],
    events: Option<crate::events::EventsHook>,
    /// The credentials, to authenticate again before the session ends.
    sasl: Option<Sasl>,
    /// Limit on one re-authentication.
    connect_timeout: Duration,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.close(Closed::Io("connection dropped".into()));
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Connection {
    /// Connects to `broker` (`host:port`), within the connect timeout for TCP, TLS,
    /// ApiVersions and SASL together.
    pub(crate) async fn connect(broker: &str, options: &ConnectOptions) -> Result<Arc<Connection>> {
        let timeout = options.connect_timeout;
        match tokio::time::timeout(timeout, Self::open(broker, options)).await {
            Ok(result) => result,
            Err(_) => Err(Error::ConnectTimeout {
                broker: broker.to_owned(),
                timeout,
            }),
        }
    }

    async fn open(broker: &str, options: &ConnectOptions) -> Result<Arc<Connection>> {
        let tcp = TcpStream::connect(broker).await.map_err(|source| Error::Connect {
            broker: broker.to_owned(),
            source,
        })?;
        tcp.set_nodelay(true).map_err(|source| Error::Connect {
            broker: broker.to_owned(),
            source,
        })?;
        if let Some(idle) = options.keepalive {
            let keepalive = socket2::TcpKeepalive::new()
                .with_time(idle)
                .with_interval(idle.min(Duration::from_secs(10)));
            socket2::SockRef::from(&tcp)
                .set_tcp_keepalive(&keepalive)
                .map_err(|source| Error::Connect {
                    broker: broker.to_owned(),
                    source,
                })?;
        }
        let mut stream = match &options.tls {
            None => Stream::Plain(tcp),
            Some((config, tls)) => {
                let name = crate::tls::server_name(tls, host_of(broker))?;
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let tls_stream = connector.connect(name, tcp).await.map_err(|e| Error::Tls {
                    broker: broker.to_owned(),
                    reason: e.to_string(),
                })?;
                Stream::Tls(Box::new(tls_stream))
            }
        };
        let mut handshake = Handshake {
            stream: &mut stream,
            broker,
            client_id: &options.client_id,
            correlation: 0,
            max_response_bytes: options.max_response_bytes,
            versions: Versions::default(),
        };
        handshake.negotiate_versions().await?;
        let mut session = None;
        if let Some(sasl) = &options.sasl {
            session = crate::sasl::authenticate(&mut handshake, sasl)
                .await?
                .map(Session::starting_now);
        }
        let versions = handshake.versions;
        let next_correlation = handshake.correlation;

        let shared = Arc::new(Shared {
            broker: broker.to_owned(),
            state: Mutex::new(State {
                session,
                ..State::default()
            }),
        });
        let (reader, writer): (Box<dyn AsyncRead + Send + Unpin>, Box<dyn AsyncWrite + Send + Unpin>) = match stream {
            Stream::Plain(tcp) => {
                let (r, w) = tcp.into_split();
                (Box::new(r), Box::new(w))
            }
            Stream::Tls(tls) => {
                let (r, w) = tokio::io::split(*tls);
                (Box::new(r), Box::new(w))
            }
        };
        let (outgoing, queue) = mpsc::unbounded_channel();
        let read_task = tokio::spawn(read_loop(reader, shared.clone(), options.max_response_bytes));
        let write_task = tokio::spawn(write_loop(writer, queue, shared.clone()));
        tracing::debug!(broker, "connected");
        let connection = Arc::new(Connection {
            shared,
            outgoing,
            versions,
            next_correlation: AtomicI32::new(next_correlation),
            client_id: options.client_id.clone(),
            request_timeout: options.request_timeout,
            tasks: [read_task.abort_handle(), write_task.abort_handle()],
            events: options.events.clone(),
            sasl: options.sasl.clone(),
            connect_timeout: options.connect_timeout,
        });
        if let Some(session) = session {
            connection.schedule_reauthentication(session);
        }
        Ok(connection)
    }

    /// Renews the SASL session when its time comes, whether or not requests are being sent
    /// then (a request in flight, such as a long-polling Fetch, is answered first: the broker
    /// takes the SaslHandshake that follows it even after the session's end).
    fn schedule_reauthentication(self: &Arc<Self>, session: Session) {
        let connection = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep_until(session.reauthenticate_at).await;
            if let Some(connection) = connection.upgrade() {
                connection.begin_reauthentication();
            }
        });
    }

    /// Starts renewing the session unless the connection is closed or already renewing: from
    /// now on, new requests are held until it is done.
    fn begin_reauthentication(self: &Arc<Self>) {
        let mut state = self.shared.lock();
        if state.closed.is_some() || state.held.is_some() || self.sasl.is_none() {
            return;
        }
        state.held = Some(Vec::new());
        drop(state);
        tokio::spawn(crate::sasl::reauth::reauthenticate(self.clone()));
    }

    /// `host:port` of the broker.
    pub(crate) fn broker(&self) -> &str {
        &self.shared.broker
    }

    /// Whether the connection failed or was closed, or its SASL session ended without being
    /// renewed (the broker would close it at the next request): a new connection is needed.
    pub(crate) fn is_closed(&self) -> bool {
        let state = self.shared.lock();
        let expired = state
            .session
            .is_some_and(|s| state.held.is_none() && tokio::time::Instant::now() >= s.expires_at);
        state.closed.is_some() || expired
    }

    /// The version of `R` to use with this broker.
    pub(crate) fn version<R: Api>(&self) -> Result<i16> {
        self.versions.pick::<R>(self.broker())
    }

    /// Sends `request` and waits for its response within the request timeout.
    pub(crate) async fn call<R: Api>(self: &Arc<Self>, request: &R, version: i16) -> Result<R::Response> {
        self.throttle_pause().await;
        self.send(request, version, self.request_timeout)?.wait().await
    }

    /// Waits out a throttle time the broker asked for in an earlier response (KIP-219: the
    /// broker also holds the connection's requests that long, so waiting here keeps them from
    /// piling up and timing out).
    pub(crate) async fn throttle_pause(&self) {
        let until = self.shared.lock().throttled_until;
        if let Some(until) = until {
            tokio::time::sleep_until(until).await;
        }
    }

    /// Notes a response's throttle time.
    fn note_throttle(&self, api: &str, throttle_ms: i32) {
        if throttle_ms <= 0 {
            return;
        }
        let throttle = Duration::from_millis(throttle_ms as u64);
        let until = tokio::time::Instant::now() + throttle;
        {
            let mut state = self.shared.lock();
            if state.throttled_until.is_none_or(|t| t < until) {
                state.throttled_until = Some(until);
            }
        }
        tracing::debug!(
            broker = self.broker(),
            api,
            throttle_ms,
            "throttled by the broker's quota"
        );
        if let Some(events) = &self.events {
            events.0.throttled(self.broker(), api, throttle);
        }
    }

    /// Queues `request` for sending now; requests queued one after the other reach the broker
    /// in that order. The returned handle waits up to `timeout` for the response.
    pub(crate) fn send<R: Api>(
        self: &Arc<Self>,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<PendingResponse<R>> {
        self.queue(request, version, timeout, false)
    }

    /// Queues `request` ahead of the frames held during a re-authentication (its own SASL
    /// requests).
    pub(crate) fn send_while_reauthenticating<R: Api>(
        self: &Arc<Self>,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<PendingResponse<R>> {
        self.queue(request, version, timeout, true)
    }

    fn queue<R: Api>(
        self: &Arc<Self>,
        request: &R,
        version: i16,
        timeout: Duration,
        sasl_exchange: bool,
    ) -> Result<PendingResponse<R>> {
        let (reply, receiver) = oneshot::channel();
        let header_version = protocol::response_header_version::<R>(version);
        let correlation_id = self.next_correlation.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        let frame = protocol::encode_request(request, version, correlation_id, &self.client_id).map_err(|reason| {
            Error::Protocol {
                broker: self.broker().to_owned(),
                api: R::NAME,
                reason: format!("cannot encode: {reason}"),
            }
        })?;
        // Registering and queueing under one lock: frames reach the writer in the order of
        // `send` calls.
        let mut state = self.shared.lock();
        if let Some(closed) = &state.closed {
            return Err(self.shared.error(closed.clone()));
        }
        state.pending.insert(correlation_id, Waiter { header_version, reply });
        // The renewal's timer may lag (a busy runtime): a request sent past the renewal time
        // starts it itself, and waits for it.
        let due = !sasl_exchange
            && state.held.is_none()
            && self.sasl.is_some()
            && state
                .session
                .is_some_and(|s| tokio::time::Instant::now() >= s.reauthenticate_at);
        if due {
            state.held = Some(Vec::new());
            tokio::spawn(crate::sasl::reauth::reauthenticate(self.clone()));
        }
        match state.held.as_mut() {
            Some(held) if !sasl_exchange => held.push(frame),
            _ => {
                if self.outgoing.send(frame).is_err() {
                    state.pending.remove(&correlation_id);
                    return Err(Error::Connection {
                        broker: self.broker().to_owned(),
                        reason: "writer stopped".into(),
                    });
                }
            }
        }
        drop(state);
        Ok(PendingResponse {
            connection: self.clone(),
            receiver,
            correlation_id,
            version,
            timeout,
            _request: std::marker::PhantomData,
        })
    }

    /// Closes the connection, failing whatever waits on it.
    pub(crate) fn close(&self, reason: &str) {
        self.shared.close(Closed::Io(reason.to_owned()));
    }

    /// The credentials the connection authenticated with, and the limit on authenticating.
    pub(crate) fn sasl(&self) -> Option<(&Sasl, Duration)> {
        self.sasl.as_ref().map(|s| (s, self.connect_timeout))
    }

    /// The request timeout.
    pub(crate) fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The versions the broker announced.
    pub(crate) fn versions(&self) -> &Versions {
        &self.versions
    }

    /// Ends a re-authentication: on success the new session starts and the held frames go out
    /// in order; on failure the connection closes, failing them with the reason.
    pub(crate) fn finish_reauthentication(self: &Arc<Self>, outcome: std::result::Result<Option<Duration>, String>) {
        match outcome {
            Ok(lifetime) => {
                let mut state = self.shared.lock();
                state.session = lifetime.map(Session::starting_now);
                if let Some(session) = state.session {
                    self.schedule_reauthentication(session);
                }
                for frame in state.held.take().unwrap_or_default() {
                    if self.outgoing.send(frame).is_err() {
                        break;
                    }
                }
                drop(state);
                if let Some(events) = &self.events {
                    events.0.reauthenticated(self.broker(), lifetime);
                }
            }
            Err(reason) => {
                self.shared
                    .close(Closed::Io(format!("re-authentication failed: {reason}")));
                self.shared.lock().held = None;
            }
        }
    }
}

/// A request on the wire, waiting for its response.
pub(crate) struct PendingResponse<R: Api> {
    connection: Arc<Connection>,
    receiver: oneshot::Receiver<std::result::Result<Bytes, Closed>>,
    correlation_id: i32,
    version: i16,
    timeout: Duration,
    _request: std::marker::PhantomData<fn() -> R>,
}

impl<R: Api> PendingResponse<R> {
    /// Waits for and decodes the response. A timeout closes the connection: responses on a
    /// Kafka connection come in request order, so nothing after a lost one can be trusted.
    pub(crate) async fn wait(self) -> Result<R::Response> {
        let shared = &self.connection.shared;
        let body = match tokio::time::timeout(self.timeout, self.receiver).await {
            Ok(Ok(Ok(body))) => body,
            Ok(Ok(Err(closed))) => return Err(shared.error(closed)),
            Ok(Err(_)) => return Err(shared.error(Closed::Io("connection task ended".into()))),
            Err(_) => {
                shared.lock().pending.remove(&self.correlation_id);
                self.connection.close(&format!("{} request timed out", R::NAME));
                return Err(Error::Timeout {
                    broker: shared.broker.clone(),
                    api: R::NAME,
                    timeout: self.timeout,
                });
            }
        };
        let response = protocol::decode_response::<R>(body, self.version).map_err(|reason| Error::Protocol {
            broker: shared.broker.clone(),
            api: R::NAME,
            reason,
        })?;
        self.connection
            .note_throttle(R::NAME, protocol::ThrottleTime::throttle_time_ms(&response));
        Ok(response)
    }
}

/// The host part of `host:port` (`[v6]:port` too).
pub(crate) fn host_of(broker: &str) -> &str {
    let host = broker.rsplit_once(':').map_or(broker, |(host, _)| host);
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host)
}

async fn write_loop(
    writer: Box<dyn AsyncWrite + Send + Unpin>,
    mut queue: mpsc::UnboundedReceiver<Bytes>,
    shared: Arc<Shared>,
) {
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    while let Some(frame) = queue.recv().await {
        let mut result = writer.write_all(&frame).await;
        while result.is_ok() {
            match queue.try_recv() {
                Ok(frame) => result = writer.write_all(&frame).await,
                Err(_) => break,
            }
        }
        if result.is_ok() {
            result = writer.flush().await;
        }
        if let Err(e) = result {
            shared.close(Closed::Io(format!("write failed: {e}")));
            return;
        }
    }
}

async fn read_loop(mut reader: Box<dyn AsyncRead + Send + Unpin>, shared: Arc<Shared>, max_response_bytes: usize) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let frame = match read_frame(&mut reader, &mut buf, max_response_bytes).await {
            Ok(frame) => frame,
            Err(why) => {
                shared.close(why);
                return;
            }
        };
        dispatch(&shared, frame);
    }
}

fn dispatch(shared: &Shared, mut frame: Bytes) {
    // read_frame guarantees at least the 4 correlation id bytes.
    let correlation_id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
    let Some(waiter) = shared.lock().pending.remove(&correlation_id) else {
        tracing::debug!(broker = %shared.broker, correlation_id, "response nobody waits for (timed out?)");
        return;
    };
    let reply = match protocol::strip_response_header(&mut frame, waiter.header_version) {
        Ok(_) => Ok(frame),
        Err(reason) => Err(Closed::Io(format!("bad response header: {reason}"))),
    };
    let _ = waiter.reply.send(reply);
}

/// Reads one `[i32 size][size bytes]` frame; the buffer grows only as bytes arrive.
async fn read_frame<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
    buf: &mut BytesMut,
    max_response_bytes: usize,
) -> std::result::Result<Bytes, Closed> {
    let io_error = |e: io::Error| Closed::Io(format!("read failed: {e}"));
    while buf.len() < 4 {
        if reader.read_buf(buf).await.map_err(io_error)? == 0 {
            return Err(Closed::Io(if buf.is_empty() {
                "closed by the broker".into()
            } else {
                "closed by the broker inside a frame header".into()
            }));
        }
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let Ok(size) = usize::try_from(size) else {
        return Err(Closed::Io(format!("negative frame size {size}")));
    };
    if size > max_response_bytes {
        return Err(Closed::TooLarge {
            size,
            limit: max_response_bytes,
        });
    }
    if size < 4 {
        return Err(Closed::Io(format!(
            "frame of {size} bytes is too short for a correlation id"
        )));
    }
    let total = 4 + size;
    while buf.len() < total {
        let missing = total - buf.len();
        buf.reserve(missing.min(16 << 20));
        if reader.read_buf(buf).await.map_err(io_error)? == 0 {
            return Err(Closed::Io(format!(
                "closed by the broker {missing} bytes before the end of a frame"
            )));
        }
    }
    let mut frame = buf.split_to(total).freeze();
    frame.advance(4);
    Ok(frame)
}

/// The stream during the handshake, before it is split into reader and writer.
enum Stream {
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
    stream: &'a mut Stream,
    broker: &'a str,
    client_id: &'a StrBytes,
    correlation: i32,
    max_response_bytes: usize,
    versions: Versions,
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
    async fn negotiate_versions(&mut self) -> Result<()> {
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

    #[test]
    fn host_of_handles_names_ipv4_and_ipv6() {
        assert_eq!(host_of("broker-1.example.com:9092"), "broker-1.example.com");
        assert_eq!(host_of("127.0.0.1:9092"), "127.0.0.1");
        assert_eq!(host_of("[::1]:9092"), "::1");
        assert_eq!(host_of("plainhost"), "plainhost");
    }

    #[tokio::test]
    async fn oversized_frames_are_refused_before_allocating() {
        let mut input: &[u8] = &[0x7f, 0xff, 0xff, 0xff, 1, 2, 3];
        let mut buf = BytesMut::new();
        match read_frame(&mut input, &mut buf, 1 << 20).await {
            Err(Closed::TooLarge { size, limit }) => assert_eq!((size, limit), (0x7fff_ffff, 1 << 20)),
            other => panic!("{other:?}"),
        }
        assert!(buf.capacity() < 1 << 20);
        let mut input: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut input, &mut BytesMut::new(), 1 << 20).await,
            Err(Closed::Io(_))
        ));
    }

    #[tokio::test]
    async fn frames_split_across_reads_and_truncated_frames() {
        let mut wire = Vec::new();
        for body in [&b"\0\0\0\x07abc"[..], &b"\0\0\0\x08"[..]] {
            wire.extend_from_slice(&(body.len() as i32).to_be_bytes());
            wire.extend_from_slice(body);
        }
        let mut input = &wire[..];
        let mut buf = BytesMut::new();
        assert_eq!(
            &read_frame(&mut input, &mut buf, 100).await.unwrap()[..],
            b"\0\0\0\x07abc"
        );
        assert_eq!(&read_frame(&mut input, &mut buf, 100).await.unwrap()[..], b"\0\0\0\x08");
        assert!(
            matches!(read_frame(&mut input, &mut buf, 100).await, Err(Closed::Io(m)) if m == "closed by the broker")
        );
        let mut input: &[u8] = &[0, 0, 0, 10, 1, 2, 3];
        assert!(
            matches!(read_frame(&mut input, &mut BytesMut::new(), 100).await, Err(Closed::Io(m)) if m.contains("before the end"))
        );
    }
}
