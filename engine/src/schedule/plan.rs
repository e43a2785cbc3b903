//! The decision a scheduler takes for one due schedule, kept apart from the SQL that
//! applies it so that it can be tested without a database.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::MissedTicks;
use super::cron::CronSchedule;

/// How late a scheduler may reach a tick and still start its run as on time. A tick it
/// reaches later than this was missed, as after downtime, and the schedule's
/// [`MissedTicks`] policy decides whether it runs.
pub const MISSED_TICK_GRACE: Duration = Duration::from_secs(10);

/// One step of a due schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TickPlan {
    /// The tick whose run to start.
    pub(crate) run: Option<DateTime<Utc>>,
    /// The tick the schedule waits for after this step.
    pub(crate) next: DateTime<Utc>,
    /// The first and last ticks reached too late, after downtime. Under `run_once` the
    /// last of them is the tick in `run`.
    pub(crate) missed: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// Plans the step for a schedule whose next tick `due` is at or before `now`. Returns
/// `None` when the expression has no tick after the ones handled here, so the schedule can
/// never run again.
///
/// Each on-time tick gets a step of its own, so ticks that fall due together are started
/// one after another. Missed ticks are handled in a single step: `skip` starts no run for
/// them and `run_once` starts one run, for the last of them.
pub(crate) fn plan_tick(
    cron: &CronSchedule,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
    missed_ticks: MissedTicks,
) -> Option<TickPlan> {
    let grace = chrono::Duration::from_std(MISSED_TICK_GRACE).unwrap_or(chrono::Duration::MAX);
    if now - due <= grace {
        return Some(TickPlan {
            run: Some(due),
            next: cron.next_after(due)?,
            missed: None,
        });
    }

    // Every tick up to the cutoff was missed; the ticks after it are still on time and
    // get their own steps.
    let cutoff = now - grace;
    let last_missed = cron
        .last_at_or_before(cutoff)
        .filter(|tick| *tick >= due)
        .unwrap_or(due);
    Some(TickPlan {
        run: (missed_ticks == MissedTicks::RunOnce).then_some(last_missed),
        next: cron.next_after(cutoff)?,
        missed: Some((due, last_missed)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::at;

    fn every_minute() -> CronSchedule {
        CronSchedule::parse("* * * * *", "UTC").expect("valid")
    }

    #[test]
    fn on_time_tick_runs_under_both_policies() {
        for policy in [MissedTicks::Skip, MissedTicks::RunOnce] {
            let plan = plan_tick(
                &every_minute(),
                at("2031-01-01T00:01:00Z"),
                at("2031-01-01T00:01:09Z"),
                policy,
            );
            assert_eq!(
                plan,
                Some(TickPlan {
                    run: Some(at("2031-01-01T00:01:00Z")),
                    next: at("2031-01-01T00:02:00Z"),
                    missed: None,
                }),
                "a tick reached within the grace runs under {policy:?}"
            );
        }
    }

    #[test]
    fn ticks_due_together_run_one_per_step() {
        let cron = CronSchedule::parse("* * * * * *", "UTC").expect("valid");
        let plan = plan_tick(
            &cron,
            at("2031-01-01T00:00:01Z"),
            at("2031-01-01T00:00:05Z"),
            MissedTicks::Skip,
        )
        .expect("a plan");
        assert_eq!(plan.run, Some(at("2031-01-01T00:00:01Z")));
        assert_eq!(
            plan.next,
            at("2031-01-01T00:00:02Z"),
            "the next on-time tick gets the next step"
        );
    }

    #[test]
    fn skip_starts_nothing_for_missed_ticks() {
        let plan = plan_tick(
            &every_minute(),
            at("2031-01-01T00:01:00Z"),
            at("2031-01-01T00:10:45Z"),
            MissedTicks::Skip,
        );
        assert_eq!(
            plan,
            Some(TickPlan {
                run: None,
                next: at("2031-01-01T00:11:00Z"),
                missed: Some((at("2031-01-01T00:01:00Z"), at("2031-01-01T00:10:00Z"))),
            })
        );
    }

    #[test]
    fn run_once_starts_the_last_missed_tick() {
        let plan = plan_tick(
            &every_minute(),
            at("2031-01-01T00:01:00Z"),
            at("2031-01-01T00:10:45Z"),
            MissedTicks::RunOnce,
        );
        assert_eq!(
            plan,
            Some(TickPlan {
                run: Some(at("2031-01-01T00:10:00Z")),
                next: at("2031-01-01T00:11:00Z"),
                missed: Some((at("2031-01-01T00:01:00Z"), at("2031-01-01T00:10:00Z"))),
            })
        );
    }

    #[test]
    fn tick_within_grace_after_downtime_still_runs() {
        // The scheduler comes back 5 s after the 00:10 tick: 00:01 to 00:09 were missed,
        // and 00:10 is on time.
        let now = at("2031-01-01T00:10:05Z");
        let plan = plan_tick(
            &every_minute(),
            at("2031-01-01T00:01:00Z"),
            now,
            MissedTicks::Skip,
        )
        .expect("a plan");
        assert_eq!(plan.run, None);
        assert_eq!(plan.next, at("2031-01-01T00:10:00Z"));

        let next = plan_tick(&every_minute(), plan.next, now, MissedTicks::Skip).expect("a plan");
        assert_eq!(next.run, Some(at("2031-01-01T00:10:00Z")));
        assert_eq!(next.next, at("2031-01-01T00:11:00Z"));
    }

    #[test]
    fn schedule_without_later_ticks_has_no_plan() {
        let never = CronSchedule::parse("0 0 31 2 *", "UTC").expect("parses");
        assert_eq!(
            plan_tick(
                &never,
                at("2031-01-01T00:00:00Z"),
                at("2031-01-01T00:00:01Z"),
                MissedTicks::Skip
            ),
            None
        );
    }
}
