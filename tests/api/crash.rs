use crate::helpers::{new_file_upload, ServerProcess, TestDb, API_TOKEN};
use reqwest::StatusCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A callback that was answered 200, with what it was answered.
struct Acked {
    file_id: String,
    event_id: String,
    body: Vec<u8>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_callback_is_lost_when_the_process_is_killed() {
    let db = TestDb::create().await;
    let mut server = ServerProcess::start(&[("DATABASE_URL", &db.url)]).await;
    let url = format!("{}/v1/callbacks/vod", server.address);

    let acked = Arc::new(Mutex::new(Vec::<Acked>::new()));
    let failed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let senders: Vec<_> = (0..16)
        .map(|sender| {
            let (acked, failed, stop, client, url) = (
                acked.clone(),
                failed.clone(),
                stop.clone(),
                client.clone(),
                url.clone(),
            );
            tokio::spawn(async move {
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let file_id = format!("{}{sender:02}{n:06}", 9_100_000_000u64);
                    let body = new_file_upload(&file_id, Some("crash-test"));
                    match client.post(&url).body(body.clone()).send().await {
                        Ok(response) if response.status() == StatusCode::OK => {
                            let answer: serde_json::Value =
                                response.json().await.expect("json answer");
                            let event_id =
                                answer["event_id"].as_str().expect("event id").to_owned();
                            acked.lock().expect("lock").push(Acked {
                                file_id,
                                event_id,
                                body,
                            });
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.expect("sender");
    }
    let acked = std::mem::take(&mut *acked.lock().expect("lock"));
    assert!(
        acked.len() >= 50,
        "the load ran before the kill ({} acked)",
        acked.len()
    );
    assert!(
        failed.load(Ordering::Relaxed) > 0,
        "some requests met the dead server"
    );

    let server = ServerProcess::start(&[("DATABASE_URL", &db.url)]).await;
    let client = reqwest::Client::new();
    for ack in &acked {
        let upload: serde_json::Value = client
            .get(format!("{}/v1/uploads/{}", server.address, ack.file_id))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        assert_eq!(
            upload["first_event_id"],
            ack.event_id.as_str(),
            "acknowledged upload {} is stored",
            ack.file_id
        );
        let again: serde_json::Value = client
            .post(format!("{}/v1/callbacks/vod", server.address))
            .body(ack.body.clone())
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        assert_eq!(again["duplicate"], true);
        assert_eq!(
            again["event_id"],
            ack.event_id.as_str(),
            "stored once, under the acknowledged id"
        );
    }
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .expect("connect");
    let (events, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT dedupe_key) FROM events")
            .fetch_one(&mut conn)
            .await
            .expect("count");
    assert_eq!(events, distinct, "no event stored twice");
    let uploads: i64 = sqlx::query_scalar("SELECT count(*) FROM uploads")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert!(uploads as usize >= acked.len());
    assert_eq!(uploads, events, "one record per stored upload event");
}
