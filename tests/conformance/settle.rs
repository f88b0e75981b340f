//! `settle_deliveries` (outcomes, the fence, the attempt log) and the delivery list.

use crate::support::{
    assert_distinct, by_event, by_subscription, claim, claim_of, collect_pages, deliveries,
    delivery, ingest_upload, ingest_upload_for, now, secs, settle, settle_of, subscribe,
    uuid_cursor, TestStore, LEASE,
};
use std::collections::HashSet;
use uuid::Uuid;
use vodhook::storage::{AttemptRecord, Delivery, DeliveryFilter, Settle, Settlement};

pub async fn settling_succeeded_completes_the_delivery(store: TestStore) {
    subscribe(&store, &[]).await;
    ingest_upload(&store, "1").await;
    let t = now();
    let claimed = claim(&store, t, &[]).await.remove(0);
    let entry = settle_of(&claimed, Settlement::Succeeded, t + secs(1));
    let took = store
        .settle_deliveries(std::slice::from_ref(&entry), t + secs(1))
        .await
        .expect("settle_deliveries");
    assert_eq!(took, [true]);

    let (settled, attempts) = delivery(&store, claimed.id).await;
    assert_eq!(settled.status, "succeeded");
    assert_eq!(settled.attempts, 1);
    assert_eq!(settled.completed_at, Some(t + secs(1)));
    assert_eq!(settled.last_http_status, entry.attempt.http_status);
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].attempt, 1);
    assert_eq!(attempts[0].started_at, entry.attempt.started_at);
    assert_eq!(attempts[0].duration_ms, entry.attempt.duration_ms);
    assert_eq!(attempts[0].http_status, entry.attempt.http_status);
    assert_eq!(attempts[0].error, entry.attempt.error);
    assert_eq!(attempts[0].response_body, entry.attempt.response_body);

    let much_later = t + secs(LEASE.as_secs() as i64 * 100);
    assert!(
        claim(&store, much_later, &[]).await.is_empty(),
        "never tried again"
    );
    assert!(
        !settle(&store, &claimed, Settlement::Succeeded, t + secs(2)).await,
        "settled once only"
    );
}

