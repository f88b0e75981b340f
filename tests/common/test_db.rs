//! A Postgres database of its own for each test, shared by the test crates (`#[path]`-included).

use sqlx::{Connection, PgConnection};

/// The Postgres server the tests create their databases on (any database on it will do).
pub fn admin_url() -> String {
    std::env::var("VODHOOK_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of its own for one test. Databases older than an hour, left by earlier runs, are
/// dropped whenever a new one is made.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let admin = admin_url();
        let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!(
                "the Postgres tests need a server at {admin} (set VODHOOK_TEST_DATABASE_URL): {e}"
            )
        });
        let now = chrono::Utc::now().timestamp();
        let stale: Vec<String> = sqlx::query_scalar(
            "SELECT datname FROM pg_database WHERE datname LIKE 'vodhook_test_%'",
        )
        .fetch_all(&mut conn)
        .await
        .expect("list databases");
        for name in stale {
            let created = name
                .split('_')
                .nth(2)
                .and_then(|t| t.parse::<i64>().ok())
                .unwrap_or(now);
            if now - created > 3600 {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            }
        }
        let name = format!("vodhook_test_{now}_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let url = match admin.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("VODHOOK_TEST_DATABASE_URL must end in /<database>"),
        };
        TestDb { name, url }
    }

    /// Drops the database while the application may still be connected: storage goes away.
    pub async fn drop_now(&self) {
        let mut conn = PgConnection::connect(&admin_url())
            .await
            .expect("admin connection");
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await
        .expect("drop test database");
    }
}
