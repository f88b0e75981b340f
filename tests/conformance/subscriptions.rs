//! `SubscriptionStore`: create, read, list, change, pause and resume, delete, rotate secrets.

use crate::support::{
    by_event, by_subscription, claim, claim_of, collect_pages, deleted_body, deliveries, delivery,
    ingest, ingest_upload, ingest_upload_for, now, secs, settle, subscribe, upload_body,
    uuid_cursor, TestStore, LEASE,
};
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;
use vodhook::domain::Subscription;
use vodhook::storage::{Settlement, Store, SubscriptionChanges};

fn as_json(subscription: &Subscription) -> Value {
    serde_json::to_value(subscription).expect("serialise")
}

fn types(names: &[&str]) -> Vec<String> {
    names.iter().map(|t| (*t).to_owned()).collect()
}

async fn get(store: &Store, id: Uuid) -> Subscription {
    store
        .get_subscription(id)
        .await
        .expect("get_subscription")
        .unwrap_or_else(|| panic!("no subscription {id}"))
}

async fn update(
    store: &Store,
    id: Uuid,
    changes: SubscriptionChanges,
    at: DateTime<Utc>,
) -> Subscription {
    store
        .update_subscription(id, &changes, at)
        .await
        .expect("update_subscription")
        .unwrap_or_else(|| panic!("no subscription {id} to update"))
}

fn enabled(on: bool) -> SubscriptionChanges {
    SubscriptionChanges {
        enabled: Some(on),
        ..SubscriptionChanges::default()
    }
}

pub async fn subscription_is_created_and_read_back(store: TestStore) {
    let at = now();
    let wanted = types(&["NewFileUpload", "FileDeleted"]);
    let created = store
        .create_subscription(
            "https://hooks.example.com/a",
            &wanted,
            Some("ops"),
            "whsec_a",
            at,
        )
        .await
        .expect("create_subscription");
    assert_eq!(created.url, "https://hooks.example.com/a");
    assert_eq!(created.event_types, wanted);
    assert_eq!(created.description.as_deref(), Some("ops"));
    assert!(created.enabled);
    assert_eq!(created.disabled_reason, None);
    assert_eq!((created.created_at, created.updated_at), (at, at));
    assert_eq!(as_json(&get(&store, created.id).await), as_json(&created));

    let all = store
        .create_subscription("https://hooks.example.com/b", &[], None, "whsec_b", at)
        .await
        .expect("create_subscription");
    assert_ne!(all.id, created.id);
    assert!(all.event_types.is_empty());
    assert_eq!(get(&store, all.id).await.description, None);
    assert!(store
        .get_subscription(Uuid::now_v7())
        .await
        .expect("get_subscription")
        .is_none());

    // The secret is kept as given: a claim carries it.
    let event = ingest(&store, &deleted_body("1")).await.event_id;
    let claims = claim(&store, now(), &[]).await;
    assert_eq!(
        claim_of(&claims, event, created.id).secret.as_deref(),
        Some("whsec_a")
    );
    assert_eq!(
        claim_of(&claims, event, all.id).secret.as_deref(),
        Some("whsec_b")
    );
}

pub async fn subscriptions_list_newest_first_in_pages(store: TestStore) {
    let start = now();
    let mut created = Vec::new();
    for i in 0..5 {
        let url = format!("https://hooks.example.com/{i}");
        let subscription = store
            .create_subscription(&url, &[], None, "whsec_x", start + secs(i))
            .await
            .expect("create_subscription");
        created.push(subscription.id);
    }
    let newest_first: Vec<Uuid> = created.iter().rev().copied().collect();
    for limit in [2, 5, 500] {
        let listed = collect_pages(limit, async |cursor, limit| {
            store
                .list_subscriptions(cursor.as_deref().map(uuid_cursor), limit)
                .await
                .expect("list_subscriptions")
        })
        .await;
        let ids: Vec<Uuid> = listed.iter().map(|s| s.id).collect();
        assert_eq!(ids, newest_first, "pages of {limit}");
    }
}

