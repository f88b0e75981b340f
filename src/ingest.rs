//! Storing VOD events the same way whichever way they came (a push or a pull), with group
//! commit and admission control.
//!
//! Each event waits in a bounded queue; a few committer tasks take everything queued (up to a
//! batch) and store it in one transaction, so concurrent callbacks share one commit. A lone
//! event is committed at once: nothing waits for a batch to fill. When the queue (or the bytes
//! it holds) is full, new events are refused at once, so the caller can answer 503 with
//! Retry-After instead of buffering without bound.

use crate::domain::VodEvent;
use crate::fanout::{Handlers, Wakeup};
use crate::storage::{IncomingEvent, IngestOutcome, StorageError, Store};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, Mutex, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

/// The most events one transaction stores.
const MAX_BATCH: usize = 256;
/// Events waiting for a committer, at most.
const QUEUE_CAPACITY: usize = 4096;

/// Why an event was not stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Too much is waiting already: try again shortly.
    #[error("vodhook is at capacity; retry shortly")]
    Busy,
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The committers are gone (the process is stopping).
    #[error("vodhook is shutting down")]
    Stopped,
}

/// Room for one event's body in the ingest buffer, taken before the body is read and given
/// back when the event is committed (on drop).
pub struct Admission {
    _room: OwnedSemaphorePermit,
}

/// One event waiting to be committed.
struct Pending {
    event: VodEvent,
    raw: Vec<u8>,
    headers: serde_json::Value,
    client_addr: Option<String>,
    handlers: Vec<String>,
    reply: oneshot::Sender<Result<IngestOutcome, StorageError>>,
    /// Released once the event is committed.
    _admission: Admission,
}

/// Hands events to the committers; cheap to clone.
#[derive(Clone)]
pub struct Ingestor {
    queue: mpsc::Sender<Pending>,
    /// Body bytes held by waiting events (and bodies being read), in KiB.
    buffer: Arc<Semaphore>,
    buffer_kib: u32,
    handlers: Handlers,
}

impl Ingestor {
    /// Starts the committer tasks (as many as the store can usefully run at once); at most
    /// `buffer_bytes` of bodies wait at a time.
    pub fn start(
        store: Store,
        handlers: Handlers,
        max_attempts: u32,
        wakeup: Wakeup,
        buffer_bytes: usize,
    ) -> Ingestor {
        let buffer_kib = u32::try_from(buffer_bytes / 1024)
            .unwrap_or(u32::MAX)
            .clamp(1, Semaphore::MAX_PERMITS as u32);
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let receiver = Arc::new(Mutex::new(receiver));
        let max_attempts = i32::try_from(max_attempts).unwrap_or(i32::MAX);
        for _ in 0..store.concurrent_writers() {
            tokio::spawn(commit_batches(
                store.clone(),
                receiver.clone(),
                max_attempts,
                wakeup.clone(),
            ));
        }
        Ingestor {
            queue,
            buffer: Arc::new(Semaphore::new(buffer_kib as usize)),
            buffer_kib,
            handlers,
        }
    }

    /// Reserves buffer room for a body of `bytes` (read, then queued); `Busy` when full.
    pub fn admit(&self, bytes: usize) -> Result<Admission, IngestError> {
        let kib = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        if kib > self.buffer_kib {
            return Err(IngestError::Busy);
        }
        self.buffer
            .clone()
            .try_acquire_many_owned(kib)
            .map(|room| Admission { _room: room })
            .map_err(|_| IngestError::Busy)
    }

    /// Stores `event` (received as `raw`) unless it repeats a stored one; returns after the
    /// commit that holds it.
    pub async fn ingest(
        &self,
        event: VodEvent,
        raw: Vec<u8>,
        headers: serde_json::Value,
        client_addr: Option<String>,
        admission: Admission,
    ) -> Result<IngestOutcome, IngestError> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            handlers: self.handlers.matching(&event.event_type),
            event,
            raw,
            headers,
            client_addr,
            reply,
            _admission: admission,
        };
        self.queue.try_send(pending).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => IngestError::Busy,
            mpsc::error::TrySendError::Closed(_) => IngestError::Stopped,
        })?;
        match answer.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(IngestError::Stopped),
        }
    }
}

/// Takes what is queued (waiting only when nothing is), stores it as one batch, answers each.
async fn commit_batches(
    store: Store,
    receiver: Arc<Mutex<mpsc::Receiver<Pending>>>,
    max_attempts: i32,
    wakeup: Wakeup,
) {
    loop {
        let mut batch = Vec::new();
        {
            let mut receiver = receiver.lock().await;
            match receiver.recv().await {
                Some(first) => batch.push(first),
                None => return,
            }
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
        }
        // This process's worker takes the deliveries of as many events as it has room for
        // already claimed, from the store's answer.
        let room = wakeup.claim_room();
        let lease_started = Instant::now();
        // The owned parts move into the batch; the pending events keep only their replies.
        let incoming: Vec<IncomingEvent<'_>> = batch
            .iter_mut()
            .enumerate()
            .map(|(i, p)| IncomingEvent {
                event: &p.event,
                id: Uuid::now_v7(),
                raw_body: &p.raw,
                headers: std::mem::take(&mut p.headers),
                client_addr: p.client_addr.take(),
                handlers: std::mem::take(&mut p.handlers),
                max_attempts,
                lease: room.filter(|room| i < room.events).map(|room| room.lease),
            })
            .collect();
        let results = store.ingest_batch(&incoming).await;
        drop(incoming);
        let (mut stored, mut claimed) = (Vec::new(), Vec::new());
        for (pending, mut result) in batch.into_iter().zip(results) {
            if let Ok(outcome) = &mut result {
                if !outcome.claimed.is_empty() {
                    claimed.append(&mut outcome.claimed);
                } else if !outcome.duplicate {
                    stored.push(outcome.event_id);
                }
            }
            // The caller may have gone (its client hung up); the event is stored all the same.
            let _ = pending.reply.send(result);
        }
        // Claims no worker took (it stopped meanwhile) are given back, for any process to take.
        let untaken = wakeup.claimed(claimed, lease_started);
        if crate::fanout::release(&store, untaken).await {
            wakeup.notify();
        }
        if !stored.is_empty() {
            wakeup.stored(stored);
        }
    }
}
