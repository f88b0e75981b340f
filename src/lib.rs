//! vodhook: receives Tencent Cloud VOD event notifications, stores them durably, serves upload records.

pub mod cli;
pub mod config;
pub mod domain;
pub mod error;
pub mod fanout;
pub mod first_run;
pub mod ingest;
pub mod metrics;
pub mod pull;
pub mod routes;
pub mod simulate;
pub mod startup;
pub mod storage;
pub mod telemetry;
pub mod tencent;
