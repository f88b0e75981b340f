//! Storage conformance: every promise of `vodhook::storage`, written once, run on Postgres and SQLite.
//!
//! Each test is an `async fn(TestStore)` in one of the modules below; `conformance!` turns every
//! one of them into a `#[tokio::test]` in `mod postgres` and in `mod sqlite`, each on a fresh
//! store of its own (a new database, or a new directory), so they run in parallel safely.
//! `cargo test --test conformance postgres` runs one backend. The Postgres tests need a server at
//! `VODHOOK_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) and fail
//! without one.

mod events;
mod lifecycle;
mod outbox;
mod records;
mod replay;
mod retry;
mod settle;
mod subscriptions;
mod support;
mod tokens;
mod uploads;

/// For each `module { test, ... }`, one `#[tokio::test]` per test and backend.
macro_rules! conformance {
    ($($module:ident { $($test:ident),* $(,)? })*) => {
        mod postgres {
            $($(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    crate::support::run(crate::support::Backend::Postgres, crate::$module::$test)
                        .await;
                }
            )*)*
        }

        mod sqlite {
            $($(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    crate::support::run(crate::support::Backend::Sqlite, crate::$module::$test)
                        .await;
                }
            )*)*
        }
    };
}

conformance! {
    lifecycle {
        migrating_again_is_harmless,
        ping_answers_and_describe_names_the_backend,
        one_holder_leads_a_job_until_it_lets_go,
    }
    events {
        new_event_is_stored_as_received,
        repeated_callback_is_a_duplicate_of_the_first,
        v2_and_v3_copies_of_one_upload_are_one_event,
        concurrent_copies_store_one_event,
        concurrent_batches_sharing_an_event_store_it_once,
        a_batch_reports_each_event_and_isolates_a_failure,
        a_batch_of_distinct_events_is_stored_with_records_and_outbox_rows,
        unknown_event_is_none,
        events_list_filters_by_type_and_file,
        events_list_newest_first_in_pages_without_gaps,
    }
    uploads {
        upload_record_holds_the_new_file_upload_fields,
        repeat_fills_only_missing_fields,
        v2_source_type_replaces_v3_upload_whichever_came_first,
        updated_at_moves_only_when_something_changes,
        long_source_contexts_are_stored_and_filterable,
        uploads_list_filters_each_and_combined,
        uploads_list_newest_first_in_pages_without_gaps,
    }
    records {
        processing_follows_the_task_to_its_end,
        an_older_state_arriving_late_never_overwrites_a_newer_one,
        a_new_task_replaces_the_state_of_the_last_one,
        progress_that_arrives_before_the_upload_is_kept,
        deleted_files_stay_queryable_and_filterable,
        processing_status_filters_the_list,
        a_pull_makes_a_record_like_an_upload,
        the_list_answer_is_the_records_as_json,
    }
    tokens {
        token_names_are_unique_among_active_tokens,
        tokens_list_oldest_first_with_revoked_ones,
        revoked_tokens_are_inactive_and_names_reusable,
    }
    subscriptions {
        subscription_is_created_and_read_back,
        subscriptions_list_newest_first_in_pages,
        subscription_update_changes_only_given_fields,
        deleting_a_subscription_deletes_its_deliveries,
        a_subscription_deleted_during_ingests_leaves_no_delivery_behind,
        a_subscription_disabled_during_ingests_leaves_no_pending_delivery,
        rotating_a_secret_keeps_the_previous_one_until_expiry,
        disabling_pauses_and_enabling_resumes_deliveries,
        enabling_makes_backed_off_paused_deliveries_due_now,
    }
    outbox {
        ingest_enqueues_per_matching_enabled_subscription_and_handler,
        duplicate_ingest_enqueues_nothing,
        claim_carries_what_a_delivery_needs,
        claimed_delivery_is_hidden_until_its_lease_ends,
        handler_deliveries_are_claimed_only_for_their_handlers,
        claim_respects_limit_and_takes_due_rows_only,
        claim_by_event_takes_those_events_due_rows_for_this_process_only,
        claim_by_event_takes_at_most_its_limit_and_leaves_the_rest_due,
        concurrent_claimers_never_share_a_delivery,
        a_batch_can_claim_its_deliveries_as_it_stores_them,
    }
    settle {
        settling_succeeded_completes_the_delivery,
        settling_retry_at_defers_until_then,
        settling_dead_stops_retrying,
        a_success_after_failures_reads_back_every_try,
        dead_and_disable_disables_subscription_and_pauses_its_backlog,
        stale_settlement_is_fenced_but_logged,
        settling_a_deleted_delivery_does_not_fail_the_batch,
        a_batch_with_a_stale_and_a_current_try_keeps_both,
        a_stale_try_leaves_no_log_row_for_a_delivery_deleted_meanwhile,
        nul_characters_in_attempts_are_stored_replaced,
        deliveries_list_filters_and_pages,
    }
    retry {
        retrying_an_unknown_delivery_is_not_found,
        retrying_a_succeeded_delivery_is_refused,
        retrying_an_in_flight_delivery_is_refused,
        retrying_for_a_disabled_subscription_is_refused,
        retrying_a_dead_delivery_gives_exactly_one_more_try,
        retrying_a_backed_off_delivery_makes_it_due_now,
    }
    replay {
        replay_for_a_subscription_by_time_range_and_type,
        replay_for_a_handler,
        replay_only_failed_takes_events_whose_deliveries_all_died,
        open_deliveries_are_counted_per_target_and_status,
    }
}