pub async fn settling_retry_at_defers_until_then(store: TestStore) {
    subscribe(&store, &[]).await;
    ingest_upload(&store, "1").await;
    let t = now();
    let claimed = claim(&store, t, &[]).await.remove(0);
    let retry_at = t + secs(600);
    assert!(settle(&store, &claimed, Settlement::RetryAt(retry_at), t).await);

    let (waiting, attempts) = delivery(&store, claimed.id).await;
    assert_eq!(waiting.status, "pending");
    assert_eq!(waiting.next_attempt_at, retry_at);
    assert_eq!(waiting.completed_at, None);
    assert_eq!(waiting.last_http_status, Some(500));
    assert_eq!(waiting.last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(attempts.len(), 1);

    assert!(
        claim(&store, t + secs(300), &[]).await.is_empty(),
        "not due before then"
    );
    assert!(
        claim(&store, retry_at - secs(1), &[]).await.is_empty(),
        "not due before then"
    );
    let again = claim(&store, retry_at + secs(1), &[]).await;
    assert_eq!(again.len(), 1, "due after then");
    assert_eq!(again[0].id, claimed.id);
    assert_eq!(again[0].attempts, 2);
}

pub async fn settling_dead_stops_retrying(store: TestStore) {
    subscribe(&store, &[]).await;
    ingest_upload(&store, "1").await;
    let t = now();
    let claimed = claim(&store, t, &[]).await.remove(0);
    assert!(settle(&store, &claimed, Settlement::Dead, t).await);

    let (dead, attempts) = delivery(&store, claimed.id).await;
    assert_eq!(dead.status, "dead");
    assert_eq!(dead.completed_at, Some(t));
    assert_eq!(dead.last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(attempts.len(), 1);
    let much_later = t + secs(LEASE.as_secs() as i64 * 100);
    assert!(
        claim(&store, much_later, &[]).await.is_empty(),
        "never tried again"
    );
}

pub async fn dead_and_disable_disables_subscription_and_pauses_its_backlog(store: TestStore) {
    let gone = subscribe(&store, &[]).await;
    let other = subscribe(&store, &[]).await;
    let first = ingest_upload_for(&store, "1", &["audit"]).await;
    let second = ingest_upload_for(&store, "2", &["audit"]).await;
    let t = now();
    let claims = claim(&store, t, &[]).await;
    assert_eq!(claims.len(), 4);
    // A delivery of the gone subscription that is not claimed.
    let third = ingest_upload_for(&store, "3", &["audit"]).await;

    let answered_gone = claim_of(&claims, first, gone.id);
    let reason = "the target answered 410 Gone";
    let took = settle(
        &store,
        &answered_gone,
        Settlement::DeadAndDisable(reason.into()),
        t + secs(1),
    )
    .await;
    assert!(took);
    assert_eq!(delivery(&store, answered_gone.id).await.0.status, "dead");
    let disabled = store
        .get_subscription(gone.id)
        .await
        .expect("get_subscription")
        .expect("still there");
    assert!(!disabled.enabled);
    assert_eq!(disabled.disabled_reason.as_deref(), Some(reason));

    // Its other pending deliveries, claimed or not, are paused; nobody else's are.
    for event in [second, third] {
        let d = deliveries(&store, by_event(event)).await;
        for d in d {
            let expected = if d.subscription_id == Some(gone.id) {
                "paused"
            } else {
                "pending"
            };
            assert_eq!(d.status, expected, "{d:?}");
        }
    }
    assert!(deliveries(&store, by_subscription(other.id))
        .await
        .iter()
        .all(|d| d.status == "pending"));

    // A paused delivery stays paused when its try asks for a retry, and completes when it
    // succeeded.
    let still_trying = claim_of(&claims, second, gone.id);
    assert!(
        settle(
            &store,
            &still_trying,
            Settlement::RetryAt(t + secs(60)),
            t + secs(2)
        )
        .await
    );
    assert_eq!(delivery(&store, still_trying.id).await.0.status, "paused");
    let succeeded = claim_of(&claims, first, other.id);
    assert!(settle(&store, &succeeded, Settlement::Succeeded, t + secs(2)).await);
    assert_eq!(delivery(&store, succeeded.id).await.0.status, "succeeded");

    // A disabled subscription gets no new deliveries.
    let fourth = ingest_upload(&store, "4").await;
    let d = deliveries(&store, by_event(fourth)).await;
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].subscription_id, Some(other.id));
}

/// The try that settles a delivery as succeeded is kept on its row, the others in the attempt
/// log: a delivery read back shows them all, in order, each as it was settled.
pub async fn a_success_after_failures_reads_back_every_try(store: TestStore) {
    subscribe(&store, &[]).await;
    ingest_upload(&store, "1").await;
    let t = now();
    let first = claim(&store, t, &[]).await.remove(0);
    let failed = settle_of(&first, Settlement::RetryAt(t + secs(5)), t + secs(1));
    let took = store
        .settle_deliveries(std::slice::from_ref(&failed), t + secs(1))
        .await
        .expect("settle_deliveries");
    assert_eq!(took, [true]);
    let second = claim(&store, t + secs(5), &[]).await.remove(0);
    assert_eq!(second.attempts, 2);
    let mut succeeded = settle_of(&second, Settlement::Succeeded, t + secs(6));
    succeeded.attempt.duration_ms = 3.25;
    succeeded.attempt.response_body = Some("accepted".into());
    let took = store
        .settle_deliveries(std::slice::from_ref(&succeeded), t + secs(6))
        .await
        .expect("settle_deliveries");
    assert_eq!(took, [true]);

    let (row, attempts) = delivery(&store, first.id).await;
    assert_eq!(row.status, "succeeded");
    let read: Vec<_> = attempts
        .iter()
        .map(|a| {
            let fields = (a.started_at, a.duration_ms, a.http_status);
            (a.attempt, fields, a.error.clone(), a.response_body.clone())
        })
        .collect();
    let expected = [(1, &failed), (2, &succeeded)].map(|(n, s)| {
        let fields = (
            s.attempt.started_at,
            s.attempt.duration_ms,
            s.attempt.http_status,
        );
        (
            n,
            fields,
            s.attempt.error.clone(),
            s.attempt.response_body.clone(),
        )
    });
    assert_eq!(read, expected);
}

