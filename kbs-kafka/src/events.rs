//! A hook for what the client retries and what brokers throttle, so that an application can
//! count them (kbs exports them as Prometheus metrics). The library itself only logs them.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;

/// Receives the client's notable events. Every method has an empty default; implementations
/// must be quick and must not block (they run on the client's tasks).
pub trait ClientEvents: Send + Sync {
    /// `operation` failed with the retriable `error` and is tried again after `delay`
    /// (attempt `attempt` failed).
    fn retrying(&self, operation: &str, error: &Error, attempt: u32, delay: Duration) {
        let _ = (operation, error, attempt, delay);
    }

    /// `broker` answered an `api` request with a quota throttle time: the client sends nothing
    /// more on that connection for `throttle` (KIP-219).
    fn throttled(&self, broker: &str, api: &str, throttle: Duration) {
        let _ = (broker, api, throttle);
    }

    /// A live connection to `broker` authenticated again before its SASL session ended
    /// (KIP-368); the new session lasts `session` (`None`: the broker set no end).
    fn reauthenticated(&self, broker: &str, session: Option<Duration>) {
        let _ = (broker, session);
    }
}

/// A [`ClientEvents`] receiver in a [`ClientConfig`](crate::ClientConfig): configurations
/// with the same receiver compare equal.
#[derive(Clone)]
pub struct EventsHook(pub Arc<dyn ClientEvents>);

impl fmt::Debug for EventsHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EventsHook")
    }
}

impl PartialEq for EventsHook {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for EventsHook {}
