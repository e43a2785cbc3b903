//! Live progress of a run: a progress bar on a terminal, plain lines otherwise.

use std::future::Future;
use std::io::IsTerminal as _;
use std::time::Duration;

use caraml_engine::RunView;
use indicatif::{ProgressBar, ProgressStyle};

/// Polls `fetch` until the run finishes and returns its final state.
pub(crate) async fn follow<F, Fut>(mut fetch: F) -> Result<RunView, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<RunView, String>>,
{
    let terminal = std::io::stdout().is_terminal();
    let mut bar: Option<ProgressBar> = None;
    let mut last_line = String::new();
    loop {
        let run = fetch().await?;
        let done = run.tasks_succeeded + run.tasks_failed + run.tasks_skipped + run.tasks_cancelled;
        let running: Vec<&str> = run
            .tasks
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|t| t.status == "running")
            .map(|t| t.name.as_str())
            .take(4)
            .collect();
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
        if terminal {
            let bar = bar.get_or_insert_with(|| {
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
            if line != last_line {
                say!("{line}");
                last_line = line;
            }
        }
        if run.finished_at.is_some() {
            if let Some(bar) = &bar {
                bar.finish();
            }
            return Ok(run);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
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
