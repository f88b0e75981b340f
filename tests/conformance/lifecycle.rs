//! `StoreLifecycle`: migrating, answering pings, describing itself, leading a job.

use crate::support::{event, ingest, upload_body, Backend, TestStore};

/// `open` migrated already; migrating again changes nothing and loses nothing.
pub async fn migrating_again_is_harmless(store: TestStore) {
    let raw = upload_body("14508071098244959037");
    let first = ingest(&store, &raw).await;
    assert!(!first.duplicate);

    store.migrate().await.expect("a second migration");
    store.migrate().await.expect("a third migration");

    assert_eq!(event(&store, first.event_id).await.id, first.event_id);
    let again = ingest(&store, &raw).await;
    assert!(
        again.duplicate,
        "the dedupe key is still unique after migrating again"
    );
    assert_eq!(again.event_id, first.event_id);
}

pub async fn ping_answers_and_describe_names_the_backend(store: TestStore) {
    store.ping().await.expect("ping");
    let description = store.describe().to_lowercase();
    assert!(
        description.contains(store.backend.name()),
        "{description:?} does not name {}",
        store.backend.name()
    );
    let other = match store.backend {
        Backend::Postgres => Backend::Sqlite,
        Backend::Sqlite => Backend::Postgres,
    };
    assert!(
        !description.contains(other.name()),
        "{description:?} names {}",
        other.name()
    );
    store.notify_workers().await.expect("notify_workers");
    store.ping().await.expect("ping after notifying");
}

pub async fn one_holder_leads_a_job_until_it_lets_go(store: TestStore) {
    let mut first = store
        .try_lead("conformance-job")
        .await
        .expect("try_lead")
        .expect("nobody leads yet");
    assert!(first.is_held().await);
    assert!(
        store
            .try_lead("conformance-job")
            .await
            .expect("try_lead")
            .is_none(),
        "a second holder is refused while the first holds it"
    );
    let other = store.try_lead("another-job").await.expect("try_lead");
    assert!(other.is_some(), "jobs are independent");
    drop(first);
    // Postgres releases the lock as the lease's connection closes, which may take a moment.
    let mut again = None;
    for _ in 0..50 {
        again = store.try_lead("conformance-job").await.expect("try_lead");
        if again.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "released when dropped");
}
