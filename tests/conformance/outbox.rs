//! The outbox: deliveries written with their event, and claims (leases, handlers, limits, races).

use crate::support::{
    assert_distinct, between, by_event, claim, claim_of, deleted_body, deliveries, delivery, event,
    fixture, incoming_all, ingest, ingest_upload, ingest_with, now, parse, secs, settle, subscribe,
    upload, upload_body, Backend, TestStore, LEASE, MAX_ATTEMPTS,
};
use std::collections::HashSet;
use uuid::Uuid;
use vodhook::storage::{Settlement, Store, SubscriptionChanges};

/// The targets of an event's deliveries: subscription ids and handler names.
async fn targets(store: &Store, event: Uuid) -> HashSet<String> {
    let found = deliveries(store, by_event(event)).await;
    let targets: HashSet<String> = found
        .iter()
        .map(|d| match (d.subscription_id, &d.handler) {
            (Some(id), None) => id.to_string(),
            (None, Some(handler)) => format!("handler:{handler}"),
            _ => panic!("a delivery has exactly one target: {d:?}"),
        })
        .collect();
    assert_eq!(
        targets.len(),
        found.len(),
        "one delivery per target: {found:?}"
    );
    targets
}

pub async fn ingest_enqueues_per_matching_enabled_subscription_and_handler(store: TestStore) {
    let all = subscribe(&store, &[]).await;
    let uploads = subscribe(&store, &["NewFileUpload"]).await;
    let deletes = subscribe(&store, &["FileDeleted"]).await;
    let several = subscribe(&store, &["ProcedureStateChanged", "NewFileUpload"]).await;
    let disabled = subscribe(&store, &[]).await;
    let off = SubscriptionChanges {
        enabled: Some(false),
        ..SubscriptionChanges::default()
    };
    store
        .update_subscription(disabled.id, &off, now())
        .await
        .expect("update_subscription");

    let before = now();
    let upload_event = ingest_with(
        &store,
        &fixture("v3-newfileupload-full.json"),
        &["audit", "thumbs"],
    )
    .await
    .event_id;
    let expected: HashSet<String> = [
        all.id.to_string(),
        uploads.id.to_string(),
        several.id.to_string(),
        "handler:audit".into(),
        "handler:thumbs".into(),
    ]
    .into();
    assert_eq!(targets(&store, upload_event).await, expected);
    for d in deliveries(&store, by_event(upload_event)).await {
        assert_eq!(d.event_id, upload_event);
        assert_eq!(d.status, "pending");
        assert_eq!(d.attempts, 0);
        assert_eq!(d.max_attempts, MAX_ATTEMPTS);
        assert_eq!(d.completed_at, None);
        assert_eq!(d.last_error, None);
        assert!(d.next_attempt_at <= now(), "due at once: {d:?}");
        assert!(d.created_at >= before - secs(5), "{d:?}");
    }

    let deleted_event = ingest(&store, &deleted_body("24961954183381008"))
        .await
        .event_id;
    let expected: HashSet<String> = [all.id.to_string(), deletes.id.to_string()].into();
    assert_eq!(targets(&store, deleted_event).await, expected);

    let procedure = ingest(&store, &fixture("v3-procedurestatechanged.json"))
        .await
        .event_id;
    let expected: HashSet<String> = [all.id.to_string(), several.id.to_string()].into();
    assert_eq!(targets(&store, procedure).await, expected);
}

pub async fn duplicate_ingest_enqueues_nothing(store: TestStore) {
    let all = subscribe(&store, &[]).await;
    let raw = fixture("v3-newfileupload-doc-example.json");
    let first = ingest_with(&store, &raw, &["audit"]).await;
    let repeat = ingest_with(&store, &raw, &["audit", "thumbs"]).await;
    let v2_copy = ingest_with(
        &store,
        &fixture("v2-newfileupload-doc-example.json"),
        &["audit"],
    )
    .await;
    assert!(repeat.duplicate && v2_copy.duplicate);

    let expected: HashSet<String> = [all.id.to_string(), "handler:audit".into()].into();
    assert_eq!(targets(&store, first.event_id).await, expected);
    let everything = deliveries(&store, vodhook::storage::DeliveryFilter::default()).await;
    assert_eq!(everything.len(), 2, "{everything:?}");
}

