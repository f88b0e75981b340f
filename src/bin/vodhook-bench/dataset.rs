//! The query benchmark's synthetic data: N small events and N realistic upload records.
//!
//! Every value is a pure function of the row number (and of a seeded generator), so the query
//! phase can name existing FileIds and users without reading them back.

use chrono::{DateTime, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::Rng;
use std::fmt::Write;
use uuid::Uuid;

/// Bumped whenever the rows change, so an old database is reloaded rather than reused.
pub const VERSION: u32 = 1;

/// Skew of uploads over users (Zipf exponent): with 100k users the busiest user has ~8 % of
/// all uploads, and the median user a handful, as a few heavy accounts dominate real apps.
const ZIPF_EXPONENT: f64 = 1.0;

/// The span `received_at` covers, ending when the load starts.
const SPAN_DAYS: i64 = 365;

/// Regions and their share (percent) of uploads.
const REGIONS: [(&str, u32); 5] = [
    ("ap-guangzhou", 50),
    ("ap-shanghai", 20),
    ("ap-beijing", 15),
    ("ap-singapore", 10),
    ("na-siliconvalley", 5),
];

/// The columns `write_event` fills, in order.
pub const EVENT_COLUMNS: &str =
    "id, dedupe_key, event_type, format, file_id, received_at, raw_body, body, headers, client_addr";

/// The columns `write_upload` fills, in order.
pub const UPLOAD_COLUMNS: &str = "file_id, media_url, source_type, source_context, \
    procedure_task_id, review_audio_video_task_id, name, media_type, cover_url, storage_region, \
    class_id, size_bytes, duration_seconds, media_created_at, first_event_id, received_at, \
    updated_at, processing_status, processing_task_id, processing_rank, processing_results, \
    session_context, processing_updated_at, deleted_at";

pub struct Dataset {
    pub records: u64,
    pub users: u32,
    /// Cumulative share of uploads of users ranked 1..=users.
    cdf: Vec<f64>,
    /// Microseconds since the epoch of the first record.
    start_micros: i64,
    /// Microseconds between consecutive records.
    step_micros: i64,
}

impl Dataset {
    pub fn new(records: u64, users: u32, end: DateTime<Utc>) -> Dataset {
        let weights: Vec<f64> = (1..=users)
            .map(|rank| f64::from(rank).powf(-ZIPF_EXPONENT))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut cumulative = 0.0;
        let cdf = weights
            .iter()
            .map(|w| {
                cumulative += w / total;
                cumulative
            })
            .collect();
        let span = SPAN_DAYS * 86_400 * 1_000_000;
        // Records are spread evenly over the span and appended in time order, as a live table is.
        let step_micros = (span / i64::try_from(records.max(1)).unwrap_or(i64::MAX)).max(1);
        Dataset {
            records,
            users,
            cdf,
            start_micros: end.timestamp_micros() - span,
            step_micros,
        }
    }

    /// The marker a fully loaded database carries, naming exactly what it holds.
    pub fn marker(&self) -> String {
        format!(
            "vodhook-bench dataset v{VERSION}: records={} users={}",
            self.records, self.users
        )
    }

    /// Record `i`'s FileId: a unique 19-digit number like VOD's, in no particular order (an odd
    /// multiplier is a bijection modulo 2^62).
    pub fn file_id(i: u64) -> u64 {
        5_000_000_000_000_000_000 + (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) & ((1 << 62) - 1))
    }

    /// The SourceContext of the user of rank `rank` (1 = most uploads): ranks map to ids in no
    /// particular order, so heavy users sit anywhere in the index.
    pub fn user(rank: u32) -> String {
        // The multiplier is coprime with the prime 1_000_000_007, so distinct ranks stay distinct.
        let id = (u64::from(rank) * 2_654_435_761) % 1_000_000_007;
        format!("user:{id}")
    }

    /// A user's rank, drawn with the uploads' skew: busy users are drawn (and query) more.
    pub fn sample_rank(&self, rng: &mut StdRng) -> u32 {
        let u: f64 = rng.gen();
        let index = self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1);
        u32::try_from(index + 1).unwrap_or(self.users)
    }

    fn received_micros(&self, i: u64) -> i64 {
        let i = i64::try_from(i).unwrap_or(i64::MAX);
        let jitter = (splitmix(i as u64) % self.step_micros.unsigned_abs()) as i64;
        self.start_micros + i * self.step_micros + jitter
    }

    /// Record `i`'s event id: a UUIDv7 of its receipt time, as vodhook makes them, unique by `i`.
    fn event_id(&self, i: u64) -> Uuid {
        let millis = u64::try_from(self.received_micros(i) / 1000).unwrap_or(0);
        let hash = splitmix(i);
        let mut tail = [0u8; 10];
        tail[..2].copy_from_slice(&hash.to_be_bytes()[..2]);
        // The low 40 bits hold `i` itself, clear of the version and variant bits.
        tail[2..].copy_from_slice(&((hash << 40) | (i & ((1 << 40) - 1))).to_be_bytes());
        uuid::Builder::from_unix_timestamp_millis(millis, &tail).into_uuid()
    }

    /// Appends event `i` as a line of COPY text: a small but valid NewFileUpload event.
    pub fn write_event(&self, i: u64, out: &mut String) {
        let file_id = Self::file_id(i);
        let json = format!(
            r#"{{"EventType":"NewFileUpload","FileUploadEvent":{{"FileId":"{file_id}"}}}}"#
        );
        let _ = writeln!(
            out,
            "{}\tNewFileUpload:{file_id}\tNewFileUpload\tv3\t{file_id}\t{}\t\\\\x{}\t{json}\t{{}}\t\\N",
            self.event_id(i),
            time(self.received_micros(i)),
            hex::encode(json.as_bytes()),
        );
    }

    /// Appends upload record `i` as a line of COPY text, with fields as VOD fills them.
    pub fn write_upload(&self, i: u64, rng: &mut StdRng, out: &mut String) {
        let file_id = Self::file_id(i);
        let received = self.received_micros(i);
        let user = Self::user(self.sample_rank(rng));
        let mut pick = rng.gen_range(0..100);
        let region = REGIONS
            .iter()
            .find(|(_, share)| {
                let hit = pick < *share;
                pick = pick.saturating_sub(*share);
                hit
            })
            .map_or("ap-guangzhou", |(name, _)| name);
        let media_type = match rng.gen_range(0..100) {
            0..=84 => "mp4",
            85..=94 => "mov",
            _ => "m4a",
        };
        let source_type = match rng.gen_range(0..100) {
            0..=69 => "Upload",
            70..=94 => "ClientUpload",
            _ => "ServerUpload",
        };
        // Sizes from 200 KB to 2 GB, evenly on a log scale; ~1.5 Mbit/s.
        let size: f64 = (rng.gen_range(12.2f64..21.4)).exp();
        let duration = size * 8.0 / 1_500_000.0;
        let created = received - rng.gen_range(2_000_000..30_000_000);
        let name = format!(
            "VID_{}",
            time(created)
                .get(..19)
                .unwrap_or("")
                .replace([' ', ':', '-'], "")
        );
        let app = "1500000001";
        let media_url = format!(
            "https://{app}.vod-qcloud.com/a1b2c3d4vod{}{app}/{file_id}/{name}.{media_type}",
            region.replace('-', "")
        );
        let mut updated = received;
        let (procedure, status, rank, cover, processed_at) = if rng.gen_bool(0.4) {
            let task = format!(
                "{app}-procedurev2-{:032x}",
                u128::from(splitmix(i)) << 64 | u128::from(rng.gen::<u64>())
            );
            let (status, rank) = match rng.gen_range(0..100) {
                0..=89 => ("finished", 3),
                90..=92 => ("failed", 3),
                _ => ("processing", 1),
            };
            let at = received + rng.gen_range(30_000_000..600_000_000);
            updated = at;
            let cover = format!(
                "https://{app}.vod-qcloud.com/a1b2c3d4vod{}{app}/{file_id}/coverBySnapshot/coverBySnapshot_10_0.jpg",
                region.replace('-', "")
            );
            (task, status.to_owned(), rank.to_string(), cover, time(at))
        } else {
            let none = "\\N".to_owned();
            (none.clone(), none.clone(), none.clone(), none.clone(), none)
        };
        let deleted = if rng.gen_bool(0.01) {
            let at = received + rng.gen_range(86_400_000_000..30 * 86_400_000_000);
            updated = updated.max(at);
            time(at)
        } else {
            "\\N".to_owned()
        };
        let _ = writeln!(
            out,
            "{file_id}\t{media_url}\t{source_type}\t{user}\t{procedure}\t\\N\t{name}\t{media_type}\t{cover}\t{region}\t0\t{}\t{duration:.3}\t{}\t{}\t{}\t{}\t{status}\t{procedure}\t{rank}\t\\N\t\\N\t{processed_at}\t{deleted}",
            size as i64,
            time(created),
            self.event_id(i),
            time(received),
            time(updated),
        );
    }
}

