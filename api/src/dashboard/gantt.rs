//! A timeline of a run's tasks as SVG: one bar per task from its start to its finish,
//! coloured by status. Runs of more than [`dag::COLLAPSE_ABOVE`] tasks draw one bar per
//! layer of the DAG, from its first start to its last finish.

use caraml_engine::{RunView, TaskView};
use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::dag;
use super::format;

const LABEL_WIDTH: i64 = 200;
const CHART_WIDTH: i64 = 760;
const ROW_HEIGHT: i64 = 18;
const BAR_HEIGHT: i64 = 12;
const AXIS_HEIGHT: i64 = 22;
const TICKS: i64 = 5;

/// One row of the chart.
struct Row {
    label: String,
    status: String,
    /// The task the row shows, for live colour changes.
    task: Option<usize>,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
}

/// Draws the timeline of a run's tasks, with running tasks' bars ending at `now`.
pub(super) fn render(run: &RunView, tasks: &[TaskView], now: DateTime<Utc>) -> Markup {
    let rows = if tasks.len() > dag::COLLAPSE_ABOVE {
        layer_rows(tasks)
    } else {
        task_rows(tasks)
    };
    let Some(origin) = rows
        .iter()
        .filter_map(|row| row.start)
        .min()
        .or(run.started_at)
    else {
        return html! { p.hint { "No task has started yet." } };
    };
    let end = rows
        .iter()
        .filter_map(|row| row.end.or(row.start.map(|_| now)))
        .max()
        .unwrap_or(now)
        .max(origin + chrono::Duration::milliseconds(1));
    let span = (end - origin).num_milliseconds().max(1);
    let x_of = |at: DateTime<Utc>| -> i64 {
        LABEL_WIDTH + ((at - origin).num_milliseconds().clamp(0, span) * CHART_WIDTH) / span
    };
    let height = AXIS_HEIGHT + rows.len() as i64 * ROW_HEIGHT + 4;
    let width = LABEL_WIDTH + CHART_WIDTH + 10;

    html! {
        div.gantt-scroll {
            svg.gantt xmlns="http://www.w3.org/2000/svg" width=(width) height=(height)
                viewBox=(format!("0 0 {width} {height}")) {
                @for tick in 0..=TICKS {
                    @let x = LABEL_WIDTH + tick * CHART_WIDTH / TICKS;
                    line.tick x1=(x) x2=(x) y1=(AXIS_HEIGHT - 4) y2=(height) {}
                    text.axis x=(x) y="12" text-anchor=(if tick == TICKS { "end" } else { "middle" }) {
                        "+" (format::human_millis(span * tick / TICKS))
                    }
                }
                @for (number, row) in rows.iter().enumerate() {
                    @let y = AXIS_HEIGHT + number as i64 * ROW_HEIGHT;
                    text.label x=(LABEL_WIDTH - 6) y=(y + BAR_HEIGHT) text-anchor="end" {
                        (format::shorten(&row.label, 28).0)
                    }
                    @if let Some(start) = row.start {
                        @let x = x_of(start);
                        @let bar_end = x_of(row.end.unwrap_or(now)).max(x + 2);
                        rect class=(format!("bar s-{}", row.status)) data-i=[row.task]
                            x=(x) y=(y + 2) width=(bar_end - x) height=(BAR_HEIGHT) rx="2" {
                            title {
                                (row.label) ": " (row.status) ", "
                                (format::duration(row.start, row.end, now))
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Returns one row per task, in order of start, with tasks not started at the end.
fn task_rows(tasks: &[TaskView]) -> Vec<Row> {
    let mut order: Vec<usize> = (0..tasks.len()).collect();
    order.sort_by_key(|&i| (tasks[i].started_at.is_none(), tasks[i].started_at, i));
    order
        .into_iter()
        .map(|i| Row {
            label: tasks[i].name.clone(),
            status: tasks[i].status.clone(),
            task: Some(i),
            start: tasks[i].started_at,
            end: tasks[i].finished_at,
        })
        .collect()
}

/// Returns one row per layer of the DAG, from its tasks' first start to their last finish.
fn layer_rows(tasks: &[TaskView]) -> Vec<Row> {
    let index: std::collections::HashMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, task)| (task.name.as_str(), i))
        .collect();
    let parents: Vec<Vec<usize>> = tasks
        .iter()
        .map(|task| {
            task.depends_on
                .iter()
                .filter_map(|name| index.get(name.as_str()).copied())
                .collect()
        })
        .collect();
    let layers = dag::layers(&parents);
    let layer_count = layers.iter().max().map_or(0, |max| max + 1);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); layer_count];
    for (task, &layer) in layers.iter().enumerate() {
        members[layer].push(task);
    }
    members
        .into_iter()
        .enumerate()
        .map(|(layer, tasks_of_layer)| {
            let mut counts = std::collections::HashMap::new();
            for &task in &tasks_of_layer {
                *counts.entry(tasks[task].status.as_str()).or_insert(0) += 1;
            }
            let start = tasks_of_layer
                .iter()
                .filter_map(|&t| tasks[t].started_at)
                .min();
            let unfinished = tasks_of_layer
                .iter()
                .any(|&t| tasks[t].finished_at.is_none());
            let end = if unfinished {
                None
            } else {
                tasks_of_layer
                    .iter()
                    .filter_map(|&t| tasks[t].finished_at)
                    .max()
            };
            Row {
                label: format!("layer {layer} ({} tasks)", tasks_of_layer.len()),
                status: dag::group_status(&counts).to_owned(),
                task: None,
                start,
                end,
            }
        })
        .collect()
}
