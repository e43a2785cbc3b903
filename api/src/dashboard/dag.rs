//! A run's DAG drawn as SVG, laid out in layers from left to right.
//!
//! Each task sits in the layer of its longest path from a root, and within a layer the
//! tasks are ordered by the mean position of their parents, which keeps most edges from
//! crossing. Runs of more than [`COLLAPSE_ABOVE`] tasks draw one box per group of
//! same-named siblings in a layer (`month_01` to `month_12` form the group `month`), or
//! one box per layer when a layer has too many such groups. A box shows the counts by
//! status, and a click expands it into its tasks.

use std::collections::{BTreeMap, HashMap, HashSet};

use caraml_engine::TaskView;
use maud::{Markup, html};

/// Runs with more tasks than this are drawn with collapsed groups.
pub(super) const COLLAPSE_ABOVE: usize = 300;

/// A layer with more groups than this is drawn as one box.
const MAX_GROUPS_PER_LAYER: usize = 40;

/// Items per column of a layer; a longer layer wraps into more columns.
const MAX_ROWS: usize = 40;

const ITEM_WIDTH: i64 = 150;
const ITEM_HEIGHT: i64 = 38;
const ROW_GAP: i64 = 8;
const LAYER_GAP: i64 = 56;
const COLUMN_GAP: i64 = 20;
const MARGIN: i64 = 10;
const LABEL_CHARS: usize = 19;

/// Task statuses in the order their segments appear in a group's bar.
pub(super) const TASK_STATUSES: [&str; 8] = [
    "succeeded",
    "running",
    "waiting",
    "ready",
    "blocked",
    "failed",
    "cancelled",
    "skipped",
];

/// Returns the layer of every node: roots are in layer 0, and every other node is one
/// layer after its deepest parent. Nodes on a cycle, which a checked spec never has, stay
/// in layer 0.
pub(super) fn layers(parents: &[Vec<usize>]) -> Vec<usize> {
    let count = parents.len();
    let mut children = vec![Vec::new(); count];
    let mut pending: Vec<usize> = parents.iter().map(Vec::len).collect();
    for (node, node_parents) in parents.iter().enumerate() {
        for &parent in node_parents {
            children[parent].push(node);
        }
    }
    let mut layer = vec![0; count];
    let mut ready: Vec<usize> = (0..count).filter(|&node| pending[node] == 0).collect();
    while let Some(node) = ready.pop() {
        for &child in &children[node] {
            layer[child] = layer[child].max(layer[node] + 1);
            pending[child] -= 1;
            if pending[child] == 0 {
                ready.push(child);
            }
        }
    }
    layer
}

/// Returns the name a task shares with its siblings: the name without trailing digits and
/// separators, so that `month_07` and `month_12` share `month`.
pub(super) fn family(name: &str) -> &str {
    let trimmed = name.trim_end_matches(|c: char| c.is_ascii_digit() || "_-.:".contains(c));
    if trimmed.is_empty() { name } else { trimmed }
}

/// The task or group of tasks that one box of the drawing shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Item {
    Task(usize),
    Group(usize),
}

/// Collapsed tasks of one layer.
#[derive(Debug, Clone)]
pub(super) struct Group {
    /// Identifies the group in the `expand` query parameter.
    pub(super) key: String,
    pub(super) label: String,
    pub(super) members: Vec<usize>,
}

/// Boxes of a drawing, ordered within each layer.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) items: Vec<Item>,
    pub(super) groups: Vec<Group>,
    /// Item indexes of each layer, in drawing order.
    pub(super) layers: Vec<Vec<usize>>,
    /// Parent items of each item, without repeats.
    pub(super) parents: Vec<Vec<usize>>,
    /// Group of each task, when it is drawn inside one.
    pub(super) task_group: Vec<Option<usize>>,
}

