//! Prometheus metrics: callbacks, ingest latency, delivery attempts and lag; open deliveries are
//! counted from the database at scrape time.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Event types VOD documents; anything else is counted as "other", so that strangers posting
/// made-up types cannot grow the label set without bound.
const KNOWN_EVENT_TYPES: [&str; 24] = [
    "NewFileUpload",
    "ProcedureStateChanged",
    "FileDeleted",
    "PullComplete",
    "EditMediaComplete",
    "SplitMediaComplete",
    "ComposeMediaComplete",
    "WechatPublishComplete",
    "WechatMiniProgramPublishComplete",
    "RemoveWatermark",
    "RestoreMediaComplete",
    "RebuildMediaComplete",
    "ExtractTraceWatermarkComplete",
    "ExtractCopyRightWatermarkComplete",
    "ReviewAudioVideoComplete",
    "DescribeFileAttributesComplete",
    "QualityInspectComplete",
    "QualityEnhanceComplete",
    "MediaCastStatusChanged",
    "PersistenceComplete",
    "ComplexAdaptiveDynamicStreamingComplete",
    "ProcessMediaByMPSComplete",
    "AigcImageTaskComplete",
    "AigcVideoTaskComplete",
];

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    callbacks: IntCounterVec,
    ingest_seconds: HistogramVec,
    attempts: IntCounterVec,
    lag_seconds: HistogramVec,
    open_deliveries: IntGaugeVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let fast_buckets = vec![
            0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ];
        let lag_buckets = vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0, 3600.0, 36_000.0,
        ];
        let metrics = Metrics {
            callbacks: IntCounterVec::new(
                Opts::new(
                    "vodhook_callbacks_received_total",
                    "VOD callbacks received, by event type and outcome",
                ),
                &["event_type", "outcome"],
            )
            .unwrap_or_else(|e| unreachable!("valid metric: {e}")),
            ingest_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "vodhook_ingest_duration_seconds",
                    "Time from callback received to answer",
                )
                .buckets(fast_buckets),
                &["outcome"],
            )
            .unwrap_or_else(|e| unreachable!("valid metric: {e}")),
            attempts: IntCounterVec::new(
                Opts::new(
                    "vodhook_delivery_attempts_total",
                    "Delivery tries, by target kind and outcome",
                ),
                &["target", "outcome"],
            )
            .unwrap_or_else(|e| unreachable!("valid metric: {e}")),
            lag_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "vodhook_delivery_lag_seconds",
                    "Time from event received to successful delivery",
                )
                .buckets(lag_buckets),
                &["target"],
            )
            .unwrap_or_else(|e| unreachable!("valid metric: {e}")),
            open_deliveries: IntGaugeVec::new(
                Opts::new(
                    "vodhook_deliveries",
                    "Pending and dead deliveries per target (subscription id or handler:name)",
                ),
                &["target", "status"],
            )
            .unwrap_or_else(|e| unreachable!("valid metric: {e}")),
            registry,
        };
        for collector in [
            Box::new(metrics.callbacks.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.ingest_seconds.clone()),
            Box::new(metrics.attempts.clone()),
            Box::new(metrics.lag_seconds.clone()),
            Box::new(metrics.open_deliveries.clone()),
        ] {
            metrics
                .registry
                .register(collector)
                .unwrap_or_else(|e| unreachable!("metric registered once: {e}"));
        }
        metrics
    }

    /// `outcome`: stored, duplicate, or the error code of a refused callback.
    pub fn record_callback(
        &self,
        event_type: Option<&str>,
        outcome: &str,
        elapsed: std::time::Duration,
    ) {
        let event_type = match event_type {
            Some(t) if KNOWN_EVENT_TYPES.contains(&t) => t,
            Some(_) => "other",
            None => "none",
        };
        self.callbacks
            .with_label_values(&[event_type, outcome])
            .inc();
        let bucket = if matches!(outcome, "stored" | "duplicate") {
            "accepted"
        } else {
            "refused"
        };
        self.ingest_seconds
            .with_label_values(&[bucket])
            .observe(elapsed.as_secs_f64());
    }

    pub fn record_attempt(&self, target: &str, succeeded: bool, since_received: chrono::Duration) {
        self.attempts
            .with_label_values(&[target, if succeeded { "succeeded" } else { "failed" }])
            .inc();
        if succeeded {
            let seconds = since_received.to_std().map_or(0.0, |d| d.as_secs_f64());
            self.lag_seconds
                .with_label_values(&[target])
                .observe(seconds);
        }
    }

    /// The text exposition, with the open-delivery gauges set from `counts`.
    pub fn render(&self, counts: &[(String, String, i64)]) -> String {
        self.open_deliveries.reset();
        for (target, status, count) in counts {
            self.open_deliveries
                .with_label_values(&[target, status])
                .set(*count);
        }
        let mut buffer = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(%error, "cannot encode metrics");
        }
        String::from_utf8_lossy(&buffer).into_owned()
    }
}
