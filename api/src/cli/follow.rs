//! Live progress of a run: a progress bar on a terminal, plain lines otherwise.
//!
//! Each poll reads the run's counts and the events added since the previous poll, so a
//! poll costs the same for a run of 5 tasks and one of 50,000. The task list, with the
//! errors and outputs of the final report, is read once, after the run finishes.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::time::Duration;

use caraml_engine::RunView;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;

/// Time between polls.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Events read per request, the largest page the API returns.
pub(crate) const EVENT_PAGE: u32 = 10_000;

/// Running tasks named in a progress line.
const RUNNING_SHOWN: usize = 4;

/// Source of a followed run: the HTTP API, or the store of this process.
pub(crate) trait RunSource {
    /// Returns the run's status and task counts, without its tasks.
    async fn summary(&self) -> Result<RunView, String>;

    /// Returns up to [`EVENT_PAGE`] events with ids above `after`, in order.
    async fn events(&self, after: i64) -> Result<EventPage, String>;

    /// Returns the run with every task.
    async fn full(&self) -> Result<RunView, String>;
}

/// One page of a run's events, as `GET /v1/runs/{id}/events` returns it.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct EventPage {
    pub(crate) events: Vec<Event>,
    /// The `after` of the next page, absent on the last page.
    pub(crate) next_after: Option<i64>,
}

/// The fields of an event that progress needs.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Event {
    pub(crate) id: i64,
    pub(crate) kind: String,
    pub(crate) task: Option<String>,
}

/// Polls `source` every `interval` until the run finishes, shows its progress, and returns
/// the finished run with its tasks.
pub(crate) async fn follow(source: &impl RunSource, interval: Duration) -> Result<RunView, String> {
    let mut display = Display::new(std::io::stdout().is_terminal());
    let mut running = RunningTasks::default();
    let mut after = 0;
    loop {
        let run = source.summary().await?;
        if run.finished_at.is_some() {
            display.show(&run, &[]);
            display.finish();
            return source.full().await;
        }
        loop {
            let page = source.events(after).await?;
            if let Some(last) = page.events.last() {
                after = last.id;
            }
            for event in &page.events {
                running.apply(event);
            }
            if page.next_after.is_none() {
                break;
            }
        }
        display.show(&run, &running.longest(RUNNING_SHOWN));
        tokio::time::sleep(interval).await;
    }
}

/// Tasks running now, as the events tell, with the id of the event that started each.
#[derive(Debug, Default)]
struct RunningTasks {
    started: HashMap<String, i64>,
}

impl RunningTasks {
    fn apply(&mut self, event: &Event) {
        let Some(task) = &event.task else {
            return;
        };
        // Every task event other than `task.running` moves the task out of running.
        if event.kind == "task.running" {
            self.started.insert(task.clone(), event.id);
        } else {
            self.started.remove(task);
        }
    }

    /// Returns up to `count` running tasks, those running longest first.
    fn longest(&self, count: usize) -> Vec<&str> {
        let mut tasks: Vec<(&i64, &String)> =
            self.started.iter().map(|(name, id)| (id, name)).collect();
        tasks.sort_unstable();
        tasks
            .into_iter()
            .take(count)
            .map(|(_, name)| name.as_str())
            .collect()
    }
}

/// Progress output: a bar on a terminal, or else a plain line whenever the progress changes.
struct Display {
    terminal: bool,
    bar: Option<ProgressBar>,
    last_line: String,
}

impl Display {
    fn new(terminal: bool) -> Self {
        Self {
            terminal,
            bar: None,
            last_line: String::new(),
        }
    }

