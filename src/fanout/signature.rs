//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, one per live secret.

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The `webhook-signature` header value for `body`, signed with every key given (a rotated-out
/// secret keeps signing beside the new one, so receivers can switch without losing deliveries).
pub fn sign(msg_id: &str, timestamp: i64, body: &[u8], keys: &[Vec<u8>]) -> String {
    keys.iter()
        .map(|key| {
            // HMAC accepts keys of any length; this cannot fail.
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
            mac.update(msg_id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SigningSecret;

    fn key(secret: &str) -> Vec<u8> {
        SigningSecret::parse(secret)
            .expect("valid secret")
            .key()
            .to_vec()
    }

    /// The two vectors in webhooks-reference.md §4 (Standard Webhooks' Rust library and Svix's docs).
    #[test]
    fn standard_webhooks_vectors() {
        assert_eq!(
            sign(
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1_649_367_553,
                br#"{"email":"test@example.com","username":"test_user"}"#,
                &[key("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")]
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
        assert_eq!(
            sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#,
                &[key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn every_live_key_signs() {
        let header = sign(
            "id",
            1,
            b"{}",
            &[
                key("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
                key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            ],
        );
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.starts_with("v1,")));
        assert_ne!(parts[0], parts[1]);
    }
}