/// Plans the boxes of a DAG. `expanded` lists the keys of groups to draw as their tasks.
pub(super) fn plan(names: &[&str], parents: &[Vec<usize>], expanded: &HashSet<String>) -> Plan {
    let task_layers = layers(parents);
    let layer_count = task_layers.iter().max().map_or(0, |max| max + 1);
    let mut by_layer: Vec<Vec<usize>> = vec![Vec::new(); layer_count];
    for (task, &layer) in task_layers.iter().enumerate() {
        by_layer[layer].push(task);
    }

    let mut items = Vec::new();
    let mut groups: Vec<Group> = Vec::new();
    let mut item_layer = Vec::new();
    let mut task_item = vec![0; names.len()];
    let mut task_group = vec![None; names.len()];
    let collapse = names.len() > COLLAPSE_ABOVE;
    for (layer, tasks) in by_layer.iter().enumerate() {
        if !collapse {
            for &task in tasks {
                task_item[task] = items.len();
                items.push(Item::Task(task));
                item_layer.push(layer);
            }
            continue;
        }
        let mut families: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for &task in tasks {
            families.entry(family(names[task])).or_default().push(task);
        }
        let buckets: Vec<(String, String, Vec<usize>)> = if families.len() > MAX_GROUPS_PER_LAYER {
            vec![(format!("L{layer}"), format!("layer {layer}"), tasks.clone())]
        } else {
            families
                .into_iter()
                .map(|(name, members)| (format!("L{layer}:{name}"), format!("{name}*"), members))
                .collect()
        };
        for (key, label, members) in buckets {
            if members.len() == 1 || expanded.contains(&key) {
                for task in members {
                    task_item[task] = items.len();
                    items.push(Item::Task(task));
                    item_layer.push(layer);
                }
                continue;
            }
            let group = groups.len();
            for &task in &members {
                task_item[task] = items.len();
                task_group[task] = Some(group);
            }
            items.push(Item::Group(group));
            item_layer.push(layer);
            groups.push(Group {
                key,
                label,
                members,
            });
        }
    }

    let mut item_parents: Vec<Vec<usize>> = vec![Vec::new(); items.len()];
    for (task, task_parents) in parents.iter().enumerate() {
        let item = task_item[task];
        for &parent in task_parents {
            let parent_item = task_item[parent];
            if parent_item != item && !item_parents[item].contains(&parent_item) {
                item_parents[item].push(parent_item);
            }
        }
    }

    let mut layers: Vec<Vec<usize>> = vec![Vec::new(); layer_count];
    for (item, &layer) in item_layer.iter().enumerate() {
        layers[layer].push(item);
    }
    order_by_parents(&mut layers, &item_parents);
    Plan {
        items,
        groups,
        layers,
        parents: item_parents,
        task_group,
    }
}

/// Orders each layer after the first by the mean relative position of each item's parents
/// (the barycenter heuristic), keeping the given order among equal means.
fn order_by_parents(layers: &mut [Vec<usize>], parents: &[Vec<usize>]) {
    let item_count = parents.len();
    let mut position = vec![0.0_f64; item_count];
    for layer in layers.iter_mut() {
        let mut keyed: Vec<(f64, usize)> = layer
            .iter()
            .enumerate()
            .map(|(rank, &item)| {
                let key = if parents[item].is_empty() {
                    rank as f64 / layer_len(layer.len())
                } else {
                    parents[item].iter().map(|&p| position[p]).sum::<f64>()
                        / parents[item].len() as f64
                };
                (key, item)
            })
            .collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
        let len = layer_len(keyed.len());
        for (rank, (_, item)) in keyed.iter().enumerate() {
            position[*item] = (rank as f64 + 0.5) / len;
        }
        *layer = keyed.into_iter().map(|(_, item)| item).collect();
    }
}

fn layer_len(len: usize) -> f64 {
    len.max(1) as f64
}

/// The top-left corner of a box.
#[derive(Debug, Clone, Copy)]
struct Place {
    x: i64,
    y: i64,
}