pub async fn claim_carries_what_a_delivery_needs(store: TestStore) {
    let subscription = store
        .create_subscription(
            "https://hooks.example.com/c",
            &[],
            None,
            "whsec_current",
            now(),
        )
        .await
        .expect("create_subscription");
    let raw = fixture("v3-newfileupload-full.json");
    let outcome = ingest_with(&store, &raw, &["audit"]).await;
    let stored = event(&store, outcome.event_id).await;
    let file_id = stored.file_id.clone().expect("a file");
    let record = upload(&store, &file_id).await;

    let claims = claim(&store, now(), &[]).await;
    assert_eq!(
        claims.len(),
        1,
        "the handler's delivery is not claimed: {claims:?}"
    );
    let claimed = &claims[0];
    let queued = deliveries(&store, by_event(outcome.event_id)).await;
    let queued = queued
        .iter()
        .find(|d| d.subscription_id == Some(subscription.id))
        .expect("the subscription's delivery");
    assert_eq!(claimed.id, queued.id);
    assert_eq!(claimed.attempts, 1, "the claim counts as an attempt");
    assert_eq!(claimed.max_attempts, MAX_ATTEMPTS);
    assert_eq!(claimed.event_id, outcome.event_id);
    assert_eq!(claimed.event_type, stored.event_type);
    assert_eq!(claimed.received_at, stored.received_at);
    assert_eq!(claimed.file_id.as_deref(), Some(file_id.as_str()));
    assert_eq!(claimed.raw_body, raw, "the exact bytes");
    assert_eq!(claimed.handler, None);
    assert_eq!(claimed.subscription_id, Some(subscription.id));
    assert_eq!(claimed.url.as_deref(), Some(subscription.url.as_str()));
    assert_eq!(claimed.secret.as_deref(), Some("whsec_current"));
    assert_eq!(claimed.previous_secret, None);
    assert_eq!(claimed.previous_secret_expires_at, None);
    assert_eq!(
        claimed.upload.as_ref(),
        Some(&record),
        "the upload record of its file"
    );
    let (stored_delivery, attempts) = delivery(&store, claimed.id).await;
    assert_eq!(stored_delivery.attempts, 1);
    assert_eq!(stored_delivery.status, "pending");
    assert!(attempts.is_empty(), "a claim is not a logged attempt yet");

    // An event about no upload record.
    let edit = ingest(&store, &fixture("v3-editmediacomplete.json"))
        .await
        .event_id;
    let claims = claim(&store, now(), &[]).await;
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].event_id, edit);
    assert_eq!(claims[0].event_type, "EditMediaComplete");
    assert!(claims[0].upload.is_none());
}

pub async fn claimed_delivery_is_hidden_until_its_lease_ends(store: TestStore) {
    subscribe(&store, &[]).await;
    ingest_upload(&store, "1").await;
    let t = now();
    let lease = secs(LEASE.as_secs() as i64);
    let first = claim(&store, t, &[]).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].attempts, 1);

    assert!(
        claim(&store, t, &[]).await.is_empty(),
        "hidden while leased"
    );
    assert!(
        claim(&store, t + lease - secs(1), &[]).await.is_empty(),
        "hidden while leased"
    );

    let again = claim(&store, t + lease + secs(1), &[]).await;
    assert_eq!(again.len(), 1, "claimable again once the lease ended");
    assert_eq!(again[0].id, first[0].id);
    assert_eq!(again[0].attempts, 2, "each claim counts");
    assert!(
        claim(&store, t + lease + secs(2), &[]).await.is_empty(),
        "the new claim holds a new lease"
    );
    assert_eq!(delivery(&store, first[0].id).await.0.attempts, 2);
}

