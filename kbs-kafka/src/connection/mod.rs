//! One connection to one broker: TCP (+ TLS), ApiVersions negotiation and SASL
//! (`handshake`), then a writer task and a reader task (`wire`) so that many requests can be in
//! flight at once, matched to their responses by correlation id; SASL sessions the broker
//! limits are renewed in place (`session`).

mod handshake;
mod session;
mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::protocol::StrBytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio_rustls::rustls;

use crate::config::{Sasl, TlsConfig};
use crate::error::{Error, Result};
use crate::metadata::host_of;
use crate::protocol::{self, Api};

pub(crate) use handshake::Versions;
use handshake::{Handshake, Stream};
use session::Session;
use wire::{read_loop, write_loop};

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
    /// How long a request may take before it is given up (the client's `request_timeout`).
    pub(crate) fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

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
        if !sasl_exchange {
            self.renew_if_due(&mut state);
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
