//! The notification each target receives: the HTTP body for subscribers, the argument for handlers.

use crate::domain::Upload;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use uuid::Uuid;

/// `{"id", "type", "timestamp", "data": {"upload"?, "vod"}}`.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    /// The event id: the same on every try (it is also `webhook-id`).
    pub id: Uuid,
    /// VOD's EventType.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When vodhook received the event.
    pub timestamp: DateTime<Utc>,
    pub data: NotificationData,
}

#[derive(Debug, Clone, Serialize)]
pub struct NotificationData {
    /// The upload record, when the event concerns a file vodhook has a record of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload: Option<Upload>,
    /// The VOD body exactly as received.
    pub vod: Box<RawValue>,
}

impl Notification {
    /// `raw_body` is a stored event's body, which parsed as JSON when it arrived.
    pub fn new(
        id: Uuid,
        event_type: String,
        timestamp: DateTime<Utc>,
        raw_body: &[u8],
        upload: Option<Upload>,
    ) -> Notification {
        let vod = std::str::from_utf8(raw_body)
            .ok()
            .and_then(|text| RawValue::from_string(text.trim().to_owned()).ok())
            .unwrap_or_else(|| {
                // Unreachable for stored events; keep the shape valid regardless.
                RawValue::from_string("null".to_owned())
                    .unwrap_or_else(|_| unreachable!("null is JSON"))
            });
        Notification {
            id,
            event_type,
            timestamp,
            data: NotificationData { upload, vod },
        }
    }

    /// The VOD body as a JSON value, for handlers that want to look inside it.
    pub fn vod_json(&self) -> serde_json::Value {
        serde_json::from_str(self.data.vod.get()).unwrap_or(serde_json::Value::Null)
    }

    pub fn to_json_bytes(&self) -> Vec<u8> {
        // Serialising these types cannot fail: no maps with non-string keys, no failing Serialize impls.
        serde_json::to_vec(self).unwrap_or_else(|_| unreachable!("notification serialises"))
    }
}