pub async fn handler_deliveries_are_claimed_only_for_their_handlers(store: TestStore) {
    let raw = fixture("v3-newfileupload-full.json");
    let event_id = ingest_with(&store, &raw, &["audit", "thumbs"])
        .await
        .event_id;
    let t = now();
    assert!(claim(&store, t, &[]).await.is_empty());
    assert!(claim(&store, t, &["other"]).await.is_empty());

    let audit = claim(&store, t, &["audit"]).await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].handler.as_deref(), Some("audit"));
    assert_eq!(audit[0].event_id, event_id);
    assert_eq!(audit[0].subscription_id, None);
    assert_eq!(audit[0].url, None);
    assert_eq!(audit[0].secret, None);
    assert_eq!(audit[0].raw_body, raw);
    assert!(audit[0].upload.is_some());

    let rest = claim(&store, t, &["audit", "thumbs"]).await;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].handler.as_deref(), Some("thumbs"));
}

pub async fn claim_respects_limit_and_takes_due_rows_only(store: TestStore) {
    subscribe(&store, &[]).await;
    for i in 0..5 {
        ingest_upload(&store, &format!("{i}")).await;
    }
    let t = now();
    let mut claimed = Vec::new();
    for expected in [2, 2, 1, 0] {
        let batch = store
            .claim_due_deliveries(t, LEASE, 2, &[])
            .await
            .expect("claim_due_deliveries");
        assert_eq!(batch.len(), expected);
        claimed.extend(batch);
    }
    let ids: Vec<Uuid> = claimed.iter().map(|c| c.id).collect();
    assert_distinct(&ids);

    // Settled rows are not due: succeeded and dead ones never, a retry at its time.
    let retry_at = t + secs(3600);
    assert!(settle(&store, &claimed[0], Settlement::Succeeded, t).await);
    assert!(settle(&store, &claimed[1], Settlement::Dead, t).await);
    assert!(settle(&store, &claimed[2], Settlement::RetryAt(retry_at), t).await);
    let lease_ended = t + secs(LEASE.as_secs() as i64 + 1);
    let again: HashSet<Uuid> = claim(&store, lease_ended, &[])
        .await
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(
        again,
        HashSet::from([ids[3], ids[4]]),
        "only the unsettled ones"
    );
    let later: HashSet<Uuid> = claim(&store, retry_at + secs(1), &[])
        .await
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(later, HashSet::from([ids[2], ids[3], ids[4]]));
}

/// Claims of the deliveries of named events, as the worker makes for events its process stored.
async fn claim_events(
    store: &Store,
    events: &[Uuid],
    at: chrono::DateTime<chrono::Utc>,
    handlers: &[&str],
) -> Vec<vodhook::storage::ClaimedDelivery> {
    let handlers: Vec<String> = handlers.iter().map(|h| (*h).to_owned()).collect();
    let claims = store
        .claim_deliveries_of_events(events, at, LEASE, 100, &handlers)
        .await
        .expect("claim_deliveries_of_events");
    assert!(!claims.more_due, "all claimable rows fit in the limit");
    claims.claimed
}

