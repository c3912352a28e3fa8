//! Cartridges: the sterile single-use needle cartridges as tracked assets: their rows and
//! events. The rules (states new -> in_use -> spent, budgets, what may be used) are in
//! [`crate::cartridge`]; this file reads what they need and writes what they decide.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;
use serde_json::json;

use crate::cartridge::{self, Date, Needles, Refusal, Registered, Tag, Usage};
pub use crate::cartridge::{CartridgeLimits, CartridgeState};

use super::events::{self, kinds, Event};
use super::{
    parse_stored, sessions, stored_u64, validate, LedgerError, Now, SessionId, Store, SYSTEM_ACTOR,
};

/// A cartridge as the ledger knows it, with its remaining budget under the limits the caller
/// passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CartridgeRecord {
    /// Cartridge id (from its tag).
    pub id: String,
    /// Production lot.
    pub lot: String,
    /// Needle configuration.
    pub needles: Needles,
    /// Last day of use.
    pub expiry: Date,
    /// Life-cycle state.
    pub state: CartridgeState,
    /// The session it is (or was) bound to.
    pub session_id: Option<SessionId>,
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

impl CartridgeRecord {
    /// Whether the run-time or the stroke budget is used up.
    pub fn budget_exhausted(&self) -> bool {
        self.remaining().is_exhausted()
    }

    fn remaining(&self) -> Usage {
        Usage {
            run_ms: self.remaining_run_ms,
            strokes: self.remaining_strokes,
        }
    }

    /// What the rules need to know of this cartridge.
    fn registered(&self) -> Registered<'_> {
        Registered {
            lot: &self.lot,
            needles: self.needles,
            expiry: self.expiry,
            state: self.state,
            session_id: self.session_id,
            used: Usage {
                run_ms: self.run_ms,
                strokes: self.strokes,
            },
        }
    }
}

/// An in-use cartridge of a recalled lot: the service must stop its session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InUseCartridge {
    /// Cartridge id.
    pub cartridge_id: String,
    /// Its lot.
    pub lot: String,
    /// The session it is bound to.
    pub session_id: SessionId,
}

const CARTRIDGE_COLUMNS: &str = "c.id, c.lot, c.needles, c.expiry, c.state, c.session_id, \
     c.run_ms, c.strokes, c.registered_at_ms, c.bound_at_ms, c.spent_at_ms, c.spent_reason, \
     EXISTS (SELECT 1 FROM recalled_lots r WHERE r.lot = c.lot)";

fn from_row(row: &Row<'_>, limits: &CartridgeLimits) -> Result<CartridgeRecord, LedgerError> {
    let needles: String = row.get(2)?;
    let expiry: String = row.get(3)?;
    let state: String = row.get(4)?;
    let run_ms = stored_u64("cartridges.run_ms", row.get(6)?)?;
    let strokes = stored_u64("cartridges.strokes", row.get(7)?)?;
    let remaining = limits.remaining(Usage { run_ms, strokes });
    Ok(CartridgeRecord {
        id: row.get(0)?,
        lot: row.get(1)?,
        needles: parse_stored("cartridges.needles", &needles)?,
        expiry: parse_stored("cartridges.expiry", &expiry)?,
        state: parse_stored("cartridges.state", &state)?,
        session_id: row.get(5)?,
        run_ms,
        strokes,
        remaining_run_ms: remaining.run_ms,
        remaining_strokes: remaining.strokes,
        lot_recalled: row.get(12)?,
        registered_at_ms: row.get(8)?,
        bound_at_ms: row.get(9)?,
        spent_at_ms: row.get(10)?,
        spent_reason: row.get(11)?,
    })
}

/// The cartridge `id`, if registered.
pub(super) fn load(
    conn: &Connection,
    id: &str,
    limits: &CartridgeLimits,
) -> Result<Option<CartridgeRecord>, LedgerError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {CARTRIDGE_COLUMNS} FROM cartridges c WHERE c.id = ?1"
    ))?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(row) => from_row(row, limits).map(Some),
        None => Ok(None),
    }
}