    fn show(&mut self, run: &RunView, running: &[&str]) {
        let done = run.tasks_succeeded + run.tasks_failed + run.tasks_skipped + run.tasks_cancelled;
        let detail = format!(
            "{} ({} succeeded, {} failed, {} skipped, {} cancelled){}",
            run.status,
            run.tasks_succeeded,
            run.tasks_failed,
            run.tasks_skipped,
            run.tasks_cancelled,
            if running.is_empty() {
                String::new()
            } else {
                format!(" running: {}", running.join(", "))
            }
        );
        if self.terminal {
            let bar = self.bar.get_or_insert_with(|| {
                let bar = ProgressBar::new(run.tasks_total.max(0) as u64);
                if let Ok(style) = ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} tasks {msg}",
                ) {
                    bar.set_style(style);
                }
                bar
            });
            bar.set_position(done.max(0) as u64);
            bar.set_message(detail);
        } else {
            let line = format!(
                "run {} {}/{} tasks done: {detail}",
                run.id, done, run.tasks_total
            );
            if line != self.last_line {
                say!("{line}");
                self.last_line = line;
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

/// Prints what a finished run produced: errors of failed tasks, and the outputs of the
/// tasks nothing depends on.
pub(crate) fn print_result(run: &RunView) {
    let tasks = run.tasks.as_deref().unwrap_or_default();
    say!(
        "run {} {} in workflow `{}`",
        run.id,
        run.status,
        run.workflow
    );
    for task in tasks.iter().filter(|t| t.status == "failed") {
        say!(
            "  task `{}` failed: {}",
            task.name,
            task.error.as_deref().unwrap_or("no error recorded")
        );
    }
    for task in tasks {
        let is_leaf = !tasks
            .iter()
            .any(|other| other.depends_on.contains(&task.name));
        if is_leaf && let Some(output) = &task.output {
            let text = serde_json::to_string_pretty(output).unwrap_or_default();
            say!("  output of `{}`:\n{}", task.name, indent(&text));
        }
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|line| format!("    {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    //! Following reads counts and new events on each poll, and the task list once.

    use std::cell::RefCell;
    use std::collections::VecDeque;

    use chrono::Utc;
    use uuid::Uuid;

    use super::*;

    fn run(status: &str, succeeded: i32, finished: bool) -> RunView {
        RunView {
            id: Uuid::nil(),
            project: "default".to_owned(),
            workflow: "wide".to_owned(),
            workflow_version: "1".to_owned(),
            status: status.to_owned(),
            input: serde_json::Value::Null,
            idempotency_key: None,
            tasks_total: 4,
            tasks_succeeded: succeeded,
            tasks_failed: 0,
            tasks_skipped: 0,
            tasks_cancelled: 0,
            created_at: Utc::now(),
            started_at: None,
            finished_at: finished.then(Utc::now),
            parent_run_id: None,
            parent_task_idx: None,
            tasks: None,
            children: None,
        }
    }

    fn event(id: i64, kind: &str, task: &str) -> Event {
        Event {
            id,
            kind: kind.to_owned(),
            task: Some(task.to_owned()),
        }
    }

    /// A run that succeeds on the third poll, with its events in pages of two.
    struct ScriptedRun {
        summaries: RefCell<VecDeque<RunView>>,
        events: Vec<Event>,
        /// The `after` of every events request, in order.
        events_requested: RefCell<Vec<i64>>,
        full_reads: RefCell<usize>,
    }

    impl ScriptedRun {
        fn new() -> Self {
            Self {
                summaries: RefCell::new(VecDeque::from([
                    run("running", 0, false),
                    run("running", 2, false),
                    run("succeeded", 4, true),
                ])),
                events: vec![
                    event(1, "task.running", "a"),
                    event(2, "task.running", "b"),
                    event(3, "task.succeeded", "a"),
                ],
                events_requested: RefCell::default(),
                full_reads: RefCell::default(),
            }
        }
    }

    impl RunSource for ScriptedRun {
        async fn summary(&self) -> Result<RunView, String> {
            let mut summaries = self.summaries.borrow_mut();
            let next = summaries
                .pop_front()
                .ok_or("polled after the run finished")?;
            if summaries.is_empty() {
                summaries.push_back(next.clone());
            }
            Ok(next)
        }

        async fn events(&self, after: i64) -> Result<EventPage, String> {
            self.events_requested.borrow_mut().push(after);
            let events: Vec<Event> = self
                .events
                .iter()
                .filter(|event| event.id > after)
                .take(2)
                .cloned()
                .collect();
            let next_after = (events.len() == 2).then(|| events[1].id);
            Ok(EventPage { events, next_after })
        }

        async fn full(&self) -> Result<RunView, String> {
            *self.full_reads.borrow_mut() += 1;
            let mut run = run("succeeded", 4, true);
            run.tasks = Some(Vec::new());
            Ok(run)
        }
    }

    #[tokio::test]
    async fn follow_reads_task_list_once() {
        let source = ScriptedRun::new();
        let run = follow(&source, Duration::ZERO).await.expect("followed");
        assert_eq!(run.status, "succeeded");
        assert!(run.tasks.is_some(), "the returned run has its tasks");
        assert_eq!(
            *source.full_reads.borrow(),
            1,
            "the task list is read once, at the end"
        );
    }

    #[tokio::test]
    async fn follow_pages_events_from_cursor() {
        let source = ScriptedRun::new();
        follow(&source, Duration::ZERO).await.expect("followed");
        assert_eq!(
            *source.events_requested.borrow(),
            [0, 2, 3],
            "each request starts after the last event already read, never from the start again"
        );
    }

    #[test]
    fn running_tasks_follow_events() {
        let mut running = RunningTasks::default();
        for event in [
            event(1, "task.running", "a"),
            event(2, "task.running", "b"),
            event(3, "task.running", "c"),
            event(4, "task.succeeded", "a"),
            event(5, "task.retrying", "b"),
            event(6, "task.running", "b"),
        ] {
            running.apply(&event);
        }
        assert_eq!(
            running.longest(4),
            ["c", "b"],
            "finished tasks leave, and the longest running come first"
        );
        assert_eq!(running.longest(1), ["c"]);
    }
}
