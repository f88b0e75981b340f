//! Signing secrets of HTTP subscriptions: `whsec_` plus base64 of 32 random bytes.

use base64::{engine::general_purpose::STANDARD, Engine};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox, SecretString};

/// A subscription's secret; `Debug` never shows it.
pub struct SigningSecret {
    text: SecretString,
    key: SecretBox<Vec<u8>>,
}

impl SigningSecret {
    pub const PREFIX: &'static str = "whsec_";

    pub fn generate() -> SigningSecret {
        let mut key = vec![0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        let text = format!("{}{}", Self::PREFIX, STANDARD.encode(&key));
        SigningSecret {
            text: SecretString::from(text),
            key: SecretBox::new(Box::new(key)),
        }
    }

    /// `whsec_<base64>`; the HMAC key is the decoded bytes.
    pub fn parse(text: &str) -> Option<SigningSecret> {
        let key = STANDARD.decode(text.strip_prefix(Self::PREFIX)?).ok()?;
        (!key.is_empty()).then(|| SigningSecret {
            text: SecretString::from(text.to_owned()),
            key: SecretBox::new(Box::new(key)),
        })
    }

    pub fn expose(&self) -> &str {
        self.text.expose_secret()
    }

    pub fn key(&self) -> &[u8] {
        self.key.expose_secret()
    }
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_32_random_bytes_and_parse_back() {
        let secret = SigningSecret::generate();
        assert!(secret.expose().starts_with("whsec_"));
        assert_eq!(secret.key().len(), 32);
        let parsed = SigningSecret::parse(secret.expose()).expect("parses");
        assert_eq!(parsed.key(), secret.key());
        assert_ne!(SigningSecret::generate().key(), secret.key());
        assert!(!format!("{secret:?}").contains(secret.expose()));
    }

    #[test]
    fn malformed_secrets_are_refused() {
        assert!(SigningSecret::parse("C2FVsBQIhrscChlQIMV+b5sSYspob7oD").is_none());
        assert!(SigningSecret::parse("whsec_").is_none());
        assert!(SigningSecret::parse("whsec_not base64!").is_none());
    }
}
