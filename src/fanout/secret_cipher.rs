//! Encryption of subscription secrets at rest (XChaCha20-Poly1305), keyed by `VODHOOK_SECRET_KEY`.

use base64::{engine::general_purpose::STANDARD, Engine};
use chacha20poly1305::{
    aead::{Aead, AeadCore, KeyInit, OsRng},
    XChaCha20Poly1305, XNonce,
};

/// Stored form of an encrypted secret: this prefix, then base64 of nonce and ciphertext.
const SEALED_PREFIX: &str = "enc1:";

#[derive(Clone)]
pub struct SecretCipher {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretCipher([REDACTED])")
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CipherError {
    #[error("the secret is stored encrypted but VODHOOK_SECRET_KEY is not set")]
    KeyMissing,
    #[error("the stored secret cannot be decrypted with VODHOOK_SECRET_KEY (wrong key or damaged value)")]
    Undecryptable,
}

impl SecretCipher {
    /// The key is 32 bytes, given as base64.
    pub fn from_base64(key: &str) -> Result<SecretCipher, String> {
        let bytes = STANDARD.decode(key.trim()).map_err(|_| {
            "must be base64 of 32 random bytes (e.g. `openssl rand -base64 32`)".to_owned()
        })?;
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes)
            .map_err(|_| format!("must decode to 32 bytes, got {}", bytes.len()))?;
        Ok(SecretCipher { cipher })
    }

    pub fn seal(&self, plaintext: &str) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        // Encryption with a valid key and nonce only fails for inputs beyond 256 GiB.
        let ciphertext = self
            .cipher
            .encrypt(&nonce, plaintext.as_bytes())
            .unwrap_or_else(|_| unreachable!("secret too large to encrypt"));
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        format!("{SEALED_PREFIX}{}", STANDARD.encode(sealed))
    }

    fn open_sealed(&self, encoded: &str) -> Result<String, CipherError> {
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| CipherError::Undecryptable)?;
        if bytes.len() < 24 {
            return Err(CipherError::Undecryptable);
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        let plaintext = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), ciphertext)
            .map_err(|_| CipherError::Undecryptable)?;
        String::from_utf8(plaintext).map_err(|_| CipherError::Undecryptable)
    }
}

/// Seals with the cipher when one is configured; stores the secret as it is otherwise.
pub fn seal(cipher: Option<&SecretCipher>, plaintext: &str) -> String {
    match cipher {
        Some(cipher) => cipher.seal(plaintext),
        None => plaintext.to_owned(),
    }
}

/// Reads a stored secret, sealed or not (secrets stored before a key was configured stay readable).
pub fn open(cipher: Option<&SecretCipher>, stored: &str) -> Result<String, CipherError> {
    match (stored.strip_prefix(SEALED_PREFIX), cipher) {
        (None, _) => Ok(stored.to_owned()),
        (Some(_), None) => Err(CipherError::KeyMissing),
        (Some(sealed), Some(cipher)) => cipher.open_sealed(sealed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    #[test]
    fn sealed_secrets_round_trip_and_hide_the_plaintext() {
        let cipher = SecretCipher::from_base64(KEY).expect("key");
        let sealed = seal(Some(&cipher), "whsec_abc");
        assert!(sealed.starts_with("enc1:"));
        assert!(!sealed.contains("whsec_abc"));
        assert_ne!(
            sealed,
            seal(Some(&cipher), "whsec_abc"),
            "fresh nonce each time"
        );
        assert_eq!(open(Some(&cipher), &sealed), Ok("whsec_abc".to_owned()));
        assert_eq!(open(None, &sealed), Err(CipherError::KeyMissing));
        let other =
            SecretCipher::from_base64("ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=").expect("key");
        assert_eq!(open(Some(&other), &sealed), Err(CipherError::Undecryptable));
        assert_eq!(
            open(Some(&cipher), "whsec_plain"),
            Ok("whsec_plain".to_owned())
        );
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert!(SecretCipher::from_base64("short").is_err());
        assert!(SecretCipher::from_base64("c2hvcnQ=").is_err());
    }
}