pub async fn claim_by_event_takes_those_events_due_rows_for_this_process_only(store: TestStore) {
    let subscription = subscribe(&store, &[]).await;
    let raw = fixture("v3-newfileupload-full.json");
    let first = ingest_with(&store, &raw, &["audit", "elsewhere"])
        .await
        .event_id;
    let second = ingest_upload(&store, "second").await;
    let third = ingest_upload(&store, "third").await;
    let t = now();
    assert!(claim_events(&store, &[], t, &["audit"]).await.is_empty());
    assert!(claim_events(&store, &[Uuid::now_v7()], t, &["audit"])
        .await
        .is_empty());

    // The first event's deliveries for the subscription and this process's handler, not the
    // handler only another process has; nothing of the other events.
    let claimed = claim_events(&store, &[first], t, &["audit"]).await;
    let targets: HashSet<(Option<Uuid>, Option<String>)> = claimed
        .iter()
        .map(|c| (c.subscription_id, c.handler.clone()))
        .collect();
    assert_eq!(
        targets,
        HashSet::from([
            (Some(subscription.id), None),
            (None, Some("audit".to_owned()))
        ])
    );
    for c in &claimed {
        assert_eq!(c.event_id, first);
        assert_eq!(c.attempts, 1, "a claim counts as an attempt");
        assert_eq!(c.raw_body, raw);
        assert!(c.upload.is_some(), "the record travels with the claim");
    }
    let http = claim_of(&claimed, first, subscription.id);
    assert_eq!(http.url.as_deref(), Some(subscription.url.as_str()));
    assert!(http.secret.is_some());

    // Claimed rows are leased: neither claim finds them again until the lease ends.
    assert!(claim_events(&store, &[first], t, &["audit"])
        .await
        .is_empty());
    let scanned = claim(&store, t, &["audit"]).await;
    let scanned_events: HashSet<Uuid> = scanned.iter().map(|c| c.event_id).collect();
    assert_eq!(scanned_events, HashSet::from([second, third]));
    let lease_ended = t + secs(LEASE.as_secs() as i64 + 1);
    let again = claim_events(&store, &[first, second], lease_ended, &["audit"]).await;
    assert_eq!(
        again.len(),
        3,
        "both of the first, one of the second: {again:?}"
    );

    // A retry is claimed by event only once it is due; a settled delivery never again.
    let of_second = claim_of(&again, second, subscription.id);
    let retry_at = lease_ended + secs(3600);
    assert!(
        settle(
            &store,
            &of_second,
            Settlement::RetryAt(retry_at),
            lease_ended
        )
        .await
    );
    let of_first = claim_of(&again, first, subscription.id);
    assert!(settle(&store, &of_first, Settlement::Succeeded, lease_ended).await);
    let later = lease_ended + secs(LEASE.as_secs() as i64 + 1);
    assert!(claim_events(&store, &[first, second], later, &[])
        .await
        .is_empty());
    let due = claim_events(&store, &[first, second], retry_at + secs(1), &[]).await;
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, of_second.id);
    assert_eq!(due[0].attempts, 3);
}

pub async fn claim_by_event_takes_at_most_its_limit_and_leaves_the_rest_due(store: TestStore) {
    for _ in 0..3 {
        subscribe(&store, &[]).await;
    }
    let event = ingest_upload(&store, "limited").await;
    let t = now();
    let handlers: Vec<String> = Vec::new();
    let first = store
        .claim_deliveries_of_events(&[event], t, LEASE, 2, &handlers)
        .await
        .expect("claim_deliveries_of_events");
    assert_eq!(first.claimed.len(), 2, "no more than the limit");
    assert!(first.more_due, "one delivery is left over");
    let rest = claim_events(&store, &[event], t, &[]).await;
    assert_eq!(rest.len(), 1, "the rest stays due: {rest:?}");
    let ids: Vec<Uuid> = first.claimed.iter().chain(&rest).map(|c| c.id).collect();
    assert_distinct(&ids);

    // A limit the claimable rows fill exactly leaves nothing over.
    let exact = ingest_upload(&store, "exact").await;
    let claims = store
        .claim_deliveries_of_events(&[exact], t, LEASE, 3, &handlers)
        .await
        .expect("claim_deliveries_of_events");
    assert_eq!(claims.claimed.len(), 3);
    assert!(!claims.more_due, "nothing is left over");
}

