//! Fan-out: the delivery worker that takes outbox rows to HTTP subscribers and in-process handlers.

mod address_guard;
mod clock;
mod handler;
mod http_target;
mod notification;
mod retry;
mod secret_cipher;
mod signature;
mod wakeup;
mod worker;

pub use address_guard::{is_public, PrivateTargets};
pub use clock::{Clock, ManualClock, SystemClock};
pub use handler::{EventHandler, Handlers};
pub use http_target::HttpTarget;
pub use notification::Notification;
pub use retry::{FailureHints, RetryPolicy};
pub use secret_cipher::{open as open_secret, seal as seal_secret, CipherError, SecretCipher};
pub use signature::sign;
pub use wakeup::Wakeup;
pub(crate) use worker::release;
pub use worker::{DeliveryWorker, RunOutcome, WorkerSettings};
