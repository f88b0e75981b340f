//! `retry_delivery_now`: what a manual retry schedules, and what it leaves alone.

use crate::support::{
    claim, delivery, ingest_upload, now, secs, settle, subscribe, TestStore, LEASE, MAX_ATTEMPTS,
};
use chrono::{DateTime, Utc};
use uuid::Uuid;
use vodhook::storage::{ClaimedDelivery, RetryRequest, Settlement, Store, SubscriptionChanges};

async fn retry(store: &Store, id: Uuid, at: DateTime<Utc>) -> RetryRequest {
    store
        .retry_delivery_now(id, at)
        .await
        .expect("retry_delivery_now")
}

/// One subscription, one event, its delivery claimed at `t`.
async fn claimed_delivery(store: &Store, t: DateTime<Utc>) -> ClaimedDelivery {
    subscribe(store, &[]).await;
    ingest_upload(store, "1").await;
    let mut claims = claim(store, t, &[]).await;
    assert_eq!(claims.len(), 1);
    claims.remove(0)
}

pub async fn retrying_an_unknown_delivery_is_not_found(store: TestStore) {
    subscribe(&store, &[]).await;
    ingest_upload(&store, "1").await;
    assert_eq!(
        retry(&store, Uuid::now_v7(), now()).await,
        RetryRequest::NotFound
    );
}

pub async fn retrying_a_succeeded_delivery_is_refused(store: TestStore) {
    let t = now();
    let claimed = claimed_delivery(&store, t).await;
    assert!(settle(&store, &claimed, Settlement::Succeeded, t).await);
    assert_eq!(
        retry(&store, claimed.id, t + secs(1)).await,
        RetryRequest::AlreadySucceeded
    );
    let (row, _) = delivery(&store, claimed.id).await;
    assert_eq!(row.status, "succeeded");
    assert_eq!(row.completed_at, Some(t));
}

pub async fn retrying_an_in_flight_delivery_is_refused(store: TestStore) {
    subscribe(&store, &[]).await;
    ingest_upload(&store, "1").await;
    let t = now();

    // Never tried yet: its first try is coming anyway.
    let queued = crate::support::deliveries(&store, Default::default()).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(retry(&store, queued[0].id, t).await, RetryRequest::InFlight);
    let (row, _) = delivery(&store, queued[0].id).await;
    assert_eq!((row.attempts, row.max_attempts), (0, MAX_ATTEMPTS));
    assert_eq!(row.next_attempt_at, queued[0].next_attempt_at, "left alone");

    // Just claimed: a worker is trying it.
    let claimed = claim(&store, t, &[]).await.remove(0);
    assert_eq!(
        retry(&store, claimed.id, t + secs(1)).await,
        RetryRequest::InFlight
    );
    let (row, _) = delivery(&store, claimed.id).await;
    assert_eq!(row.attempts, 1);
    assert!(
        claim(&store, t + secs(2), &[]).await.is_empty(),
        "still leased"
    );

    // Once the lease ended nobody is trying it.
    let lease_ended = t + secs(LEASE.as_secs() as i64 + 1);
    assert_eq!(
        retry(&store, claimed.id, lease_ended).await,
        RetryRequest::Scheduled
    );
}

pub async fn retrying_for_a_disabled_subscription_is_refused(store: TestStore) {
    let t = now();
    let claimed = claimed_delivery(&store, t).await;
    assert!(settle(&store, &claimed, Settlement::Dead, t).await);
    let subscription = claimed.subscription_id.expect("a subscription's delivery");
    let off = SubscriptionChanges {
        enabled: Some(false),
        ..SubscriptionChanges::default()
    };
    store
        .update_subscription(subscription, &off, t + secs(1))
        .await
        .expect("update_subscription");

    assert_eq!(
        retry(&store, claimed.id, t + secs(2)).await,
        RetryRequest::SubscriptionDisabled
    );
    let (row, _) = delivery(&store, claimed.id).await;
    assert_eq!(row.status, "dead", "left alone");
    assert_eq!(row.max_attempts, MAX_ATTEMPTS);
}

pub async fn retrying_a_dead_delivery_gives_exactly_one_more_try(store: TestStore) {
    let t = now();
    let claimed = claimed_delivery(&store, t).await;
    assert!(settle(&store, &claimed, Settlement::Dead, t).await);

    let retried_at = t + secs(10);
    assert_eq!(
        retry(&store, claimed.id, retried_at).await,
        RetryRequest::Scheduled
    );
    let (row, _) = delivery(&store, claimed.id).await;
    assert_eq!(row.status, "pending");
    assert_eq!(row.attempts, 1);
    assert_eq!(row.max_attempts, 2, "one more try: attempts + 1");
    assert_eq!(row.next_attempt_at, retried_at, "due now");
    assert_eq!(row.completed_at, None);

    let again = claim(&store, retried_at, &[]).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, claimed.id);
    assert_eq!(again[0].attempts, again[0].max_attempts, "the last try");
    assert!(settle(&store, &again[0], Settlement::Dead, retried_at + secs(1)).await);

    // Each retry of a dead delivery gives one more.
    let retried_again = retried_at + secs(20);
    assert_eq!(
        retry(&store, claimed.id, retried_again).await,
        RetryRequest::Scheduled
    );
    let (row, attempts) = delivery(&store, claimed.id).await;
    assert_eq!((row.attempts, row.max_attempts), (2, 3));
    assert_eq!(
        attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        [1, 2],
        "the attempt log, oldest first"
    );
    assert!(attempts[0].started_at < attempts[1].started_at);
}

pub async fn retrying_a_backed_off_delivery_makes_it_due_now(store: TestStore) {
    let t = now();
    let claimed = claimed_delivery(&store, t).await;
    assert!(settle(&store, &claimed, Settlement::RetryAt(t + secs(3600)), t).await);
    let retried_at = t + secs(60);
    assert!(
        claim(&store, retried_at, &[]).await.is_empty(),
        "backing off"
    );

    assert_eq!(
        retry(&store, claimed.id, retried_at).await,
        RetryRequest::Scheduled
    );
    let (row, _) = delivery(&store, claimed.id).await;
    assert_eq!(row.status, "pending");
    assert_eq!(row.next_attempt_at, retried_at);
    assert_eq!(
        row.max_attempts, MAX_ATTEMPTS,
        "a pending delivery keeps its tries"
    );
    let again = claim(&store, retried_at, &[]).await;
    assert_eq!(again.len(), 1, "due now");
    assert_eq!(again[0].id, claimed.id);
    assert_eq!(again[0].attempts, 2);
}