fn places(plan: &Plan) -> (Vec<Place>, i64, i64) {
    let tallest = plan
        .layers
        .iter()
        .map(|layer| layer.len().min(MAX_ROWS))
        .max()
        .unwrap_or(0) as i64;
    let row = ITEM_HEIGHT + ROW_GAP;
    let mut place = vec![Place { x: 0, y: 0 }; plan.items.len()];
    let mut x = MARGIN;
    for layer in &plan.layers {
        let rows = layer.len().min(MAX_ROWS) as i64;
        let offset = (tallest - rows) * row / 2;
        let columns = layer.len().div_ceil(MAX_ROWS).max(1) as i64;
        for (rank, &item) in layer.iter().enumerate() {
            let column = (rank / MAX_ROWS) as i64;
            let row_index = (rank % MAX_ROWS) as i64;
            place[item] = Place {
                x: x + column * (ITEM_WIDTH + COLUMN_GAP),
                y: MARGIN + offset + row_index * row,
            };
        }
        x += columns * ITEM_WIDTH + (columns - 1) * COLUMN_GAP + LAYER_GAP;
    }
    let width = x - LAYER_GAP + MARGIN;
    let height = 2 * MARGIN + tallest * row - ROW_GAP;
    (place, width.max(ITEM_WIDTH), height.max(ITEM_HEIGHT))
}

/// Returns the status a group box is coloured by: the most pressing status among its
/// tasks. The page's script computes the same when counts change.
pub(super) fn group_status(counts: &HashMap<&str, usize>) -> &'static str {
    const PRIORITY: [&str; 8] = [
        "failed",
        "running",
        "waiting",
        "ready",
        "blocked",
        "cancelled",
        "skipped",
        "succeeded",
    ];
    PRIORITY
        .into_iter()
        .find(|status| counts.get(status).is_some_and(|&count| count > 0))
        .unwrap_or("blocked")
}

/// Returns the expand parameter with `key` added.
fn expand_with(expanded: &HashSet<String>, key: &str) -> String {
    let mut keys: Vec<&str> = expanded.iter().map(String::as_str).collect();
    keys.push(key);
    keys.sort_unstable();
    let joined = keys.join(",");
    form_urlencoded::Serializer::new(String::new())
        .append_pair("expand", &joined)
        .finish()
}

/// Draws the DAG of a run's tasks.
pub(super) fn render(tasks: &[TaskView], expanded: &HashSet<String>) -> Markup {
    let index: HashMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, task)| (task.name.as_str(), i))
        .collect();
    let names: Vec<&str> = tasks.iter().map(|task| task.name.as_str()).collect();
    let parents: Vec<Vec<usize>> = tasks
        .iter()
        .map(|task| {
            task.depends_on
                .iter()
                .filter_map(|name| index.get(name.as_str()).copied())
                .collect()
        })
        .collect();
    let plan = plan(&names, &parents, expanded);
    let (place, width, height) = places(&plan);
    let groups_json = (!plan.groups.is_empty()).then(|| {
        let mapping: Vec<i64> = plan
            .task_group
            .iter()
            .map(|group| group.map_or(-1, |g| g as i64))
            .collect();
        serde_json::to_string(&mapping).unwrap_or_default()
    });
    let statuses_json = serde_json::to_string(
        &tasks
            .iter()
            .map(|task| task.status.as_str())
            .collect::<Vec<_>>(),
    )
    .unwrap_or_default();

    html! {
        @if !plan.groups.is_empty() || !expanded.is_empty() {
            p.hint {
                (tasks.len()) " tasks: groups of sibling tasks are collapsed; click a box to expand it."
                @if !expanded.is_empty() {
                    " " a href="?" { "Collapse all" }
                }
            }
        }
        div.dag-scroll {
            svg.dag #dag xmlns="http://www.w3.org/2000/svg" width=(width) height=(height)
                viewBox=(format!("0 0 {width} {height}"))
                data-groups=[groups_json.as_deref()] data-statuses=(statuses_json) {
                g.edges {
                    @for (item, item_parents) in plan.parents.iter().enumerate() {
                        @for &parent in item_parents {
                            path d=(edge_path(place[parent], place[item])) {}
                        }
                    }
                }
                @for (item, kind) in plan.items.iter().enumerate() {
                    @match kind {
                        Item::Task(task) => (task_box(&tasks[*task], *task, place[item])),
                        Item::Group(group) => (group_box(&plan.groups[*group], *group, tasks, place[item], expanded)),
                    }
                }
            }
        }
    }
}

