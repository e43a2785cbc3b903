//! Cron schedules against a real PostgreSQL, with a manual clock so that no test waits for
//! a real tick.
//!
//! Guarantees checked here:
//! - three schedulers in separate pools start exactly one run per tick;
//! - steps that race on the same due schedule create one run per tick between them;
//! - after downtime, `skip` starts no run for the missed ticks and `run_once` starts one,
//!   for the last of them, and both go on with the ticks that follow;
//! - a paused schedule starts nothing, and resuming it waits for the next tick;
//! - invalid schedules are rejected with the value and the fix, and nothing is stored;
//! - a tick whose workflow is gone records the error and later ticks still run.

use std::sync::Arc;
use std::time::Duration;

use caraml_engine::testing::TestDatabase;
use caraml_engine::{
    Error, Fired, ManualClock, MissedTicks, NewSchedule, Scheduler, Store, WorkflowSpec,
};
use chrono::{DateTime, Utc};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// The manual clock starts half a second past midnight, so every tick of a schedule
/// created then lies ahead of it.
const START: &str = "2031-01-01T00:00:00.500Z";

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test time is RFC 3339")
        .with_timezone(&Utc)
}

struct Setup {
    db: TestDatabase,
    clock: Arc<ManualClock>,
    store: Store,
}

impl Setup {
    /// Creates a database with the workflow `nightly` stored and a store on a manual clock.
    async fn new() -> Self {
        let db = TestDatabase::create().await;
        let clock = Arc::new(ManualClock::new(at(START)));
        let store = db.store.clone().with_clock(clock.clone());
        store
            .register_kinds(["sleep"].into_iter())
            .await
            .expect("register kinds");
        store_nightly(&store).await;
        Self { db, clock, store }
    }

    /// Connects another store to the same database and clock, as another process would.
    async fn other_process(&self) -> Store {
        Store::connect(&self.db.url, 4)
            .await
            .expect("connect a second pool")
            .with_clock(self.clock.clone())
    }

    /// Returns the idempotency keys of scheduled runs in order.
    async fn scheduled_keys(&self) -> Vec<String> {
        let keys: Vec<(String,)> = sqlx::query_as(
            "SELECT idempotency_key FROM runs
             WHERE idempotency_key LIKE 'schedule:%' ORDER BY idempotency_key",
        )
        .fetch_all(self.store.pool())
        .await
        .expect("read scheduled runs");
        keys.into_iter().map(|(key,)| key).collect()
    }

