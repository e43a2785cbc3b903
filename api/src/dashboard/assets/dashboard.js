// The dashboard's script: live updates of a run page, periodic refresh of the runs list,
// confirmations and full outputs. Text from the server goes into the page as textContent,
// never as markup, except fragments the server rendered with every value escaped.
"use strict";

(function () {
  const TASK_STATUSES = ["succeeded", "running", "waiting", "ready", "blocked", "failed", "cancelled", "skipped"];
  // The order in which a group box takes the colour of its tasks; the server uses the same.
  const GROUP_PRIORITY = ["failed", "running", "waiting", "ready", "blocked", "cancelled", "skipped", "succeeded"];
  const RUNS_REFRESH_MS = 5000;
  const GANTT_REFRESH_MS = 3000;

  function setStatusClass(element, status) {
    for (const name of Array.from(element.classList)) {
      if (name.startsWith("s-")) {
        element.classList.remove(name);
      }
    }
    element.classList.add("s-" + status);
  }

  function progressText(run) {
    let text = run.succeeded + " of " + run.total + " tasks succeeded";
    for (const [count, word] of [[run.failed, "failed"], [run.skipped, "skipped"], [run.cancelled, "cancelled"]]) {
      if (count > 0) {
        text += " · " + count + " " + word;
      }
    }
    return text;
  }

  function updateRun(root, run) {
    root.dataset.status = run.status;
    const badge = document.getElementById("run-status");
    if (badge) {
      badge.textContent = run.status;
      setStatusClass(badge, run.status);
    }
    const progress = document.getElementById("run-progress");
    if (progress) {
      progress.max = Math.max(run.total, 1);
      progress.value = run.succeeded;
    }
    const text = document.getElementById("run-progress-text");
    if (text) {
      text.textContent = progressText(run);
    }
    const duration = document.getElementById("run-duration");
    if (duration) {
      duration.textContent = run.duration;
    }
    const finished = document.getElementById("run-finished");
    if (finished) {
      finished.textContent = run.finished_at;
    }
    const active = run.status === "queued" || run.status === "running";
    const retryable = run.status === "failed" || run.status === "cancelled";
    for (const form of document.querySelectorAll("form[data-when]")) {
      form.hidden = form.dataset.when === "active" ? !active : !retryable;
    }
  }

  // Group boxes of a collapsed DAG keep their counts from the statuses of their tasks.
  function makeGroups(svg) {
    if (!svg || !svg.dataset.groups) {
      return null;
    }
    return {
      of: JSON.parse(svg.dataset.groups),
      statuses: JSON.parse(svg.dataset.statuses || "[]"),
    };
  }

  function redrawGroup(svg, groups, number) {
    const box = svg.querySelector('g.group[data-g="' + number + '"]');
    if (!box) {
      return;
    }

    const counts = {};
    let total = 0;
    groups.of.forEach(function (group, task) {
      if (group === number) {
        const status = groups.statuses[task];
        counts[status] = (counts[status] || 0) + 1;
        total += 1;
      }
    });

    const colour = GROUP_PRIORITY.find(function (status) { return counts[status] > 0; }) || "blocked";
    setStatusClass(box, colour);
    const summary = TASK_STATUSES.filter(function (status) { return counts[status] > 0; })
      .map(function (status) { return counts[status] + " " + status; })
      .join(" · ");
    const text = box.querySelector("text.counts");
    if (text) {
      text.textContent = summary;
    }

    // The bar spans the box less 8 pixels of padding on each side, as the server draws it.
    const segments = box.querySelectorAll("rect.seg");
    if (segments.length === 0) {
      return;
    }
    const full = Number(box.querySelector("rect").getAttribute("width")) - 16;
    let x = Number(segments[0].getAttribute("x"));
    for (const segment of segments) {
      const share = Math.floor(((counts[segment.dataset.s] || 0) * full) / Math.max(total, 1));
      segment.setAttribute("x", String(x));
      segment.setAttribute("width", String(share));
      x += share;
    }
  }

  // Elements that show a task (DAG node, timeline bar, table row), by task index. One scan
  // of the page, instead of one per update, keeps a first update of 5,000 tasks quick.
  function indexTaskElements() {
    const byTask = new Map();
    for (const element of document.querySelectorAll("[data-i]")) {
      const list = byTask.get(element.dataset.i) || [];
      list.push(element);
      byTask.set(element.dataset.i, list);
    }
    return byTask;
  }

  function updateTask(elements, task, groups, changedGroups) {
    for (const element of elements.get(String(task.i)) || []) {
      if (element.tagName.toLowerCase() === "tr") {
        updateRow(element, task);
      } else {
        setStatusClass(element, task.status);
        const label = element.querySelector("text.st");
        if (label) {
          label.textContent = task.status;
        }
      }
    }
    if (groups && groups.of[task.i] >= 0) {
      groups.statuses[task.i] = task.status;
      changedGroups.add(groups.of[task.i]);
    }
  }

  function updateRow(row, task) {
    const badge = row.querySelector(".c-status .badge");
    if (badge) {
      badge.textContent = task.status;
      setStatusClass(badge, task.status);
    }
    const waiting = row.querySelector(".waiting-for");
    if (waiting) {
      waiting.hidden = task.status !== "waiting";
    }
    const cells = {
      ".c-attempts": String(task.attempts),
      ".c-start": task.start,
      ".c-duration": task.duration,
      ".c-error .err": task.error || "",
    };
    for (const [selector, text] of Object.entries(cells)) {
      const cell = row.querySelector(selector);
      if (cell) {
        cell.textContent = text;
      }
    }
    if (task.output) {
      const output = row.querySelector(".c-output code.out");
      if (output) {
        output.textContent = task.output.text + (task.output.truncated ? "…" : "");
      }
      const full = row.querySelector(".c-output a.full");
      if (full) {
        full.hidden = !task.output.truncated;
      }
    }
  }

  function startLive(root) {
    const svg = document.getElementById("dag");
    const groups = makeGroups(svg);
    const source = new EventSource(root.dataset.live);
    let ganttDue = 0;
    let elements = indexTaskElements();
    const reindex = function () {
      elements = indexTaskElements();
    };

    source.addEventListener("open", function () {
      document.body.dataset.live = "open";
    });
    source.addEventListener("state", function (message) {
      const update = JSON.parse(message.data);
      updateRun(root, update.run);
      const changedGroups = new Set();
      for (const task of update.tasks) {
        updateTask(elements, task, groups, changedGroups);
      }
      for (const number of changedGroups) {
        redrawGroup(svg, groups, number);
      }
      const now = Date.now();
      if (update.tasks.length > 0 && now >= ganttDue) {
        ganttDue = now + GANTT_REFRESH_MS;
        refreshGantt(root, reindex);
      }
      document.body.dataset.liveUpdates = String(Number(document.body.dataset.liveUpdates || "0") + 1);
    });
    source.addEventListener("done", function () {
      source.close();
      document.body.dataset.live = "done";
      refreshGantt(root, reindex);
    });
    source.addEventListener("failed", function (message) {
      source.close();
      document.body.dataset.live = "failed";
      const notice = document.createElement("p");
      notice.className = "error-message";
      notice.textContent = "Live updates stopped: " + message.data + " Reload the page to try again.";
      root.prepend(notice);
    });
  }

  // Fragment requests fail instead of following a redirect, so that an expired session's
  // login page never lands inside the page.
  const FRAGMENT = { credentials: "same-origin", redirect: "error" };

  function refreshGantt(root, then) {
    const target = document.getElementById("gantt");
    if (!target || !root.dataset.gantt) {
      return;
    }
    fetch(root.dataset.gantt, FRAGMENT)
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        // The server renders the fragment with every value escaped.
        if (html !== null) {
          target.innerHTML = html;
          then();
        }
      })
      .catch(function () {});
  }

  function startRunsRefresh(section) {
    setInterval(function () {
      if (document.hidden) {
        return;
      }
      fetch(section.dataset.refresh, FRAGMENT)
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          // The server renders the fragment with every value escaped.
          if (html !== null) {
            section.innerHTML = html;
          }
        })
        .catch(function () {});
    }, RUNS_REFRESH_MS);
  }

  function showFullOutput(link) {
    fetch(link.href, FRAGMENT)
      .then(function (response) {
        if (!response.ok) {
          throw new Error(response.statusText);
        }
        return response.text();
      })
      .then(function (text) {
        const cell = link.closest("td");
        let block = cell.querySelector("pre.full-output");
        if (!block) {
          block = document.createElement("pre");
          block.className = "full-output";
          cell.appendChild(block);
        }
        block.textContent = text;
        link.hidden = true;
      })
      .catch(function () {
        window.location.href = link.href;
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    for (const form of document.querySelectorAll("form[data-confirm]")) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) {
          event.preventDefault();
        }
      });
    }
    document.addEventListener("click", function (event) {
      const link = event.target.closest && event.target.closest("a.full");
      if (link) {
        event.preventDefault();
        showFullOutput(link);
      }
    });
    const root = document.getElementById("run");
    if (root && root.dataset.live) {
      startLive(root);
    }
    const runs = document.getElementById("runs-live");
    if (runs && runs.dataset.refresh) {
      startRunsRefresh(runs);
    }
  });
})();
