//! The ledger's own threads: SQLite never runs on a tokio worker.
//!
//! A write with `synchronous=FULL` waits for an fsync, which on an SD card can take hundreds of
//! milliseconds; a tokio worker stuck in it starves every other task, the API and the
//! dead-man's progress stamp with it. So the [`Store`] that writes lives on one dedicated
//! thread (`needle-ledger`) and a second connection that only reads lives on another
//! (`needle-ledger-read`, WAL lets it read while the writer commits), each a
//! [`crate::worker::Worker`]. Writes come from the session owner
//! ([`crate::session`]); reads come from anywhere.

use crate::store::{LedgerError, Store};
use crate::worker::{Worker, WorkerGone};

/// Handle on the ledger threads.
#[derive(Debug, Clone)]
pub struct Ledger {
    writer: Worker<Store>,
    reader: Worker<Store>,
}

impl Ledger {
    /// Starts the writer thread on `store` and a reader thread on a second connection to
    /// the same file.
    pub fn spawn(store: Store) -> Result<Ledger, String> {
        let reader = store
            .reopen()
            .map_err(|e| format!("ledger read connection: {e}"))?;
        Ok(Ledger {
            writer: Worker::spawn("needle-ledger", store)
                .map_err(|e| format!("ledger thread: {e}"))?,
            reader: Worker::spawn("needle-ledger-read", reader)
                .map_err(|e| format!("ledger read thread: {e}"))?,
        })
    }

    /// Runs `f` on the writer's connection and returns its result.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        self.writer.call(f).await.map_err(gone)?
    }

    /// Runs `f` on the reader's connection (it sees every write that has been answered).
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        self.reader
            .call(move |s: &mut Store| f(s))
            .await
            .map_err(gone)?
    }
}

fn gone(_: WorkerGone) -> LedgerError {
    LedgerError::Db(rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
        Some("the ledger thread has stopped".to_string()),
    ))
}
