//! Wake-ups by LISTEN/NOTIFY: ready tasks and cancelled runs.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Shared, StopReason, backoff};
use crate::store::{CANCEL_CHANNEL, READY_CHANNEL};

/// Listens until `stop` is cancelled, reconnecting after failures. After a reconnect the
/// claim loop is woken, since notifications sent meanwhile were lost.
pub(super) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let mut failures: u32 = 0;
    loop {
        let mut listener = match connect(&shared).await {
            Ok(listener) => listener,
            Err(err) => {
                failures += 1;
                tracing::warn!(worker.id = %shared.worker_id, error = %err, "could not listen for notifications");
                tokio::select! {
                    () = tokio::time::sleep(backoff(failures)) => continue,
                    () = stop.cancelled() => return,
                }
            }
        };
        if failures > 0 {
            shared.wake.notify_one();
        }
        failures = 0;
        loop {
            let received = tokio::select! {
                received = listener.try_recv() => received,
                () = stop.cancelled() => return,
            };
            match received {
                Ok(Some(notification)) => {
                    handle(&shared, notification.channel(), notification.payload())
                }
                Ok(None) => {
                    tracing::debug!("notification connection was re-established");
                    shared.wake.notify_one();
                }
                Err(err) => {
                    failures += 1;
                    tracing::warn!(worker.id = %shared.worker_id, error = %err, "notification connection failed");
                    shared.wake.notify_one();
                    break;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff(failures)) => {}
            () = stop.cancelled() => return,
        }
    }
}

async fn connect(shared: &Shared) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(shared.store.pool()).await?;
    listener.listen_all([READY_CHANNEL, CANCEL_CHANNEL]).await?;
    Ok(listener)
}

fn handle(shared: &Shared, channel: &str, payload: &str) {
    if channel == CANCEL_CHANNEL {
        if let Ok(run_id) = payload.parse::<Uuid>() {
            shared.stop_where(StopReason::RunCancelled, |key, _| key.0 == run_id);
        }
        return;
    }
    let (queue, due_ms) = match payload.split_once('@') {
        Some((queue, due)) => (queue, due.parse::<u64>().ok()),
        None => (payload, None),
    };
    if queue != shared.options.queue {
        return;
    }
    match due_ms.and_then(instant_from_unix_ms) {
        Some(due) if due > Instant::now() => {
            shared.set_due(due);
            shared.wake.notify_one();
        }
        _ => shared.wake.notify_one(),
    }
}

/// Converts a Unix time in milliseconds, as the database's clock gave it, to an `Instant`.
fn instant_from_unix_ms(ms: u64) -> Option<Instant> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    let ahead = Duration::from_millis(ms.saturating_sub(now_ms));
    Instant::now().checked_add(ahead)
}