/// The cartridge `id`, or [`LedgerError::NotFound`].
pub(super) fn require(
    conn: &Connection,
    id: &str,
    limits: &CartridgeLimits,
) -> Result<CartridgeRecord, LedgerError> {
    load(conn, id, limits)?.ok_or_else(|| LedgerError::NotFound {
        what: "cartridge",
        id: id.to_owned(),
    })
}

fn lot_is_recalled(conn: &Connection, lot: &str) -> Result<bool, LedgerError> {
    Ok(conn
        .query_row("SELECT 1 FROM recalled_lots WHERE lot = ?1", [lot], |_| {
            Ok(())
        })
        .optional()?
        .is_some())
}

/// Every check of [`cartridge::check_usable`] on the cartridge an authenticated `tag` names.
/// `own_session` is the session the cartridge may already be bound to. Returns the record if
/// the cartridge is registered, `None` if it is new to the ledger (and acceptable).
pub(super) fn check(
    conn: &Connection,
    tag: &Tag,
    today: Date,
    limits: &CartridgeLimits,
    own_session: Option<SessionId>,
) -> Result<Option<CartridgeRecord>, LedgerError> {
    let record = load(conn, tag.id(), limits)?;
    let recalled = lot_is_recalled(conn, tag.lot())?;
    let registered = record.as_ref().map(CartridgeRecord::registered);
    cartridge::check_usable(
        tag.data(),
        registered.as_ref(),
        recalled,
        today,
        limits,
        own_session,
    )
    .map_err(|refusal| refused(tag, refusal))?;
    Ok(record)
}

/// The ledger's refusal for a rule's refusal of the cartridge named by `tag`.
fn refused(tag: &Tag, refusal: Refusal) -> LedgerError {
    let id = tag.id().to_owned();
    match refusal {
        Refusal::Mismatch => LedgerError::CartridgeMismatch { id },
        Refusal::Spent => LedgerError::CartridgeSpent { id },
        Refusal::InUse { session_id } => LedgerError::CartridgeInUse { id, session_id },
        Refusal::LotRecalled => LedgerError::LotRecalled {
            lot: tag.lot().to_owned(),
        },
        Refusal::Expired => LedgerError::CartridgeExpired {
            id,
            expiry: tag.expiry(),
        },
        Refusal::BudgetExhausted => LedgerError::BudgetExhausted { id },
    }
}

/// Registers a cartridge seen for the first time, as new, with its event.
pub(super) fn register(
    conn: &Connection,
    tag: &Tag,
    now_ms: i64,
    session_id: Option<SessionId>,
) -> Result<(), LedgerError> {
    conn.execute(
        "INSERT INTO cartridges (id, lot, needles, expiry, state, registered_at_ms,
                                 signer_key_id, chip_public_key)
         VALUES (?1, ?2, ?3, ?4, 'new', ?5, ?6, ?7)",
        params![
            tag.id(),
            tag.lot(),
            tag.needles().as_str(),
            tag.expiry().to_string(),
            now_ms,
            tag.key_id(),
            tag.chip_key().as_slice()
        ],
    )?;
    let mut event = Event::new(now_ms, SYSTEM_ACTOR, kinds::CARTRIDGE_REGISTERED)
        .cartridge(tag.id())
        .detail(json!({
            "lot": tag.lot(),
            "needles": tag.needles(),
            "expiry": tag.expiry(),
            "signer_key_id": tag.key_id(),
            "chip_public_key": hex::encode(tag.chip_key()),
        }));
    event.session_id = session_id;
    events::insert(conn, &event)?;
    Ok(())
}