pub async fn stale_settlement_is_fenced_but_logged(store: TestStore) {
    subscribe(&store, &[]).await;
    ingest_upload(&store, "1").await;
    let t = now();
    let first_claim = claim(&store, t, &[]).await.remove(0);
    // The lease ran out and another worker claimed it again.
    let lease_ended = t + secs(LEASE.as_secs() as i64 + 1);
    let second_claim = claim(&store, lease_ended, &[]).await.remove(0);
    assert_eq!(second_claim.id, first_claim.id);
    assert_eq!(second_claim.attempts, 2);

    let took = settle(
        &store,
        &first_claim,
        Settlement::Succeeded,
        lease_ended + secs(1),
    )
    .await;
    assert!(!took, "a stale attempt count does not settle");
    let (row, attempts) = delivery(&store, first_claim.id).await;
    assert_eq!(row.status, "pending", "left as it was");
    assert_eq!(row.attempts, 2);
    assert_eq!(row.completed_at, None);
    assert_eq!(
        attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        [1],
        "but its attempt is logged"
    );
    assert!(
        claim(&store, lease_ended + secs(2), &[]).await.is_empty(),
        "the current claim still holds its lease"
    );

    assert!(
        settle(
            &store,
            &second_claim,
            Settlement::Succeeded,
            lease_ended + secs(3)
        )
        .await
    );
    let (row, attempts) = delivery(&store, first_claim.id).await;
    assert_eq!(row.status, "succeeded");
    assert_eq!(
        attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        [1, 2]
    );
}

/// One batch can hold a stale try and the current try of one delivery (a worker claimed it
/// again after the lease ran out, and both tries ended together): only the current one settles
/// it, and both read back.
pub async fn a_batch_with_a_stale_and_a_current_try_keeps_both(store: TestStore) {
    subscribe(&store, &[]).await;
    ingest_upload(&store, "1").await;
    let t = now();
    let stale = claim(&store, t, &[]).await.remove(0);
    let lease_ended = t + secs(LEASE.as_secs() as i64 + 1);
    let current = claim(&store, lease_ended, &[]).await.remove(0);
    assert_eq!((current.id, current.attempts), (stale.id, 2));

    let at = lease_ended + secs(1);
    let batch = [
        settle_of(&stale, Settlement::Succeeded, at),
        settle_of(&current, Settlement::Succeeded, at),
    ];
    let took = store
        .settle_deliveries(&batch, at)
        .await
        .expect("settle_deliveries");
    assert_eq!(took, [false, true], "only the current try settles");
    let (row, attempts) = delivery(&store, stale.id).await;
    assert_eq!(row.status, "succeeded");
    assert_eq!(
        attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        [1, 2],
        "the stale try is logged, the current one read from the row"
    );
}

