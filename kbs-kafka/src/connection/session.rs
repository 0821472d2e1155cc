//! SASL sessions and their renewal on a live connection (KIP-368). A broker with
//! `connections.max.reauth.ms` (or a token that expires) grants each SASL session a lifetime in
//! SaslAuthenticate; a connection that has not authenticated again by then is closed at its
//! next request. Kafka's own clients renew the session on the same connection, and so does
//! this one: the first request sent 85–95 % into the session starts a SaslHandshake and
//! SaslAuthenticate exchange with fresh credentials (a token file or command is read again, MSK
//! IAM signs again). Requests already sent are answered first (a broker answers a connection's
//! requests in order); requests sent meanwhile are held and go out once the session is renewed,
//! so nothing fails and nothing is sent twice. A refused re-authentication closes the
//! connection with the broker's reason; the callers' retries then open a new one.

use std::sync::Arc;
use std::time::Duration;

use super::{Closed, Connection, PendingResponse, State};
use crate::error::Result;
use crate::protocol::Api;
use crate::sasl::SaslChannel;

/// A SASL session with an end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Session {
    /// When to authenticate again: 85–95 % into the lifetime, as Kafka's own clients do.
    pub(super) reauthenticate_at: tokio::time::Instant,
    /// When the broker stops taking requests on this connection.
    pub(super) expires_at: tokio::time::Instant,
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

impl Connection {
    /// Renews the SASL session when its time comes, whether or not requests are being sent
    /// then (a request in flight, such as a long-polling Fetch, is answered first: the broker
    /// takes the SaslHandshake that follows it even after the session's end).
    pub(super) fn schedule_reauthentication(self: &Arc<Self>, session: Session) {
        let connection = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep_until(session.reauthenticate_at).await;
            if let Some(connection) = connection.upgrade() {
                let mut state = connection.shared.lock();
                connection.renew_if_due(&mut state);
            }
        });
    }

    /// Starts renewing the session if its renewal time has come, unless the connection is
    /// closed or already renewing: from now on, new requests are held until it is done. The
    /// caller holds the state's lock. A timer of a session already renewed finds nothing due.
    pub(super) fn renew_if_due(self: &Arc<Self>, state: &mut State) {
        let due = state
            .session
            .is_some_and(|s| tokio::time::Instant::now() >= s.reauthenticate_at);
        if !due || state.closed.is_some() || state.held.is_some() || self.sasl.is_none() {
            return;
        }
        state.held = Some(Vec::new());
        tokio::spawn(reauthenticate(self.clone()));
    }

    /// Queues `request` ahead of the frames held during a re-authentication (its own SASL
    /// requests).
    fn send_while_reauthenticating<R: Api>(
        self: &Arc<Self>,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<PendingResponse<R>> {
        self.queue(request, version, timeout, true)
    }

    /// Ends a re-authentication: on success the new session starts and the held frames go out
    /// in order; on failure the connection closes, failing them with the reason.
    fn finish_reauthentication(self: &Arc<Self>, outcome: std::result::Result<Option<Duration>, String>) {
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

/// SASL requests on a live connection, ahead of the frames it holds.
struct LiveChannel<'a> {
    connection: &'a Arc<Connection>,
}

impl SaslChannel for LiveChannel<'_> {
    fn broker(&self) -> &str {
        self.connection.broker()
    }

    fn version<R: Api>(&self) -> Result<i16> {
        self.connection.versions.pick::<R>(self.connection.broker())
    }

    async fn call<R: Api>(&mut self, request: &R, version: i16) -> Result<R::Response> {
        let timeout = self.connection.request_timeout;
        self.connection
            .send_while_reauthenticating(request, version, timeout)?
            .wait()
            .await
    }
}

/// Authenticates `connection` again and releases the requests held meanwhile, or closes it.
pub(super) async fn reauthenticate(connection: Arc<Connection>) {
    let Some(sasl) = connection.sasl.clone() else {
        connection.finish_reauthentication(Err("no credentials".into()));
        return;
    };
    let limit = connection.connect_timeout;
    let mut channel = LiveChannel {
        connection: &connection,
    };
    let outcome = match tokio::time::timeout(limit, crate::sasl::authenticate(&mut channel, &sasl)).await {
        Ok(Ok(lifetime)) => {
            tracing::debug!(broker = connection.broker(), ?lifetime, "re-authenticated");
            Ok(lifetime)
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {limit:?}")),
    };
    if let Err(reason) = &outcome {
        tracing::warn!(broker = connection.broker(), %reason, "re-authentication failed; reconnecting");
    }
    connection.finish_reauthentication(outcome);
}