pub async fn concurrent_claimers_never_share_a_delivery(store: TestStore) {
    subscribe(&store, &[]).await;
    for i in 0..30 {
        ingest_upload(&store, &format!("{i}")).await;
    }
    let t = now();
    let claimers: Vec<_> = (0..4)
        .map(|_| {
            let store: Store = store.store.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                loop {
                    let batch = store
                        .claim_due_deliveries(t, LEASE, 3, &[])
                        .await
                        .expect("claim_due_deliveries");
                    if batch.is_empty() {
                        return ids;
                    }
                    ids.extend(batch.iter().map(|c| c.id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.expect("claimer"));
    }
    assert_distinct(&all);
    assert_eq!(all.len(), 30, "every delivery claimed once");
}

/// A batch stored with a lease comes back with its new events' deliveries already claimed, with
/// all a worker needs (Postgres; SQLite stores them unclaimed, as without a lease). Events
/// without a lease, and events whose record the batch did not write, are left to be claimed.
pub async fn a_batch_can_claim_its_deliveries_as_it_stores_them(store: TestStore) {
    let subscription = subscribe(&store, &[]).await;
    let bodies = [
        upload_body("7001"),
        upload_body("7002"),
        // Names a file whose record the batch does not write.
        fixture("v3-filedeleted.json"),
        // Names no file.
        fixture("v3-editmediacomplete.json"),
    ];
    let events: Vec<_> = bodies.iter().map(|b| parse(b)).collect();
    let mut batch = incoming_all(&events, &bodies, &["audit"]);
    for i in [0, 2, 3] {
        batch[i].lease = Some(LEASE);
    }
    let before = now();
    let outcomes: Vec<_> = store
        .ingest_batch(&batch)
        .await
        .into_iter()
        .map(|o| o.expect("stored"))
        .collect();
    let [leased, unleased, no_record, no_file] = &outcomes[..] else {
        panic!("one outcome per event: {outcomes:?}");
    };
    assert!(unleased.claimed.is_empty(), "no lease was asked for");
    assert!(
        no_record.claimed.is_empty(),
        "an event naming a file whose record the batch did not write is left to a claim"
    );
    let left_to_claim: Vec<Uuid> = match store.backend {
        Backend::Postgres => {
            assert_eq!(leased.claimed.len(), 2, "{:?}", leased.claimed);
            assert_eq!(no_file.claimed.len(), 2, "{:?}", no_file.claimed);
            assert!(no_file
                .claimed
                .iter()
                .all(|c| c.upload.is_none() && c.file_id.is_none()));
            let stored = event(&store, leased.event_id).await;
            let record = upload(&store, "7001").await;
            for claim in &leased.claimed {
                assert_eq!(claim.attempts, 1, "the claim counts as the first attempt");
                assert_eq!(claim.max_attempts, MAX_ATTEMPTS);
                assert_eq!(claim.event_id, leased.event_id);
                assert_eq!(claim.event_type, "NewFileUpload");
                assert_eq!(claim.received_at, stored.received_at);
                assert_eq!(claim.file_id.as_deref(), Some("7001"));
                assert_eq!(claim.raw_body, bodies[0]);
                assert_eq!(claim.upload.as_ref(), Some(&record), "the record as stored");
                match (&claim.handler, claim.subscription_id) {
                    (Some(handler), None) => assert_eq!(handler, "audit"),
                    (None, Some(id)) => {
                        assert_eq!(id, subscription.id);
                        assert_eq!(claim.url.as_deref(), Some(subscription.url.as_str()));
                        assert!(claim.secret.is_some(), "the signing secret");
                    }
                    other => panic!("one target per delivery: {other:?}"),
                }
            }
            vec![unleased.event_id, no_record.event_id]
        }
        Backend::Sqlite => {
            assert!(
                leased.claimed.is_empty() && no_file.claimed.is_empty(),
                "SQLite claims nothing at ingest"
            );
            vec![
                leased.event_id,
                unleased.event_id,
                no_record.event_id,
                no_file.event_id,
            ]
        }
    };
    let claims = claim_events(&store, &left_to_claim, between(before, now()), &["audit"]).await;
    assert_eq!(claims.len(), 2 * left_to_claim.len(), "{claims:?}");
    let by_claim = claim_of(&claims, left_to_claim[0], subscription.id);
    for claim in leased
        .claimed
        .iter()
        .filter(|c| c.subscription_id.is_some())
    {
        assert_eq!(
            (&claim.url, &claim.secret, &claim.previous_secret),
            (&by_claim.url, &by_claim.secret, &by_claim.previous_secret),
            "the target as a claim reads it"
        );
    }
    assert!(
        claim(&store, now(), &["audit"]).await.is_empty(),
        "every row is under a lease"
    );
    // Claims given back are claimable again at once, their attempt uncounted (both stores).
    let given_back: Vec<(Uuid, i32)> = claims.iter().map(|c| (c.id, c.attempts)).collect();
    store
        .release_claims(&given_back)
        .await
        .expect("release_claims");
    let again = ours(claim(&store, now(), &["audit"]).await, &claims);
    assert_eq!(again.len(), claims.len(), "{again:?}");
    assert!(again.iter().all(|c| c.attempts == 1), "{again:?}");
    if matches!(store.backend, Backend::Postgres) {
        settle_and_give_back(&store, &leased.claimed).await;
        outlive_the_lease(&store, &no_file.claimed).await;
    }
}

/// Settles one of the deliveries claimed at ingest and gives them all back: the settled one
/// stays settled, the others are claimable at once, the claim's attempt uncounted.
async fn settle_and_give_back(store: &Store, claimed: &[vodhook::storage::ClaimedDelivery]) {
    let (done, rest) = claimed.split_first().expect("a claim");
    assert!(
        settle(store, done, Settlement::Succeeded, now()).await,
        "the claim's fence holds"
    );
    let claims: Vec<(Uuid, i32)> = claimed.iter().map(|c| (c.id, c.attempts)).collect();
    store.release_claims(&claims).await.expect("release_claims");
    let settled = delivery(store, done.id).await.0;
    assert_eq!(
        (settled.status.as_str(), settled.attempts),
        ("succeeded", 1),
        "a settled claim is not given back"
    );
    let again = ours(claim(store, now(), &["audit"]).await, claimed);
    assert_eq!(
        again.iter().map(|c| c.id).collect::<Vec<_>>(),
        rest.iter().map(|c| c.id).collect::<Vec<_>>(),
        "given back, claimable before the lease ends"
    );
    assert!(again.iter().all(|c| c.attempts == 1), "{again:?}");
}

/// Deliveries claimed at ingest and never settled come due when their lease ends.
async fn outlive_the_lease(store: &Store, claimed: &[vodhook::storage::ClaimedDelivery]) {
    let after_lease = now() + chrono::Duration::from_std(LEASE).expect("lease") + secs(1);
    let again = ours(claim(store, after_lease, &["audit"]).await, claimed);
    assert_eq!(again.len(), claimed.len(), "{again:?}");
    assert!(again.iter().all(|c| c.attempts == 2), "{again:?}");
    // The first claim, given back late, leaves the worker that took over alone.
    let stale: Vec<(Uuid, i32)> = claimed.iter().map(|c| (c.id, c.attempts)).collect();
    store.release_claims(&stale).await.expect("release_claims");
    assert!(
        ours(claim(store, after_lease, &["audit"]).await, claimed).is_empty(),
        "still under the new claim"
    );
}

/// The claims among `claims` of the deliveries in `of`.
fn ours(
    claims: Vec<vodhook::storage::ClaimedDelivery>,
    of: &[vodhook::storage::ClaimedDelivery],
) -> Vec<vodhook::storage::ClaimedDelivery> {
    let ids: HashSet<Uuid> = of.iter().map(|c| c.id).collect();
    claims.into_iter().filter(|c| ids.contains(&c.id)).collect()
}
