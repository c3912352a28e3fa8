//! needled: the host service of the needle pen.
//!
//! Module map (see `docs/architecture.md`):
//! - [`control`]: the real-time control thread running the core at a fixed rate.
//! - [`realtime`]: memory locking, the control thread's own CPU, a pre-faulted stack.
//! - [`session`]: treatment sessions, the ledger and the controller kept in step by one owner
//!   task that API handlers and the monitor's timer send messages to.
//! - [`api`], [`auth`], [`error`]: the HTTP API, its tokens and its error codes.
//! - [`console`]: the operator web console served at `/` from embedded assets.
//! - [`config`]: the TOML configuration, validated with file, line and key in every error.
//! - [`hal`]: hardware backends that build the core's `Hardware`: sim, rppal, linux.
//! - [`startup`]: the start order: the hardware at its safe levels first, then the records.
//! - [`cartridge`]: cartridge tags (format, HMAC-SHA256 under the device key, expiry dates)
//!   and the ledger's cartridge rules (life cycle, budgets, what may be used).
//! - [`store`]: the SQLite ledger of cartridges, sessions and the append-only event log.
//! - [`ledger`]: the threads the ledger runs on, off the async runtime.
//! - [`worker`]: a value owned by one OS thread, reached by request and reply.

pub mod api;
pub mod auth;
pub mod cartridge;
pub mod clock;
pub mod config;
pub mod console;
pub mod control;
pub mod error;
pub mod hal;
pub mod host;
pub mod ledger;
pub mod realtime;
pub mod record;
pub mod session;
pub mod startup;
pub mod store;
pub mod tls;
pub mod worker;