pub async fn subscription_update_changes_only_given_fields(store: TestStore) {
    let t0 = now();
    let original = store
        .create_subscription(
            "https://hooks.example.com/old",
            &types(&["NewFileUpload"]),
            Some("first"),
            "whsec_x",
            t0,
        )
        .await
        .expect("create_subscription");
    let id = original.id;

    let changed = update(
        &store,
        id,
        SubscriptionChanges {
            url: Some("https://hooks.example.com/new".into()),
            ..SubscriptionChanges::default()
        },
        t0 + secs(1),
    )
    .await;
    assert_eq!(changed.url, "https://hooks.example.com/new");
    assert_eq!(changed.event_types, original.event_types);
    assert_eq!(changed.description.as_deref(), Some("first"), "untouched");
    assert!(changed.enabled);
    assert_eq!(changed.created_at, t0);
    assert_eq!(changed.updated_at, t0 + secs(1));

    let changed = update(
        &store,
        id,
        SubscriptionChanges {
            event_types: Some(types(&["FileDeleted"])),
            description: Some(Some("second".into())),
            ..SubscriptionChanges::default()
        },
        t0 + secs(2),
    )
    .await;
    assert_eq!(changed.event_types, types(&["FileDeleted"]));
    assert_eq!(changed.description.as_deref(), Some("second"));
    assert_eq!(changed.url, "https://hooks.example.com/new", "untouched");

    let cleared = SubscriptionChanges {
        description: Some(None),
        ..SubscriptionChanges::default()
    };
    let changed = update(&store, id, cleared, t0 + secs(3)).await;
    assert_eq!(changed.description, None, "Some(None) clears it");
    assert_eq!(changed.event_types, types(&["FileDeleted"]));

    let changed = update(&store, id, enabled(false), t0 + secs(4)).await;
    assert!(!changed.enabled);
    assert_eq!(changed.description, None);
    assert_eq!(changed.url, "https://hooks.example.com/new");
    let changed = update(&store, id, enabled(true), t0 + secs(5)).await;
    assert!(changed.enabled);
    assert_eq!(changed.disabled_reason, None);
    assert_eq!(as_json(&get(&store, id).await), as_json(&changed));

    // The new event types decide which events it gets.
    let upload_event = ingest_upload(&store, "1").await;
    assert!(deliveries(&store, by_event(upload_event)).await.is_empty());
    let deleted_event = ingest(&store, &deleted_body("1")).await.event_id;
    assert_eq!(deliveries(&store, by_event(deleted_event)).await.len(), 1);

    // An empty list means every type.
    let changed = update(
        &store,
        id,
        SubscriptionChanges {
            event_types: Some(Vec::new()),
            ..SubscriptionChanges::default()
        },
        t0 + secs(6),
    )
    .await;
    assert!(changed.event_types.is_empty());
    let later_upload = ingest_upload(&store, "2").await;
    assert_eq!(deliveries(&store, by_event(later_upload)).await.len(), 1);

    let missing = store
        .update_subscription(Uuid::now_v7(), &enabled(false), now())
        .await
        .expect("update_subscription");
    assert!(missing.is_none());
}

pub async fn deleting_a_subscription_deletes_its_deliveries(store: TestStore) {
    let doomed = subscribe(&store, &[]).await;
    let kept = subscribe(&store, &[]).await;
    let first = ingest_upload(&store, "1").await;
    let second = ingest_upload(&store, "2").await;
    let claims = claim(&store, now(), &[]).await;
    let tried = claim_of(&claims, first, doomed.id);
    assert!(
        settle(
            &store,
            &tried,
            Settlement::RetryAt(now() + secs(600)),
            now()
        )
        .await
    );
    let doomed_deliveries = deliveries(&store, by_subscription(doomed.id)).await;
    assert_eq!(doomed_deliveries.len(), 2);

    assert!(store
        .delete_subscription(doomed.id)
        .await
        .expect("delete_subscription"));
    assert!(store
        .get_subscription(doomed.id)
        .await
        .expect("get_subscription")
        .is_none());
    assert!(deliveries(&store, by_subscription(doomed.id))
        .await
        .is_empty());
    for d in &doomed_deliveries {
        assert!(store
            .get_delivery(d.id)
            .await
            .expect("get_delivery")
            .is_none());
    }
    assert!(
        !store
            .delete_subscription(doomed.id)
            .await
            .expect("delete_subscription"),
        "already gone"
    );

    // The other subscription and the events stay.
    assert_eq!(deliveries(&store, by_subscription(kept.id)).await.len(), 2);
    for event in [first, second] {
        assert!(store.get_event(event).await.expect("get_event").is_some());
    }
}

