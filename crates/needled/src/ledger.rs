//! The ledger's own threads: SQLite never runs on a tokio worker.
//!
//! A write with `synchronous=FULL` waits for an fsync, which on an SD card can take hundreds of
//! milliseconds; a tokio worker stuck in it (while a session lock is held) starves every other
//! task, the API and the dead-man's progress stamp with it. So the [`Store`] that writes lives
//! on one dedicated thread (`needle-ledger`) and a second connection that only reads lives on
//! another (`needle-ledger-read`, WAL lets it read while the writer commits). The async side
//! sends each a job over a channel and awaits the answer on a oneshot: a request/reply API
//! that a later single-owner service actor can keep.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;

use tokio::sync::oneshot;

use crate::store::{LedgerError, Store};

type Job = Box<dyn FnOnce(&mut Store) + Send>;

/// The ledger thread stopped (it cannot: a panicking job is caught; only at shutdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the ledger thread has stopped")]
pub struct LedgerGone;

/// Handle on the ledger threads.
#[derive(Debug, Clone)]
pub struct Ledger {
    writer: mpsc::Sender<Job>,
    reader: mpsc::Sender<Job>,
}

fn serve(name: &str, mut store: Store) -> std::io::Result<mpsc::Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            for job in rx {
                // A panicking job must not take the ledger down with it; its caller sees the
                // reply channel dropped.
                if std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut store))).is_err() {
                    tracing::error!("a ledger job panicked");
                }
            }
        })?;
    Ok(tx)
}

async fn call<T: Send + 'static>(
    to: &mpsc::Sender<Job>,
    f: impl FnOnce(&mut Store) -> T + Send + 'static,
) -> Result<T, LedgerGone> {
    let (reply, answer) = oneshot::channel();
    to.send(Box::new(move |store: &mut Store| {
        let _ = reply.send(f(store));
    }))
    .map_err(|_| LedgerGone)?;
    answer.await.map_err(|_| LedgerGone)
}

impl Ledger {
    /// Starts the writer thread on `store` and a reader thread on a second connection to
    /// the same file.
    pub fn spawn(store: Store) -> Result<Ledger, String> {
        let reader = store
            .reopen()
            .map_err(|e| format!("ledger read connection: {e}"))?;
        Ok(Ledger {
            writer: serve("needle-ledger", store).map_err(|e| format!("ledger thread: {e}"))?,
            reader: serve("needle-ledger-read", reader)
                .map_err(|e| format!("ledger read thread: {e}"))?,
        })
    }

    /// Runs `f` on the writer's connection and returns its result.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        call(&self.writer, f).await.map_err(gone)?
    }

    /// Runs `f` on the reader's connection (it sees every write that has been answered).
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        call(&self.reader, move |s: &mut Store| f(s))
            .await
            .map_err(gone)?
    }
}

fn gone(_: LedgerGone) -> LedgerError {
    LedgerError::Db(rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
        Some(LedgerGone.to_string()),
    ))
}
