//! Storing one VOD event the same way whichever way it came: a push callback or a pull.

use crate::domain::VodEvent;
use crate::fanout::{Handlers, Wakeup};
use crate::storage::{IncomingEvent, IngestOutcome, StorageResult, Store};
use uuid::Uuid;

/// Stores events with their outbox rows and wakes the delivery workers; cheap to clone.
#[derive(Clone)]
pub struct Ingestor {
    store: Store,
    handlers: Handlers,
    /// Tries each new delivery gets (the retry schedule's length).
    max_attempts: i32,
    wakeup: Wakeup,
}

impl Ingestor {
    pub fn new(store: Store, handlers: Handlers, max_attempts: u32, wakeup: Wakeup) -> Ingestor {
        Ingestor {
            store,
            handlers,
            max_attempts: i32::try_from(max_attempts).unwrap_or(i32::MAX),
            wakeup,
        }
    }

    /// Stores `event` (received as `raw`) unless it repeats a stored one; returns after commit.
    pub async fn ingest(
        &self,
        event: &VodEvent,
        raw: &[u8],
        headers: serde_json::Value,
        client_addr: Option<String>,
    ) -> StorageResult<IngestOutcome> {
        let incoming = IncomingEvent {
            event,
            id: Uuid::now_v7(),
            raw_body: raw,
            headers,
            client_addr,
            handlers: self.handlers.matching(&event.event_type),
            max_attempts: self.max_attempts,
        };
        let outcome = self.store.ingest(&incoming).await?;
        if !outcome.duplicate {
            // This process's worker need not wait for the NOTIFY round trip.
            self.wakeup.notify();
        }
        Ok(outcome)
    }
}
