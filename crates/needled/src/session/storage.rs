//! The ledger's writes as the session owner makes them, and the degraded-mode backlog: what
//! already happened is kept, in order, while the ledger cannot write, and retried until it is.

use std::sync::Arc;
use std::time::{Duration, Instant};

use needle_core::{Command, State};
use serde_json::json;
use tokio::sync::watch;

use super::types::StorageHealth;
use super::unix_ms;
use crate::control::ControlHandle;
use crate::error::{ApiError, ErrorCode};
use crate::ledger::Ledger;
use crate::store::{Event, LedgerError, Store};

/// A record of something that already happened, kept until the ledger takes it.
type Pending = Arc<dyn Fn(&mut Store) -> Result<(), LedgerError> + Send + Sync>;

/// How often the records kept while degraded are retried.
const RETRY_EVERY: Duration = Duration::from_millis(200);

/// 503 `storage_unavailable`: the ledger cannot write, so nothing is done.
fn storage_unavailable(detail: &str) -> ApiError {
    ApiError::new(
        503,
        ErrorCode::StorageUnavailable,
        format!("the ledger cannot write ({detail}): the needles are stopped and changes are refused until it can"),
    )
}

/// A ledger error as the API reports it.
pub(super) fn ledger_error(e: LedgerError) -> ApiError {
    if e.is_unavailable() {
        storage_unavailable(&e.to_string())
    } else {
        e.into()
    }
}

/// `storage_unavailable` while the ledger is degraded.
pub(super) fn check_writable(health: &StorageHealth) -> Result<(), ApiError> {
    if health.ok {
        return Ok(());
    }
    Err(storage_unavailable(
        health.error.as_deref().unwrap_or("the ledger failed"),
    ))
}

/// The ledger's writer, its health, and the records it could not take yet. Owned by the
/// session owner; the health is published for `/v1/health` on every change.
pub(super) struct Records {
    ledger: Ledger,
    control: Arc<ControlHandle>,
    failed: Option<(i64, String)>,
    /// In order; the key lets the monitor queue "the same" record once.
    pending: Vec<(Option<String>, Pending)>,
    last_retry: Option<Instant>,
    health: watch::Sender<StorageHealth>,
}

impl Records {
    /// Records on `ledger`, and the receiver of their health.
    pub(super) fn new(
        ledger: Ledger,
        control: Arc<ControlHandle>,
    ) -> (Self, watch::Receiver<StorageHealth>) {
        let (health, seen) = watch::channel(StorageHealth {
            ok: true,
            failed_at_ms: None,
            error: None,
            pending: 0,
        });
        let records = Records {
            ledger,
            control,
            failed: None,
            pending: Vec::new(),
            last_retry: None,
            health,
        };
        (records, seen)
    }

    /// The ledger, for reads.
    pub(super) fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    fn publish(&self) {
        let now = StorageHealth {
            ok: self.failed.is_none(),
            failed_at_ms: self.failed.as_ref().map(|f| f.0),
            error: self.failed.as_ref().map(|f| f.1.clone()),
            pending: self.pending.len(),
        };
        self.health.send_if_modified(|h| {
            let changed = *h != now;
            *h = now;
            changed
        });
    }

    /// `storage_unavailable` while degraded.
    pub(super) fn check_writable(&self) -> Result<(), ApiError> {
        match &self.failed {
            Some((_, error)) => Err(storage_unavailable(error)),
            None => Ok(()),
        }
    }

    /// The ledger failed to write: stop the needles, refuse changes, keep records for later.
    fn degrade(&mut self, error: &LedgerError) {
        let first = self.failed.is_none();
        if first {
            let at = unix_ms();
            self.failed = Some((at, error.to_string()));
            let event = Event::new(at, crate::store::SYSTEM_ACTOR, "storage_failed")
                .detail(json!({ "error": error.to_string(), "action": "needles stopped" }));
            self.pending.push((
                None,
                Arc::new(move |s: &mut Store| s.append_event(&event).map(|_| ())),
            ));
            self.publish();
        }
        // Stopping is always allowed; the heartbeat thread and the monitor repeat it.
        let _ = self.control.send(Command::Disarm);
        if first {
            tracing::error!(error = %error, "the ledger cannot write: needles stopped, changes refused until it can");
        }
    }