/// A try whose settlement does not take is logged only if its delivery still exists, also when
/// the delivery's subscription is being deleted at that moment (Postgres: the deletion's
/// transaction is open while the try settles; SQLite's single writer orders the two).
pub async fn a_stale_try_leaves_no_log_row_for_a_delivery_deleted_meanwhile(store: TestStore) {
    let Some(url) = store.postgres_url.clone() else {
        return;
    };
    let subscription = subscribe(&store, &[]).await;
    ingest_upload(&store, "1").await;
    let t = now();
    let stale = claim(&store, t, &[]).await.remove(0);
    let lease_ended = t + secs(LEASE.as_secs() as i64 + 1);
    claim(&store, lease_ended, &[]).await.remove(0);

    let mut deleting = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("connect");
    let mut deletion = sqlx::Connection::begin(&mut deleting).await.expect("begin");
    sqlx::query("DELETE FROM deliveries WHERE subscription_id = $1")
        .bind(subscription.id)
        .execute(&mut *deletion)
        .await
        .expect("delete deliveries");
    sqlx::query("DELETE FROM delivery_attempts WHERE delivery_id = $1")
        .bind(stale.id)
        .execute(&mut *deletion)
        .await
        .expect("delete attempts");
    let settling = {
        let store = store.store.clone();
        let entry = settle_of(&stale, Settlement::Succeeded, lease_ended + secs(1));
        tokio::spawn(async move {
            store
                .settle_deliveries(&[entry], lease_ended + secs(1))
                .await
        })
    };
    // Let the settlement reach the row the deletion holds, then let the deletion commit.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    deletion.commit().await.expect("commit");
    let took = settling.await.expect("join").expect("settle_deliveries");
    assert_eq!(took, [false]);
    let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM delivery_attempts")
        .fetch_one(&mut deleting)
        .await
        .expect("count");
    assert_eq!(logged, 0, "no log row outlives its delivery");
}

pub async fn settling_a_deleted_delivery_does_not_fail_the_batch(store: TestStore) {
    let deleted = subscribe(&store, &[]).await;
    let kept = subscribe(&store, &[]).await;
    let event = ingest_upload(&store, "1").await;
    let t = now();
    let claims = claim(&store, t, &[]).await;
    let orphan = claim_of(&claims, event, deleted.id);
    let live = claim_of(&claims, event, kept.id);
    assert!(store
        .delete_subscription(deleted.id)
        .await
        .expect("delete_subscription"));

    let batch = [
        settle_of(&orphan, Settlement::Succeeded, t),
        settle_of(&live, Settlement::Succeeded, t),
    ];
    let took = store
        .settle_deliveries(&batch, t)
        .await
        .expect("a deleted delivery does not fail the batch");
    assert_eq!(took, [false, true]);
    assert!(store
        .get_delivery(orphan.id)
        .await
        .expect("get_delivery")
        .is_none());
    let (row, attempts) = delivery(&store, live.id).await;
    assert_eq!(row.status, "succeeded");
    assert_eq!(attempts.len(), 1);
}

pub async fn nul_characters_in_attempts_are_stored_replaced(store: TestStore) {
    subscribe(&store, &[]).await;
    ingest_upload(&store, "1").await;
    let t = now();
    let claimed = claim(&store, t, &[]).await.remove(0);
    let entry = Settle {
        delivery_id: claimed.id,
        attempts: claimed.attempts,
        subscription_id: claimed.subscription_id,
        attempt: AttemptRecord {
            started_at: t,
            duration_ms: 3.0,
            http_status: Some(500),
            error: Some("bad\0answer".into()),
            response_body: Some("{\"x\":\"\0\0\"}".into()),
        },
        settlement: Settlement::RetryAt(t + secs(60)),
    };
    let took = store
        .settle_deliveries(&[entry], t)
        .await
        .expect("settle_deliveries with NUL characters");
    assert_eq!(took, [true]);
    let (row, attempts) = delivery(&store, claimed.id).await;
    assert_eq!(row.last_error.as_deref(), Some("bad\u{FFFD}answer"));
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].error.as_deref(), Some("bad\u{FFFD}answer"));
    assert_eq!(
        attempts[0].response_body.as_deref(),
        Some("{\"x\":\"\u{FFFD}\u{FFFD}\"}")
    );
}