/// Spends a cartridge that is not yet spent, with its event (about its session, if bound).
pub(super) fn spend_unchecked(
    conn: &Connection,
    record: &CartridgeRecord,
    reason: &str,
    actor: &str,
    now_ms: i64,
) -> Result<(), LedgerError> {
    let changed = conn.execute(
        "UPDATE cartridges SET state = 'spent', spent_at_ms = ?2, spent_reason = ?3
         WHERE id = ?1 AND state <> 'spent'",
        params![record.id, now_ms, reason],
    )?;
    if changed != 1 {
        return Err(LedgerError::CartridgeSpent {
            id: record.id.clone(),
        });
    }
    let mut event = Event::new(now_ms, actor, kinds::CARTRIDGE_SPENT)
        .cartridge(record.id.as_str())
        .reason(reason)
        .detail(json!({
            "from": record.state,
            "run_ms": record.run_ms,
            "strokes": record.strokes,
        }));
    event.session_id = record.session_id;
    events::insert(conn, &event)?;
    Ok(())
}

/// Raises a cartridge's usage counters to at least `run_ms` and `strokes` (used when a
/// session ends with its totals).
pub(super) fn raise_usage(
    conn: &Connection,
    id: &str,
    run_ms: i64,
    strokes: i64,
) -> Result<(), LedgerError> {
    conn.execute(
        "UPDATE cartridges SET run_ms = max(run_ms, ?2), strokes = max(strokes, ?3)
         WHERE id = ?1",
        params![id, run_ms, strokes],
    )?;
    Ok(())
}

impl Store {
    /// Checks the cartridge named by an authenticated `tag` and registers it as new on first
    /// sight (event `cartridge_registered`). Refuses, changing nothing:
    /// `cartridge_mismatch` (the id is known with another lot, needles or expiry: a cloned
    /// tag), `cartridge_spent`, `cartridge_in_use`, `lot_recalled`, `cartridge_expired`
    /// (expiry before `now.today`), `cartridge_budget_exhausted`.
    pub fn check_and_register(
        &mut self,
        tag: &Tag,
        now: Now,
        limits: &CartridgeLimits,
    ) -> Result<CartridgeRecord, LedgerError> {
        validate::time("now", now.unix_ms)?;
        self.write(|tx| {
            if check(tx, tag, now.today, limits, None)?.is_none() {
                register(tx, tag, now.unix_ms, None)?;
            }
            require(tx, tag.id(), limits)
        })
    }

    /// Re-checks the seated cartridge during its session (e.g. before arming or resuming):
    /// the tag must name the cartridge bound to `session_id`, which must still be in use,
    /// of a lot not recalled, not expired and within its budget. Read-only. Refuses
    /// `not_found` (session), `cartridge_mismatch` (another cartridge is seated, or the tag is
    /// a clone), and the refusals of [`Store::check_and_register`].
    pub fn verify_bound(
        &self,
        session_id: SessionId,
        tag: &Tag,
        now: Now,
        limits: &CartridgeLimits,
    ) -> Result<CartridgeRecord, LedgerError> {
        self.read(|tx| {
            let session = sessions::require(tx, session_id)?;
            if !cartridge::seated_is_bound(session.cartridge_id.as_deref(), tag.id()) {
                return Err(LedgerError::WrongCartridge {
                    session_id,
                    bound: session.cartridge_id,
                    seated: tag.id().to_owned(),
                });
            }
            check(tx, tag, now.today, limits, Some(session_id))?;
            require(tx, tag.id(), limits)
        })
    }

    /// The cartridge `id` with its remaining budget under `limits`, if registered.
    pub fn cartridge(
        &self,
        id: &str,
        limits: &CartridgeLimits,
    ) -> Result<Option<CartridgeRecord>, LedgerError> {
        self.read(|tx| load(tx, id, limits))
    }