/// Four tasks ingesting 40 uploads each, already under way when this returns.
async fn ingest_concurrently(
    store: &TestStore,
    prefix: &'static str,
) -> Vec<tokio::task::JoinHandle<()>> {
    let ingests = (0..4)
        .map(|task| {
            let store: Store = store.store.clone();
            tokio::spawn(async move {
                for i in 0..40 {
                    ingest_upload(&store, &format!("{prefix}-{task}-{i}")).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    ingests
}

pub async fn a_subscription_deleted_during_ingests_leaves_no_delivery_behind(store: TestStore) {
    let doomed = subscribe(&store, &[]).await;
    let ingests = ingest_concurrently(&store, "race").await;
    assert!(store
        .delete_subscription(doomed.id)
        .await
        .expect("delete_subscription"));
    for ingest in ingests {
        ingest.await.expect("ingest task");
    }
    let left = deliveries(&store, by_subscription(doomed.id)).await;
    assert!(
        left.is_empty(),
        "deliveries of a deleted subscription: {left:?}"
    );
}

pub async fn a_subscription_disabled_during_ingests_leaves_no_pending_delivery(store: TestStore) {
    let paused = subscribe(&store, &[]).await;
    let ingests = ingest_concurrently(&store, "pause").await;
    store
        .update_subscription(paused.id, &enabled(false), now())
        .await
        .expect("update_subscription")
        .expect("the subscription exists");
    for ingest in ingests {
        ingest.await.expect("ingest task");
    }
    let pending: Vec<_> = deliveries(&store, by_subscription(paused.id))
        .await
        .into_iter()
        .filter(|d| d.status != "paused")
        .collect();
    assert!(
        pending.is_empty(),
        "deliveries of a disabled subscription that are not paused: {pending:?}"
    );
}

pub async fn rotating_a_secret_keeps_the_previous_one_until_expiry(store: TestStore) {
    let subscription = store
        .create_subscription("https://hooks.example.com/r", &[], None, "whsec_old", now())
        .await
        .expect("create_subscription");
    let until = now() + secs(3600);
    let rotated_at = now() + secs(1);
    assert!(store
        .rotate_subscription_secret(subscription.id, "whsec_new", until, rotated_at)
        .await
        .expect("rotate_subscription_secret"));
    assert!(!store
        .rotate_subscription_secret(Uuid::now_v7(), "whsec_x", until, rotated_at)
        .await
        .expect("rotate_subscription_secret"));
    assert_eq!(get(&store, subscription.id).await.updated_at, rotated_at);

    let event = ingest_upload(&store, "1").await;
    let claims = claim(&store, now(), &[]).await;
    let claimed = claim_of(&claims, event, subscription.id);
    assert_eq!(claimed.secret.as_deref(), Some("whsec_new"));
    assert_eq!(claimed.previous_secret.as_deref(), Some("whsec_old"));
    assert_eq!(claimed.previous_secret_expires_at, Some(until));

    // Rotating again: the current one becomes the previous one.
    let until_2 = now() + secs(7200);
    assert!(store
        .rotate_subscription_secret(subscription.id, "whsec_newer", until_2, now())
        .await
        .expect("rotate_subscription_secret"));
    let event = ingest_upload(&store, "2").await;
    let claims = claim(&store, now(), &[]).await;
    let claimed = claim_of(&claims, event, subscription.id);
    assert_eq!(claimed.secret.as_deref(), Some("whsec_newer"));
    assert_eq!(claimed.previous_secret.as_deref(), Some("whsec_new"));
    assert_eq!(claimed.previous_secret_expires_at, Some(until_2));
}

pub async fn disabling_pauses_and_enabling_resumes_deliveries(store: TestStore) {
    let paused = subscribe(&store, &[]).await;
    let other = subscribe(&store, &[]).await;
    let first = ingest_upload_for(&store, "1", &["audit"]).await;
    let t = now();
    let claims = claim(&store, t, &[]).await;
    let in_flight = claim_of(&claims, first, paused.id);
    let second = ingest_upload_for(&store, "2", &["audit"]).await;

    let disabled_at = t + secs(1);
    let changed = update(&store, paused.id, enabled(false), disabled_at).await;
    assert!(!changed.enabled);
    for d in deliveries(&store, by_subscription(paused.id)).await {
        assert_eq!(d.status, "paused", "{d:?}");
    }
    for d in deliveries(&store, by_subscription(other.id)).await {
        assert_eq!(d.status, "pending", "another subscription's: {d:?}");
    }
    let handler_deliveries = deliveries(
        &store,
        vodhook::storage::DeliveryFilter {
            handler: Some("audit".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(handler_deliveries.len(), 2);
    assert!(handler_deliveries.iter().all(|d| d.status == "pending"));

    // Paused deliveries are not claimed, even once the lease ended.
    let after_lease = t + secs(LEASE.as_secs() as i64 + 1);
    let claims = claim(&store, after_lease, &[]).await;
    assert!(
        claims.iter().all(|c| c.subscription_id != Some(paused.id)),
        "{claims:?}"
    );
    assert_eq!(claims.len(), 2, "the other subscription's two");

    // The try in flight when it was paused settles, and the delivery stays paused.
    assert!(
        settle(
            &store,
            &in_flight,
            Settlement::RetryAt(disabled_at),
            disabled_at
        )
        .await
    );
    assert_eq!(delivery(&store, in_flight.id).await.0.status, "paused");

    let enabled_at = after_lease + secs(1);
    let changed = update(&store, paused.id, enabled(true), enabled_at).await;
    assert!(changed.enabled);
    assert_eq!(changed.disabled_reason, None);
    let resumed = deliveries(&store, by_subscription(paused.id)).await;
    assert_eq!(resumed.len(), 2);
    for d in &resumed {
        assert_eq!(d.status, "pending", "{d:?}");
        assert!(d.next_attempt_at <= enabled_at, "due by then: {d:?}");
    }
    let claims = claim(&store, enabled_at, &[]).await;
    let mut claimed: Vec<Uuid> = claims
        .iter()
        .filter(|c| c.subscription_id == Some(paused.id))
        .map(|c| c.event_id)
        .collect();
    claimed.sort();
    let mut expected = vec![first, second];
    expected.sort();
    assert_eq!(claimed, expected, "both are due once enabled");
}

/// "enabling ... makes its paused deliveries due now": also one that was waiting for a retry.
pub async fn enabling_makes_backed_off_paused_deliveries_due_now(store: TestStore) {
    let subscription = subscribe(&store, &[]).await;
    let event = ingest(&store, &upload_body("1")).await.event_id;
    let t = now();
    let claims = claim(&store, t, &[]).await;
    let claimed = claim_of(&claims, event, subscription.id);
    assert!(settle(&store, &claimed, Settlement::RetryAt(t + secs(3600)), t).await);

    update(&store, subscription.id, enabled(false), t + secs(60)).await;
    assert_eq!(delivery(&store, claimed.id).await.0.status, "paused");
    let enabled_at = t + secs(120);
    update(&store, subscription.id, enabled(true), enabled_at).await;

    let (resumed, _) = delivery(&store, claimed.id).await;
    assert_eq!(resumed.status, "pending");
    assert!(
        resumed.next_attempt_at <= enabled_at,
        "enabled at {enabled_at}, but due only at {}",
        resumed.next_attempt_at
    );
    let claims = claim(&store, enabled_at, &[]).await;
    assert_eq!(
        claims.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![claimed.id],
        "due now"
    );
}
