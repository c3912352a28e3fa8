//! Cartridges as the ledger tracks them, and lot recalls.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The needle configuration of a cartridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Needles {
    /// 12 pins.
    Pins12,
    /// 24 pins.
    Pins24,
    /// 36 pins.
    Pins36,
    /// 42 pins.
    Pins42,
    /// A nano (needle-free, textured) tip.
    Nano,
}

/// Where a cartridge is in its life: new -> in_use -> spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CartridgeState {
    /// Registered, never bound to a session.
    New,
    /// Bound to exactly one session.
    InUse,
    /// Used up, removed, expired in use or otherwise retired. Final.
    Spent,
}

/// A cartridge as the ledger knows it, with its remaining budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Cartridge {
    /// Cartridge id (from its tag).
    pub id: String,
    /// Production lot.
    pub lot: String,
    /// Needle configuration.
    pub needles: Needles,
    /// Last day of use, `YYYY-MM-DD`.
    #[schema(format = Date)]
    pub expiry: String,
    /// Life-cycle state.
    pub state: CartridgeState,
    /// The session it is (or was) bound to.
    pub session_id: Option<i64>,
    /// Motor run time used, ms.
    pub run_ms: u64,
    /// Strokes used.
    pub strokes: u64,
    /// Run time left under the limits, ms.
    pub remaining_run_ms: u64,
    /// Strokes left under the limits.
    pub remaining_strokes: u64,
    /// Whether its lot is recalled.
    pub lot_recalled: bool,
    /// First seen, unix ms.
    pub registered_at_ms: i64,
    /// Bound to its session, unix ms.
    pub bound_at_ms: Option<i64>,
    /// Spent, unix ms.
    pub spent_at_ms: Option<i64>,
    /// Why it was spent.
    pub spent_reason: Option<String>,
}

/// The answer to a lot recall: the in-use cartridges of the lot, whose sessions were stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Recalled {
    /// Ids of the cartridges of the lot that were in use.
    pub in_use: Vec<String>,
}