pub async fn deliveries_list_filters_and_pages(store: TestStore) {
    let a = subscribe(&store, &[]).await;
    let b = subscribe(&store, &[]).await;
    let mut events = Vec::new();
    for i in 0..3 {
        events.push(ingest_upload_for(&store, &format!("{i}"), &["audit"]).await);
    }
    let t = now();
    let claims = claim(&store, t, &[]).await;
    let dead = claim_of(&claims, events[0], a.id);
    assert!(settle(&store, &dead, Settlement::Dead, t).await);

    let everything = deliveries(&store, DeliveryFilter::default()).await;
    assert_eq!(
        everything.len(),
        9,
        "3 events × (2 subscriptions + 1 handler)"
    );
    let ids: Vec<Uuid> = everything.iter().map(|d| d.id).collect();
    assert_distinct(&ids);
    for pair in everything.windows(2) {
        assert!(
            (pair[0].created_at, pair[0].id) > (pair[1].created_at, pair[1].id),
            "newest first: {pair:?}"
        );
    }

    let status = |s: &str| Some(s.to_owned());
    let cases: [(DeliveryFilter, usize); 7] = [
        (by_subscription(a.id), 3),
        (
            DeliveryFilter {
                handler: Some("audit".into()),
                ..Default::default()
            },
            3,
        ),
        (by_event(events[1]), 3),
        (
            DeliveryFilter {
                status: status("dead"),
                ..Default::default()
            },
            1,
        ),
        (
            DeliveryFilter {
                status: status("pending"),
                ..Default::default()
            },
            8,
        ),
        (
            DeliveryFilter {
                subscription_id: Some(a.id),
                status: status("pending"),
                ..Default::default()
            },
            2,
        ),
        (
            DeliveryFilter {
                handler: Some("audit".into()),
                event_id: Some(events[2]),
                ..Default::default()
            },
            1,
        ),
    ];
    for (filter, count) in cases {
        let expected: Vec<Uuid> = everything
            .iter()
            .filter(|d| selects(&filter, d))
            .map(|d| d.id)
            .collect();
        assert_eq!(expected.len(), count, "{filter:?}");
        let found: Vec<Uuid> = deliveries(&store, filter.clone())
            .await
            .iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(found, expected, "{filter:?}");
    }
    let dead_one = deliveries(
        &store,
        DeliveryFilter {
            status: status("dead"),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(dead_one[0].id, dead.id);
    let unknown = DeliveryFilter {
        subscription_id: Some(Uuid::now_v7()),
        ..Default::default()
    };
    assert!(deliveries(&store, unknown).await.is_empty());

    // Pages of 2 (and of 3, which the 9 fill exactly) give the same rows in the same order.
    for limit in [2, 3] {
        let paged = collect_pages(limit, async |cursor, limit| {
            store
                .list_deliveries(
                    &DeliveryFilter::default(),
                    cursor.as_deref().map(uuid_cursor),
                    limit,
                )
                .await
                .expect("list_deliveries")
        })
        .await;
        assert_eq!(
            paged.iter().map(|d| d.id).collect::<Vec<_>>(),
            ids,
            "pages of {limit}"
        );
    }
    let pending_of_b = DeliveryFilter {
        subscription_id: Some(b.id),
        status: status("pending"),
        ..Default::default()
    };
    let paged = collect_pages(2, async |cursor, limit| {
        store
            .list_deliveries(&pending_of_b, cursor.as_deref().map(uuid_cursor), limit)
            .await
            .expect("list_deliveries")
    })
    .await;
    let paged: HashSet<Uuid> = paged.iter().map(|d| d.id).collect();
    assert_eq!(paged.len(), 3);
}

fn selects(filter: &DeliveryFilter, d: &Delivery) -> bool {
    filter
        .subscription_id
        .is_none_or(|id| d.subscription_id == Some(id))
        && filter
            .handler
            .as_ref()
            .is_none_or(|h| d.handler.as_ref() == Some(h))
        && filter.event_id.is_none_or(|id| d.event_id == id)
        && filter.status.as_ref().is_none_or(|s| &d.status == s)
}