fn edge_path(from: Place, to: Place) -> String {
    let (x1, y1) = (from.x + ITEM_WIDTH, from.y + ITEM_HEIGHT / 2);
    let (x2, y2) = (to.x, to.y + ITEM_HEIGHT / 2);
    let bend = (x2 - x1).abs() / 2;
    format!(
        "M{x1} {y1} C{} {y1} {} {y2} {x2} {y2}",
        x1 + bend,
        x2 - bend
    )
}

fn task_box(task: &TaskView, index: usize, at: Place) -> Markup {
    let (label, _) = super::format::shorten(&task.name, LABEL_CHARS);
    html! {
        a href=(format!("#t-{index}")) {
            g class=(format!("node s-{}", task.status)) data-i=(index) {
                title { (task.name) " (" (task.kind) ")" }
                rect x=(at.x) y=(at.y) width=(ITEM_WIDTH) height=(ITEM_HEIGHT) rx="5" {}
                text.name x=(at.x + 8) y=(at.y + 16) { (label) }
                text.st x=(at.x + 8) y=(at.y + 31) { (task.status) }
            }
        }
    }
}

fn group_box(
    group: &Group,
    number: usize,
    tasks: &[TaskView],
    at: Place,
    expanded: &HashSet<String>,
) -> Markup {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for &member in &group.members {
        *counts.entry(tasks[member].status.as_str()).or_default() += 1;
    }
    let total = group.members.len();
    let summary = TASK_STATUSES
        .iter()
        .filter_map(|status| {
            counts
                .get(status)
                .filter(|&&count| count > 0)
                .map(|count| format!("{count} {status}"))
        })
        .collect::<Vec<_>>()
        .join(" · ");
    let bar_width = ITEM_WIDTH - 16;
    let mut segments = Vec::with_capacity(TASK_STATUSES.len());
    let mut offset = 0;
    for status in TASK_STATUSES {
        let count = counts.get(status).copied().unwrap_or(0);
        let width = (count as i64 * bar_width) / (total.max(1) as i64);
        segments.push((status, offset, width));
        offset += width;
    }
    let (label, _) = super::format::shorten(&group.label, LABEL_CHARS - 6);
    html! {
        a href=(format!("?{}#dag", expand_with(expanded, &group.key))) {
            g class=(format!("group s-{}", group_status(&counts))) data-g=(number) data-total=(total) {
                title { (group.label) ": " (total) " tasks; " (summary) ". Click to expand." }
                rect x=(at.x) y=(at.y) width=(ITEM_WIDTH) height=(ITEM_HEIGHT) rx="5" {}
                text.name x=(at.x + 8) y=(at.y + 14) { (label) " ×" (total) }
                text.counts x=(at.x + 8) y=(at.y + 27) { (summary) }
                @for (status, x, width) in segments {
                    rect class=(format!("seg b-{status}")) data-s=(status)
                        x=(at.x + 8 + x) y=(at.y + 31) width=(width) height="4" {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_expansion() -> HashSet<String> {
        HashSet::new()
    }

    #[test]
    fn layers_follow_longest_path() {
        // 0 -> 1 -> 2, and 0 -> 2 directly: 2 sits after 1, not beside it.
        let parents = vec![vec![], vec![0], vec![0, 1], vec![]];
        assert_eq!(layers(&parents), vec![0, 1, 2, 0]);
    }

    #[test]
    fn layers_of_a_diamond() {
        let parents = vec![vec![], vec![0], vec![0], vec![1, 2]];
        assert_eq!(layers(&parents), vec![0, 1, 1, 2]);
    }

    #[test]
    fn children_follow_their_parents_order() {
        // Roots a (0) and b (1); child of b (2) is listed before child of a (3).
        let names = ["a", "b", "from_b", "from_a"];
        let parents = vec![vec![], vec![], vec![1], vec![0]];
        let plan = plan(&names, &parents, &no_expansion());
        let second: Vec<&Item> = plan.layers[1].iter().map(|&i| &plan.items[i]).collect();
        assert_eq!(
            second,
            vec![&Item::Task(3), &Item::Task(2)],
            "the child of the first root comes first, so the edges do not cross"
        );
    }

    #[test]
    fn family_strips_numbered_suffixes() {
        assert_eq!(family("month_07"), "month");
        assert_eq!(family("shard-12.3"), "shard");
        assert_eq!(family("report"), "report");
        assert_eq!(family("42"), "42", "a name of digits keeps its name");
    }

    fn fan_out(width: usize) -> (Vec<String>, Vec<Vec<usize>>) {
        let mut names = vec!["load".to_owned()];
        let mut parents = vec![vec![]];
        for i in 0..width {
            names.push(format!("shard_{i:04}"));
            parents.push(vec![0]);
        }
        names.push("report".to_owned());
        parents.push((1..=width).collect());
        (names, parents)
    }

    #[test]
    fn small_runs_draw_every_task() {
        let (names, parents) = fan_out(200);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let plan = plan(&names, &parents, &no_expansion());
        assert!(plan.groups.is_empty(), "202 tasks are drawn one by one");
        assert_eq!(plan.items.len(), 202);
    }

    #[test]
    fn large_runs_collapse_siblings() {
        let (names, parents) = fan_out(5000);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let plan = plan(&names, &parents, &no_expansion());
        assert_eq!(plan.items.len(), 3, "load, one box of shards, report");
        assert_eq!(plan.groups.len(), 1);
        assert_eq!(plan.groups[0].members.len(), 5000);
        assert_eq!(plan.groups[0].key, "L1:shard");
        assert_eq!(
            plan.parents[2].len(),
            1,
            "one edge from the box to the report"
        );

        let expanded = HashSet::from(["L1:shard".to_owned()]);
        let plan = super::plan(&names, &parents, &expanded);
        assert!(plan.groups.is_empty(), "an expanded group draws its tasks");
        assert_eq!(plan.items.len(), 5002);
    }

    #[test]
    fn layer_of_many_families_is_one_box() {
        let mut names = vec!["root".to_owned()];
        let mut parents = vec![vec![]];
        for i in 0..400 {
            names.push(format!("task{i}x"));
            parents.push(vec![0]);
        }
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let plan = plan(&names, &parents, &no_expansion());
        assert_eq!(plan.groups.len(), 1);
        assert_eq!(plan.groups[0].key, "L1");
    }

    #[test]
    fn group_colour_shows_failures_first() {
        let counts = HashMap::from([("succeeded", 5), ("failed", 1), ("running", 2)]);
        assert_eq!(group_status(&counts), "failed");
        let counts = HashMap::from([("succeeded", 5)]);
        assert_eq!(group_status(&counts), "succeeded");
    }

    #[test]
    fn drawing_escapes_names_and_places_every_box() {
        let (names, parents) = fan_out(3);
        let tasks: Vec<TaskView> = names
            .iter()
            .zip(&parents)
            .map(|(name, task_parents)| TaskView {
                name: name.clone(),
                kind: "sleep".to_owned(),
                status: "succeeded".to_owned(),
                depends_on: task_parents.iter().map(|&p| names[p].clone()).collect(),
                queue: "default".to_owned(),
                attempts: 1,
                started_at: None,
                finished_at: None,
                run_at: chrono::Utc::now(),
                error: None,
                output: None,
                waits: serde_json::Value::Null,
                waiting_for: None,
                concurrency_key: None,
            })
            .collect();
        let svg = render(&tasks, &no_expansion()).into_string();
        assert_eq!(svg.matches("class=\"node s-succeeded\"").count(), 5);
        assert_eq!(svg.matches("<path ").count(), 6, "3 edges in, 3 out");
    }
}
