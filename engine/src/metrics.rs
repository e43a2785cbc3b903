//! Process-wide counters and the claim latency histogram, rendered in the Prometheus text
//! format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the claim latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

pub(crate) struct Counter(AtomicU64);

impl Counter {
    const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

pub(crate) struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; LATENCY_BUCKETS.len()],
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub(crate) fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(duration.as_micros() as u64, Ordering::Relaxed);
    }
}

pub(crate) static CLAIMED: Counter = Counter::new();
pub(crate) static SUCCEEDED: Counter = Counter::new();
pub(crate) static FAILED: Counter = Counter::new();
pub(crate) static RETRIED: Counter = Counter::new();
pub(crate) static RESCUED: Counter = Counter::new();
pub(crate) static STALE_REJECTED: Counter = Counter::new();
pub(crate) static CLAIM_LATENCY: Histogram = Histogram::new();

/// Renders this process's engine metrics; `queue_depths` are the ready tasks per queue.
pub fn render(queue_depths: &[(String, i64)]) -> String {
    let mut out = String::new();
    let counters = [
        (
            "caraml_tasks_claimed_total",
            "Attempts started by this process.",
            &CLAIMED,
        ),
        (
            "caraml_tasks_succeeded_total",
            "Attempts that succeeded.",
            &SUCCEEDED,
        ),
        (
            "caraml_tasks_failed_total",
            "Tasks that failed for good.",
            &FAILED,
        ),
        (
            "caraml_tasks_retried_total",
            "Failed attempts scheduled to run again.",
            &RETRIED,
        ),
        (
            "caraml_tasks_rescued_total",
            "Attempts ended by the reaper after their lease lapsed.",
            &RESCUED,
        ),
        (
            "caraml_stale_completions_total",
            "Results rejected because their attempt had lost its lease.",
            &STALE_REJECTED,
        ),
    ];
    for (name, help, counter) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            counter.get()
        );
    }

    let name = "caraml_claim_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time taken by one claim query.\n# TYPE {name} histogram"
    );
    for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&CLAIM_LATENCY.buckets) {
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"{bound}\"}} {}",
            bucket.load(Ordering::Relaxed)
        );
    }
    let count = CLAIM_LATENCY.count.load(Ordering::Relaxed);
    let sum = CLAIM_LATENCY.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
    let _ = writeln!(
        out,
        "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}"
    );

    let name = "caraml_queue_depth";
    let _ = writeln!(
        out,
        "# HELP {name} Ready tasks that are due, per queue.\n# TYPE {name} gauge"
    );
    for (queue, depth) in queue_depths {
        let queue = queue.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(out, "{name}{{queue=\"{queue}\"}} {depth}");
    }
    out
}
