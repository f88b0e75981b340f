//! In-process handlers: Rust code that apps register to receive events with the same durability
//! as HTTP subscribers (own outbox rows, retries, attempt log, dead letters, replay).

use super::Notification;
use std::collections::HashMap;
use std::sync::Arc;

/// An app's handler. `Err` means "try again later" on the retry schedule; a panic counts the same.
#[async_trait::async_trait]
pub trait EventHandler: Send + Sync + 'static {
    async fn handle(&self, notification: &Notification) -> anyhow::Result<()>;
}

#[derive(Clone)]
struct Registered {
    event_types: Vec<String>,
    handler: Arc<dyn EventHandler>,
}

/// The handlers registered in this process, by stable name.
#[derive(Clone, Default)]
pub struct Handlers {
    by_name: HashMap<String, Registered>,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

impl Handlers {
    /// Adds a handler. The name identifies its deliveries in the database, so keep it stable
    /// across releases: 1 to 64 letters, digits, `-`, `_` or `.`. `event_types` empty means all.
    pub fn register(
        &mut self,
        name: &str,
        event_types: &[&str],
        handler: impl EventHandler,
    ) -> Result<(), String> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid {
            return Err(format!(
                "handler name {name:?} must be 1 to 64 letters, digits, '-', '_' or '.'"
            ));
        }
        if self.by_name.contains_key(name) {
            return Err(format!("a handler named {name:?} is already registered"));
        }
        let registered = Registered {
            event_types: event_types.iter().map(|t| (*t).to_owned()).collect(),
            handler: Arc::new(handler),
        };
        self.by_name.insert(name.to_owned(), registered);
        Ok(())
    }

    /// Names of the handlers that want `event_type`.
    pub fn matching(&self, event_type: &str) -> Vec<String> {
        self.by_name
            .iter()
            .filter(|(_, r)| {
                r.event_types.is_empty() || r.event_types.iter().any(|t| t == event_type)
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    pub(super) fn get(&self, name: &str) -> Option<Arc<dyn EventHandler>> {
        self.by_name.get(name).map(|r| r.handler.clone())
    }
}