    /// Adds run time and strokes to an in-use (or already spent, for late accounting)
    /// cartridge and returns it with its remaining budget. Does not spend it: the service
    /// stops the session and spends the cartridge when [`CartridgeRecord::budget_exhausted`].
    /// Refuses `not_found`; `invalid_input` for a cartridge never bound or counters that would
    /// overflow.
    pub fn add_usage(
        &mut self,
        cartridge_id: &str,
        run_ms: u64,
        strokes: u64,
        limits: &CartridgeLimits,
    ) -> Result<CartridgeRecord, LedgerError> {
        let run_ms = validate::counter("run_ms", run_ms)?;
        let strokes = validate::counter("strokes", strokes)?;
        self.write(|tx| {
            let record = require(tx, cartridge_id, limits)?;
            if !record.state.counts_usage() {
                return Err(LedgerError::InvalidInput(format!(
                    "cartridge {cartridge_id} is not bound to a session"
                )));
            }
            let total = |used: u64, add: i64, field: &str| {
                i64::try_from(used)
                    .ok()
                    .and_then(|u| u.checked_add(add))
                    .ok_or_else(|| LedgerError::InvalidInput(format!("{field} would overflow")))
            };
            tx.execute(
                "UPDATE cartridges SET run_ms = ?2, strokes = ?3 WHERE id = ?1",
                params![
                    cartridge_id,
                    total(record.run_ms, run_ms, "run_ms")?,
                    total(record.strokes, strokes, "strokes")?
                ],
            )?;
            require(tx, cartridge_id, limits)
        })
    }

    /// Spends a cartridge (event `cartridge_spent` with `reason` and `actor`). Final: nothing
    /// ever moves a spent cartridge back. Refuses `not_found`, `cartridge_spent` (already),
    /// `invalid_input` (empty reason or actor).
    pub fn spend(
        &mut self,
        cartridge_id: &str,
        reason: &str,
        actor: &str,
        now_ms: i64,
    ) -> Result<(), LedgerError> {
        validate::reason("reason", reason)?;
        validate::text("actor", actor)?;
        validate::time("now_ms", now_ms)?;
        self.write(|tx| {
            let record = require(tx, cartridge_id, &CartridgeLimits::default())?;
            if !record.state.can_move_to(CartridgeState::Spent) {
                return Err(LedgerError::CartridgeSpent {
                    id: record.id.clone(),
                });
            }
            spend_unchecked(tx, &record, reason, actor, now_ms)
        })
    }

    /// Recalls `lot` (event `lot_recalled`): its cartridges are refused from now on. A recall
    /// is final; recalling a recalled lot again only appends another event. Returns the lot's
    /// cartridges that are in use right now, whose sessions the service must stop.
    pub fn recall_lot(
        &mut self,
        lot: &str,
        reason: &str,
        actor: &str,
        now_ms: i64,
    ) -> Result<Vec<InUseCartridge>, LedgerError> {
        validate::identifier("lot", lot)?;
        validate::reason("reason", reason)?;
        validate::text("actor", actor)?;
        validate::time("now_ms", now_ms)?;
        self.write(|tx| {
            let inserted = tx.execute(
                "INSERT OR IGNORE INTO recalled_lots (lot, recalled_at_ms, actor, reason)
                 VALUES (?1, ?2, ?3, ?4)",
                params![lot, now_ms, actor, reason],
            )?;
            let event = Event::new(now_ms, actor, kinds::LOT_RECALLED)
                .reason(reason)
                .detail(json!({ "lot": lot, "already_recalled": inserted == 0 }));
            events::insert(tx, &event)?;
            in_use_of_recalled_lots(tx, Some(lot))
        })
    }

    /// Every in-use cartridge whose lot is recalled (to stop their sessions, e.g. at start).
    pub fn recalled_in_use(&self) -> Result<Vec<InUseCartridge>, LedgerError> {
        self.read(|tx| in_use_of_recalled_lots(tx, None))
    }
}

fn in_use_of_recalled_lots(
    conn: &Connection,
    lot: Option<&str>,
) -> Result<Vec<InUseCartridge>, LedgerError> {
    let mut stmt = conn.prepare(
        "SELECT c.id, c.lot, c.session_id FROM cartridges c
         JOIN recalled_lots r ON r.lot = c.lot
         WHERE c.state = 'in_use' AND (?1 IS NULL OR c.lot = ?1)
         ORDER BY c.id",
    )?;
    let mut rows = stmt.query([lot])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(InUseCartridge {
            cartridge_id: row.get(0)?,
            lot: row.get(1)?,
            session_id: row.get(2)?,
        });
    }
    Ok(out)
}