    /// A write the service has not acted on yet (an intent, a new session, a binding): on
    /// failure nothing is done and nothing is kept; if the ledger cannot write, the service
    /// degrades and the caller gets `storage_unavailable`.
    pub(super) async fn write<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Store) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.check_writable()?;
        match self.ledger.write(f).await {
            Ok(v) => Ok(v),
            Err(e) => {
                if e.is_unavailable() {
                    self.degrade(&e);
                }
                Err(ledger_error(e))
            }
        }
    }

    /// The record of something that already happened (to the rig, or seen from it): written
    /// now, or, when the ledger cannot write, kept in order and retried until it is. Returns
    /// whether it was written now; a refusal by the ledger (not a storage failure) is an
    /// error. A `key` queues a record once while degraded (the monitor sees the same change
    /// every pass until it is written).
    pub(super) async fn persist(
        &mut self,
        key: Option<String>,
        f: impl Fn(&mut Store) -> Result<(), LedgerError> + Send + Sync + 'static,
    ) -> Result<bool, LedgerError> {
        let f: Pending = Arc::new(f);
        if self.failed.is_some() {
            if key.is_none() || !self.pending.iter().any(|(k, _)| *k == key) {
                self.pending.push((key, f));
                self.publish();
            }
            return Ok(false);
        }
        let g = Arc::clone(&f);
        match self.ledger.write(move |s| g(s)).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_unavailable() => {
                self.degrade(&e);
                self.pending.push((key, f));
                self.publish();
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// [`persist`](Self::persist) for a handler: `storage_unavailable` unless written now.
    pub(super) async fn persist_or_refuse(
        &mut self,
        f: impl Fn(&mut Store) -> Result<(), LedgerError> + Send + Sync + 'static,
    ) -> Result<(), ApiError> {
        match self.persist(None, f).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(self
                .check_writable()
                .err()
                .unwrap_or_else(|| storage_unavailable("a record is waiting to be written"))),
            Err(e) => Err(ledger_error(e)),
        }
    }

    /// Appends an event that records something that already happened (see `persist`).
    pub(super) async fn record(&mut self, key: Option<String>, event: Event) {
        let kind = event.kind.clone();
        if let Err(e) = self
            .persist(key, move |s| s.append_event(&event).map(|_| ()))
            .await
        {
            tracing::error!(error = %e, %kind, "could not append an event");
        }
    }

    /// While degraded: keep the needles stopped and retry the kept records in order; once all
    /// are written, record the recovery and accept changes again.
    pub(super) async fn retry(&mut self, t: &needle_core::Telemetry) {
        if self.failed.is_none() {
            return;
        }
        let batch = if self.last_retry.is_some_and(|l| l.elapsed() < RETRY_EVERY) {
            None
        } else {
            self.last_retry = Some(Instant::now());
            Some(std::mem::take(&mut self.pending))
        };
        if matches!(t.state, State::Armed | State::Running | State::Paused) {
            let _ = self.control.send(Command::Disarm);
        }
        let Some(batch) = batch else { return };
        let written = batch.len();
        let rest = match self
            .ledger
            .write(move |s| Ok(write_in_order(s, batch)))
            .await
        {
            Ok(rest) => rest,
            Err(e) => {
                tracing::error!(error = %e, "the ledger thread is gone: kept records lost");
                Vec::new()
            }
        };
        let written = written - rest.len();
        if written > 0 {
            tracing::info!(
                written,
                "records kept while the ledger was failing are written"
            );
        }
        // Nothing was kept meanwhile: the owner waited for the write.
        self.pending = rest;
        self.publish();
        if !self.pending.is_empty() {
            return;
        }
        let failed_at = self.failed.as_ref().map_or(0, |f| f.0);
        let event = Event::new(unix_ms(), crate::store::SYSTEM_ACTOR, "storage_recovered")
            .detail(json!({ "failed_at_ms": failed_at }));
        if let Err(e) = self.ledger.write(move |s| s.append_event(&event)).await {
            tracing::error!(error = %e, "the ledger failed again while recovering");
            return;
        }
        if self.pending.is_empty() {
            self.failed = None;
            self.last_retry = None;
            self.publish();
            tracing::warn!("the ledger writes again: changes accepted; the rig stays disarmed until armed again");
        }
    }
}

/// Writes the kept records in order until the ledger fails again; returns the ones not
/// written. A record the ledger refuses (not a storage failure) is dropped, loudly.
fn write_in_order(
    s: &mut Store,
    batch: Vec<(Option<String>, Pending)>,
) -> Vec<(Option<String>, Pending)> {
    let mut items = batch.into_iter();
    while let Some((key, job)) = items.next() {
        match job(s) {
            Ok(()) => {}
            Err(e) if e.is_unavailable() => {
                let mut rest = vec![(key, job)];
                rest.extend(items);
                return rest;
            }
            Err(e) => {
                tracing::error!(error = %e, "the ledger refused a kept record; dropped");
            }
        }
    }
    Vec::new()
}