    /// Waits up to 10 s of real time until `count` scheduled runs exist, and returns their
    /// keys.
    async fn wait_for_runs(&self, count: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let keys = self.scheduled_keys().await;
            if keys.len() >= count {
                return keys;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {count} scheduled runs exist after 10 s: {keys:?}",
                keys.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn store_nightly(store: &Store) {
    let spec: WorkflowSpec = serde_json::from_value(json!({"name": "nightly", "tasks": [
        {"name": "wait", "kind": "sleep", "input": {"seconds": 0}},
    ]}))
    .expect("spec");
    store
        .store_workflow(&spec, "spec")
        .await
        .expect("store workflow");
}

/// Takes scheduler steps at the clock's time until no schedule is due.
async fn fire_all(store: &Store) -> Vec<Fired> {
    let now = store.clock().now();
    let mut steps = Vec::new();
    while let Some(fired) = store.fire_due_schedule(now).await.expect("scheduler step") {
        steps.push(fired);
    }
    steps
}

fn key(name: &str, tick: &str) -> String {
    format!("schedule:{name}:{tick}")
}

/// Cancels the schedulers it started when dropped.
struct Running(CancellationToken);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

#[tokio::test]
async fn three_schedulers_start_each_tick_once() {
    let setup = Setup::new().await;
    let running = Running(CancellationToken::new());
    for _ in 0..3 {
        let store = setup.other_process().await;
        tokio::spawn(Scheduler::builder(store).build().run(running.0.clone()));
    }
    // Created after the schedulers started, so they learn of it by notification.
    setup
        .store
        .create_schedule(
            "default",
            NewSchedule::new("every-second", "* * * * * *", "nightly"),
        )
        .await
        .expect("create schedule");

    let mut expected = Vec::new();
    for second in 1..=10 {
        setup.clock.advance(Duration::from_secs(1));
        expected.push(key(
            "every-second",
            &format!("2031-01-01T00:00:{second:02}Z"),
        ));
        let keys = setup.wait_for_runs(second).await;
        assert_eq!(keys, expected, "tick {second} started exactly one run");
    }

    let schedule = setup
        .store
        .get_schedule("default", "every-second")
        .await
        .expect("schedule");
    assert_eq!(schedule.last_tick_at, Some(at("2031-01-01T00:00:10Z")));
    assert_eq!(
        schedule.next_tick_at,
        at("2031-01-01T00:00:11Z"),
        "the schedule waits for the first tick after the clock"
    );
    assert_eq!(
        setup.scheduled_keys().await.len(),
        10,
        "ten ticks started ten runs"
    );
}

#[tokio::test]
async fn racing_steps_create_one_run_per_tick() {
    let setup = Setup::new().await;
    let stores = [
        setup.other_process().await,
        setup.other_process().await,
        setup.other_process().await,
    ];
    setup
        .store
        .create_schedule(
            "default",
            NewSchedule::new("raced", "* * * * * *", "nightly"),
        )
        .await
        .expect("create schedule");

    // Steps of several seconds leave several on-time ticks due at once.
    let mut ticks = 0;
    for step in [1, 1, 3, 1, 2, 2] {
        setup.clock.advance(Duration::from_secs(step));
        ticks += step as usize;
        let (a, b, c) = tokio::join!(
            fire_all(&stores[0]),
            fire_all(&stores[1]),
            fire_all(&stores[2])
        );
        let steps: Vec<&Fired> = a.iter().chain(&b).chain(&c).collect();
        let created = steps.iter().filter(|f| f.created).count();
        assert_eq!(
            created, step as usize,
            "a step of {step} s creates one run per tick between the racing schedulers"
        );
        assert_eq!(
            steps.len(),
            created,
            "the lock keeps every step off a tick that another step started: {steps:?}"
        );
        assert_eq!(setup.scheduled_keys().await.len(), ticks);
    }
}

#[tokio::test]
async fn missed_ticks_follow_the_policy() {
    let setup = Setup::new().await;
    let store = &setup.store;
    store
        .create_schedule(
            "default",
            NewSchedule::new("skipper", "* * * * *", "nightly").missed(MissedTicks::Skip),
        )
        .await
        .expect("create skipper");
    store
        .create_schedule(
            "default",
            NewSchedule::new("catcher", "* * * * *", "nightly")
                .missed(MissedTicks::RunOnce)
                .input(json!({"report": "daily"})),
        )
        .await
        .expect("create catcher");

    // No scheduler runs from 00:00:00.5 to 00:10:45: the ticks 00:01 to 00:10 are all more
    // than the grace late.
    setup.clock.set(at("2031-01-01T00:10:45Z"));
    let steps = fire_all(store).await;
    assert_eq!(steps.len(), 2, "one step per schedule: {steps:?}");
    for step in &steps {
        assert_eq!(
            step.missed,
            Some((at("2031-01-01T00:01:00Z"), at("2031-01-01T00:10:00Z"))),
            "{} reports the missed ticks",
            step.schedule
        );
        assert_eq!(step.next_tick_at, Some(at("2031-01-01T00:11:00Z")));
    }
    assert_eq!(
        setup.scheduled_keys().await,
        [key("catcher", "2031-01-01T00:10:00Z")],
        "skip starts no run, run_once starts one for the last missed tick"
    );
    let catcher = store
        .get_schedule("default", "catcher")
        .await
        .expect("catcher");
    let run = store
        .run_summary(catcher.last_run_id.expect("catcher has a run"))
        .await
        .expect("run");
    assert_eq!(run.workflow, "nightly");
    assert_eq!(
        run.input,
        json!({"report": "daily"}),
        "the run gets the schedule's input"
    );

    // Both go on with the next tick.
    setup.clock.set(at("2031-01-01T00:11:00.200Z"));
    fire_all(store).await;
    assert_eq!(
        setup.scheduled_keys().await,
        [
            key("catcher", "2031-01-01T00:10:00Z"),
            key("catcher", "2031-01-01T00:11:00Z"),
            key("skipper", "2031-01-01T00:11:00Z"),
        ]
    );

    // Back 5 s after the 00:20 tick: 00:12 to 00:19 were missed, and 00:20 is on time
    // under both policies.
    setup.clock.set(at("2031-01-01T00:20:05Z"));
    fire_all(store).await;
    assert_eq!(
        setup.scheduled_keys().await,
        [
            key("catcher", "2031-01-01T00:10:00Z"),
            key("catcher", "2031-01-01T00:11:00Z"),
            key("catcher", "2031-01-01T00:19:00Z"),
            key("catcher", "2031-01-01T00:20:00Z"),
            key("skipper", "2031-01-01T00:11:00Z"),
            key("skipper", "2031-01-01T00:20:00Z"),
        ]
    );
}

#[tokio::test]
async fn paused_schedule_starts_nothing_until_resumed() {
    let setup = Setup::new().await;
    let store = &setup.store;
    store
        .create_schedule(
            "default",
            NewSchedule::new("hourly", "0 * * * *", "nightly"),
        )
        .await
        .expect("create");
    let paused = store
        .pause_schedule("default", "hourly")
        .await
        .expect("pause");
    assert!(paused.paused);
    assert!(
        store
            .pause_schedule("default", "hourly")
            .await
            .expect("pause again")
            .paused,
        "pausing twice is allowed"
    );
    assert_eq!(
        store.earliest_tick().await.expect("earliest"),
        None,
        "a paused schedule has no tick to wait for"
    );

    setup.clock.set(at("2031-01-01T05:30:00Z"));
    assert!(
        fire_all(store).await.is_empty(),
        "a paused schedule is never due"
    );

    let resumed = store
        .resume_schedule("default", "hourly")
        .await
        .expect("resume");
    assert!(!resumed.paused);
    assert_eq!(
        resumed.next_tick_at,
        at("2031-01-01T06:00:00Z"),
        "resuming waits for the first tick after now"
    );
    let again = store
        .resume_schedule("default", "hourly")
        .await
        .expect("resume again");
    assert_eq!(
        again.next_tick_at, resumed.next_tick_at,
        "resuming twice changes nothing"
    );
    assert!(
        fire_all(store).await.is_empty(),
        "ticks passed while paused start no runs"
    );
    assert!(setup.scheduled_keys().await.is_empty());

    setup.clock.set(at("2031-01-01T06:00:01Z"));
    fire_all(store).await;
    assert_eq!(
        setup.scheduled_keys().await,
        [key("hourly", "2031-01-01T06:00:00Z")]
    );

    let deleted = store
        .delete_schedule("default", "hourly")
        .await
        .expect("delete");
    assert_eq!(deleted.name, "hourly");
    assert!(matches!(
        store.get_schedule("default", "hourly").await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(
        setup.scheduled_keys().await.len(),
        1,
        "deleting a schedule keeps its runs"
    );
}

#[tokio::test]
async fn invalid_schedules_are_rejected_with_the_fix() {
    let setup = Setup::new().await;
    let store = &setup.store;
    let cases = [
        (
            NewSchedule::new("bad name!", "* * * * *", "nightly"),
            "schedule name `bad name!` is invalid",
            "use 1 to 200 characters",
        ),
        (
            NewSchedule::new("s", "61 * * * *", "nightly"),
            "cron expression `61 * * * *` is invalid",
            "such as `*/15 * * * *`",
        ),
        (
            NewSchedule::new("s", "* * *", "nightly"),
            "cron expression `* * *` has 3 fields",
            "use 5 fields",
        ),
        (
            NewSchedule::new("s", "0 0 30 2 *", "nightly"),
            "cron expression `0 0 30 2 *` matches no time",
            "check the day-of-month and month fields",
        ),
        (
            NewSchedule::new("s", "* * * * *", "nightly").timezone("Mars/Olympus"),
            "time zone `Mars/Olympus` is unknown",
            "such as `UTC`, `Europe/Berlin`",
        ),
        (
            NewSchedule::new("s", "* * * * *", "ghost"),
            "workflow `ghost` is not registered",
            "start a worker that registers it",
        ),
    ];
    for (schedule, problem, fix) in cases {
        match store.create_schedule("default", schedule).await {
            Err(Error::InvalidInput(message)) => {
                assert!(message.contains(problem), "names the value: {message}");
                assert!(message.contains(fix), "gives the fix: {message}");
            }
            other => panic!("expected an invalid input error naming {problem}, got {other:?}"),
        }
    }
    match "sometimes".parse::<MissedTicks>() {
        Err(Error::InvalidInput(message)) => assert_eq!(
            message,
            "missed-tick policy `sometimes` is invalid; use `skip` or `run_once`"
        ),
        other => panic!("expected an invalid policy error, got {other:?}"),
    }
    assert!(
        store
            .list_schedules("default")
            .await
            .expect("list")
            .is_empty(),
        "rejected schedules are not stored"
    );

    store
        .create_schedule(
            "default",
            NewSchedule::new("daily", "0 3 * * *", "nightly").timezone("Europe/Berlin"),
        )
        .await
        .expect("a valid schedule is stored");
    match store
        .create_schedule("default", NewSchedule::new("daily", "0 4 * * *", "nightly"))
        .await
    {
        Err(Error::Conflict(message)) => {
            assert!(
                message.contains("schedule `daily` already exists"),
                "{message}"
            )
        }
        other => panic!("expected a conflict for a taken name, got {other:?}"),
    }
    let daily = store.get_schedule("default", "daily").await.expect("daily");
    assert_eq!(daily.cron, "0 3 * * *", "the first schedule is kept");
    assert_eq!(
        daily.next_tick_at,
        at("2031-01-01T02:00:00Z"),
        "03:00 in Berlin is 02:00 UTC in January"
    );

    for result in [
        store.get_schedule("default", "ghost").await,
        store.pause_schedule("default", "ghost").await,
        store.resume_schedule("default", "ghost").await,
        store.delete_schedule("default", "ghost").await,
    ] {
        assert!(
            matches!(
                result,
                Err(Error::NotFound {
                    what: "schedule",
                    ..
                })
            ),
            "an unknown schedule is not found: {result:?}"
        );
    }
}

#[tokio::test]
async fn tick_without_workflow_records_error() {
    let setup = Setup::new().await;
    let store = &setup.store;
    store
        .create_schedule(
            "default",
            NewSchedule::new("orphan", "* * * * *", "nightly"),
        )
        .await
        .expect("create");
    sqlx::query("DELETE FROM workflows WHERE name = 'nightly'")
        .execute(store.pool())
        .await
        .expect("remove the workflow");

    setup.clock.set(at("2031-01-01T00:01:00.100Z"));
    let steps = fire_all(store).await;
    assert_eq!(steps.len(), 1);
    let error = steps[0]
        .error
        .clone()
        .expect("the step reports why no run started");
    assert!(error.contains("workflow `nightly` not found"), "{error}");
    assert!(
        error.contains("register workflow `nightly` again"),
        "{error}"
    );
    let schedule = store
        .get_schedule("default", "orphan")
        .await
        .expect("schedule");
    assert_eq!(schedule.last_error.as_deref(), Some(error.as_str()));
    assert_eq!(
        schedule.next_tick_at,
        at("2031-01-01T00:02:00Z"),
        "the schedule moves on to the next tick"
    );
    assert!(setup.scheduled_keys().await.is_empty());

    // Another process registers the workflow again; this store's cache still lists it as
    // stored and would skip the insert.
    store_nightly(&setup.other_process().await).await;
    setup.clock.set(at("2031-01-01T00:02:00.100Z"));
    fire_all(store).await;
    assert_eq!(
        setup.scheduled_keys().await,
        [key("orphan", "2031-01-01T00:02:00Z")]
    );
    let schedule = store
        .get_schedule("default", "orphan")
        .await
        .expect("schedule");
    assert_eq!(schedule.last_error, None, "a started run clears the error");
}
