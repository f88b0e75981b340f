//! Black-box tests: the real HTTP server on a real Postgres, one fresh database per test.

mod auth;
mod callbacks;
mod cli;
mod crash;
mod events;
mod fanout;
mod health;
mod helpers;
mod pull;
mod receiver;
mod signed_callbacks;
mod sqlite;
mod upload_signatures;
mod uploads;
mod vod_standin;
