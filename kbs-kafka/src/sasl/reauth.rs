//! Re-authentication of a live connection (KIP-368). A broker with
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

use crate::connection::Connection;
use crate::error::Result;
use crate::protocol::Api;

use super::SaslChannel;

/// SASL requests on a live connection, ahead of the frames it holds.
struct LiveChannel<'a> {
    connection: &'a Arc<Connection>,
}

impl SaslChannel for LiveChannel<'_> {
    fn broker(&self) -> &str {
        self.connection.broker()
    }

    fn version<R: Api>(&self) -> Result<i16> {
        self.connection.versions().pick::<R>(self.connection.broker())
    }

    async fn call<R: Api>(&mut self, request: &R, version: i16) -> Result<R::Response> {
        let timeout = self.connection.request_timeout();
        self.connection
            .send_while_reauthenticating(request, version, timeout)?
            .wait()
            .await
    }
}

/// Authenticates `connection` again and releases the requests held meanwhile, or closes it.
pub(crate) async fn reauthenticate(connection: Arc<Connection>) {
    let Some((sasl, limit)) = connection.sasl() else {
        connection.finish_reauthentication(Err("no credentials".into()));
        return;
    };
    let sasl = sasl.clone();
    let mut channel = LiveChannel {
        connection: &connection,
    };
    let outcome = match tokio::time::timeout(limit, super::authenticate(&mut channel, &sasl)).await {
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
