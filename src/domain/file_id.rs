//! `FileId`: VOD's media file identifier, kept as text because it can exceed i64.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A VOD FileId. Decimal digits in practice, but opaque to us: values above `i64::MAX` occur
/// ("14508071098244959037"), so it is never parsed as a number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct FileId(String);

impl FileId {
    /// Real FileIds are about 20 digits; anything longer than this is not one.
    pub const MAX_LEN: usize = 256;

    /// Accepts non-blank text of at most `MAX_LEN` bytes; surrounding whitespace is trimmed.
    pub fn parse(raw: &str) -> Option<FileId> {
        Self::checked(raw).map(|id| FileId(id.to_owned()))
    }

    /// What `parse` would keep of `raw`, without allocating: for reading stored text back.
    pub fn checked(raw: &str) -> Option<&str> {
        let trimmed = raw.trim();
        (!trimmed.is_empty() && trimmed.len() <= Self::MAX_LEN).then_some(trimmed)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// For values read back from storage, where a blank FileId cannot occur.
impl TryFrom<String> for FileId {
    type Error = String;

    fn try_from(raw: String) -> Result<FileId, String> {
        FileId::parse(&raw).ok_or_else(|| format!("{raw:?} is not a FileId"))
    }
}

/// Read back from stored JSON (upload records), with the same check as `parse`.
impl<'de> Deserialize<'de> for FileId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<FileId, D::Error> {
        FileId::try_from(String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

impl AsRef<str> for FileId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_text_is_not_a_file_id() {
        assert_eq!(FileId::parse(""), None);
        assert_eq!(FileId::parse("  "), None);
    }

    #[test]
    fn over_long_text_is_not_a_file_id() {
        assert!(FileId::parse(&"1".repeat(256)).is_some());
        assert_eq!(FileId::parse(&"1".repeat(257)), None);
    }

    #[test]
    fn file_ids_beyond_i64_stay_exact() {
        let id = FileId::parse("14508071098244959037").expect("valid");
        assert_eq!(id.as_str(), "14508071098244959037");
    }
}