/// A time as COPY text reads it.
fn time(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A well-mixed 64-bit hash (SplitMix64), a bijection of u64.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::collections::HashSet;

    #[test]
    fn file_ids_and_event_ids_are_unique() {
        let data = Dataset::new(10_000, 100, Utc::now());
        let files: HashSet<u64> = (0..10_000).map(Dataset::file_id).collect();
        let events: HashSet<Uuid> = (0..10_000).map(|i| data.event_id(i)).collect();
        assert_eq!((files.len(), events.len()), (10_000, 10_000));
        assert!(files.iter().all(|f| f.to_string().len() == 19));
    }

    #[test]
    fn rows_have_every_column() {
        let data = Dataset::new(100, 10, Utc::now());
        let mut rng = StdRng::seed_from_u64(1);
        let (mut event, mut upload) = (String::new(), String::new());
        data.write_event(7, &mut event);
        data.write_upload(7, &mut rng, &mut upload);
        assert_eq!(event.split('\t').count(), EVENT_COLUMNS.split(", ").count());
        assert_eq!(
            upload.split('\t').count(),
            UPLOAD_COLUMNS.split(", ").count()
        );
        assert!(event.ends_with('\n') && upload.ends_with('\n'));
    }

    #[test]
    fn users_are_skewed() {
        let data = Dataset::new(100, 100_000, Utc::now());
        let mut rng = StdRng::seed_from_u64(1);
        let top = (0..100_000)
            .filter(|_| data.sample_rank(&mut rng) == 1)
            .count();
        assert!((6_000..11_000).contains(&top), "{top}");
    }
}
