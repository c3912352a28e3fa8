//! The ledger's cartridge rules, as plain functions of what the ledger holds and today's date.
//!
//! A cartridge moves new -> in_use (bound to exactly one session) -> spent, and spent is
//! final. It may be used only while its tag matches what the ledger registered, it is not
//! spent nor bound to another session, its lot is not recalled, its expiry date is not
//! past and its run-time and stroke budgets are not used up. `store/cartridges.rs` reads the
//! rows, asks these functions, and writes the outcome with its events.

use serde::{Deserialize, Serialize};

use crate::store::SessionId;

use super::{Date, Needles, TagData};

/// Where a cartridge is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CartridgeState {
    /// Registered, never bound to a session.
    New,
    /// Bound to exactly one session.
    InUse,
    /// Used up, removed, expired in use or otherwise retired. Final.
    Spent,
}

impl CartridgeState {
    /// Every state, in life-cycle order.
    pub const ALL: [CartridgeState; 3] = [
        CartridgeState::New,
        CartridgeState::InUse,
        CartridgeState::Spent,
    ];

    /// The stable text name, as stored and serialized: `new`, `in_use`, `spent`.
    pub fn as_str(self) -> &'static str {
        match self {
            CartridgeState::New => "new",
            CartridgeState::InUse => "in_use",
            CartridgeState::Spent => "spent",
        }
    }

    /// Whether the life cycle allows moving from this state to `to`: new -> in_use,
    /// new -> spent, in_use -> spent. Nothing leaves spent, and nothing moves back.
    pub fn can_move_to(self, to: CartridgeState) -> bool {
        matches!(
            (self, to),
            (CartridgeState::New, CartridgeState::InUse)
                | (CartridgeState::New, CartridgeState::Spent)
                | (CartridgeState::InUse, CartridgeState::Spent)
        )
    }

    /// Whether run time and strokes may be counted against the cartridge: once it is bound
    /// to a session, and still after it is spent (late accounting of its session's end).
    pub fn counts_usage(self) -> bool {
        self != CartridgeState::New
    }
}

impl std::fmt::Display for CartridgeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CartridgeState {
    type Err = String;

    fn from_str(text: &str) -> Result<CartridgeState, String> {
        CartridgeState::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| format!("unknown cartridge state {text:?}"))
    }
}

/// Motor run time and strokes: what a cartridge has used, or what it has left.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Motor run time, ms.
    pub run_ms: u64,
    /// Strokes.
    pub strokes: u64,
}

impl Usage {
    /// Read as what is left of a budget: whether it allows no more use (no run time or no
    /// strokes left).
    pub fn is_exhausted(self) -> bool {
        self.run_ms == 0 || self.strokes == 0
    }
}

/// How much one cartridge may be used (from configuration; passed in by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartridgeLimits {
    /// Total motor run time allowed, ms (default 30 min).
    pub max_run_ms: u64,
    /// Total strokes allowed (default 300,000).
    pub max_strokes: u64,
}

impl Default for CartridgeLimits {
    fn default() -> CartridgeLimits {
        CartridgeLimits {
            max_run_ms: 30 * 60 * 1000,
            max_strokes: 300_000,
        }
    }
}

impl CartridgeLimits {
    /// What is left of the budget after `used` (never below zero).
    pub fn remaining(&self, used: Usage) -> Usage {
        Usage {
            run_ms: self.max_run_ms.saturating_sub(used.run_ms),
            strokes: self.max_strokes.saturating_sub(used.strokes),
        }
    }
}

/// What the ledger holds of a registered cartridge, as far as the rules need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered<'a> {
    /// The lot it was registered with.
    pub lot: &'a str,
    /// The needle configuration it was registered with.
    pub needles: Needles,
    /// The expiry date it was registered with.
    pub expiry: Date,
    /// Its life-cycle state.
    pub state: CartridgeState,
    /// The session it is (or was) bound to.
    pub session_id: Option<SessionId>,
    /// What it has used so far.
    pub used: Usage,
}

/// Why a cartridge may not be used. The ledger reports each as its own refusal, with the
/// cartridge's id, lot or expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The tag names a registered id with another lot, needles or expiry: a cloned or
    /// re-labelled tag.
    Mismatch,
    /// The cartridge is spent.
    Spent,
    /// The cartridge is bound to another session.
    InUse {
        /// The session it is bound to.
        session_id: SessionId,
    },
    /// Its lot is recalled.
    LotRecalled,
    /// Its expiry date is before today.
    Expired,
    /// Its run-time or stroke budget is used up.
    BudgetExhausted,
}

/// Whether a cartridge with expiry date `expiry` is past it `today`. A cartridge may be used
/// up to and including its expiry date.
pub fn is_expired(expiry: Date, today: Date) -> bool {
    expiry < today
}

/// Every check a cartridge must pass before it may be (or stay) used, in this order: the tag
/// matches the registration, not spent, not bound to a session other than `own_session`,
/// lot not recalled, not expired `today`, budget under `limits` not used up. `registered` is
/// `None` for a cartridge new to the ledger, which has used nothing.
pub fn check_usable(
    tag: &TagData,
    registered: Option<&Registered<'_>>,
    lot_recalled: bool,
    today: Date,
    limits: &CartridgeLimits,
    own_session: Option<SessionId>,
) -> Result<(), Refusal> {
    if let Some(r) = registered {
        if r.lot != tag.lot() || r.needles != tag.needles() || r.expiry != tag.expiry() {
            return Err(Refusal::Mismatch);
        }
        match (r.state, r.session_id) {
            (CartridgeState::Spent, _) => return Err(Refusal::Spent),
            (CartridgeState::InUse, Some(bound)) if Some(bound) != own_session => {
                return Err(Refusal::InUse { session_id: bound })
            }
            _ => {}
        }
    }
    if lot_recalled {
        return Err(Refusal::LotRecalled);
    }
    if is_expired(tag.expiry(), today) {
        return Err(Refusal::Expired);
    }
    let used = registered.map(|r| r.used).unwrap_or_default();
    if limits.remaining(used).is_exhausted() {
        return Err(Refusal::BudgetExhausted);
    }
    Ok(())
}

/// Whether the seated cartridge `seated` is the one `bound` to a session: only that one may
/// stand for the session (be re-checked for arming or resuming).
pub fn seated_is_bound(bound: Option<&str>, seated: &str) -> bool {
    bound == Some(seated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: u16, m: u8, d: u8) -> Date {
        Date::new(y, m, d).expect("valid date")
    }

    fn today() -> Date {
        date(2026, 5, 1)
    }

    fn tag() -> TagData {
        TagData::new("CART-1", "LOT-1", Needles::Pins12, date(2026, 6, 30)).expect("valid")
    }

    fn registered(state: CartridgeState, session_id: Option<SessionId>) -> Registered<'static> {
        Registered {
            lot: "LOT-1",
            needles: Needles::Pins12,
            expiry: date(2026, 6, 30),
            state,
            session_id,
            used: Usage::default(),
        }
    }

    fn check(registered: Option<&Registered<'_>>, own: Option<SessionId>) -> Result<(), Refusal> {
        check_usable(
            &tag(),
            registered,
            false,
            today(),
            &CartridgeLimits::default(),
            own,
        )
    }

    #[test]
    fn states_only_move_forward_and_spent_is_final() {
        use CartridgeState::{InUse, New, Spent};
        let allowed: Vec<(CartridgeState, CartridgeState)> = CartridgeState::ALL
            .into_iter()
            .flat_map(|from| CartridgeState::ALL.into_iter().map(move |to| (from, to)))
            .filter(|(from, to)| from.can_move_to(*to))
            .collect();
        assert_eq!(allowed, [(New, InUse), (New, Spent), (InUse, Spent)]);
    }

    #[test]
    fn usage_counts_once_bound_and_after_spending() {
        assert!(!CartridgeState::New.counts_usage());
        assert!(CartridgeState::InUse.counts_usage());
        assert!(CartridgeState::Spent.counts_usage());
    }

    #[test]
    fn state_names_are_stable_and_parse_back() {
        let names: Vec<&str> = CartridgeState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["new", "in_use", "spent"]);
        for s in CartridgeState::ALL {
            assert_eq!(s.as_str().parse::<CartridgeState>(), Ok(s));
            assert_eq!(s.to_string(), s.as_str());
            assert_eq!(
                serde_json::to_string(&s).expect("serializes"),
                format!("\"{s}\"")
            );
        }
        assert!("retired".parse::<CartridgeState>().is_err());
    }

    #[test]
    fn remaining_budget_never_goes_below_zero() {
        let limits = CartridgeLimits {
            max_run_ms: 1_000,
            max_strokes: 50,
        };
        let left = limits.remaining(Usage {
            run_ms: 400,
            strokes: 80,
        });
        assert_eq!(
            left,
            Usage {
                run_ms: 600,
                strokes: 0
            }
        );
        assert!(left.is_exhausted());
        assert!(!limits.remaining(Usage::default()).is_exhausted());
        assert_eq!(CartridgeLimits::default().max_run_ms, 1_800_000);
        assert_eq!(CartridgeLimits::default().max_strokes, 300_000);
    }

    #[test]
    fn new_and_own_cartridges_are_usable() {
        assert_eq!(check(None, None), Ok(()));
        assert_eq!(
            check(Some(&registered(CartridgeState::New, None)), None),
            Ok(())
        );
        let own = registered(CartridgeState::InUse, Some(7));
        assert_eq!(check(Some(&own), Some(7)), Ok(()));
    }

    #[test]
    fn cloned_tag_is_a_mismatch_before_anything_else() {
        let spent = registered(CartridgeState::Spent, Some(1));
        for clone in [
            Registered {
                lot: "LOT-2",
                ..spent
            },
            Registered {
                needles: Needles::Nano,
                ..spent
            },
            Registered {
                expiry: date(2026, 7, 1),
                ..spent
            },
        ] {
            assert_eq!(check(Some(&clone), None), Err(Refusal::Mismatch));
        }
    }

    #[test]
    fn spent_or_bound_elsewhere_is_refused() {
        let spent = registered(CartridgeState::Spent, Some(7));
        assert_eq!(check(Some(&spent), Some(7)), Err(Refusal::Spent));
        let in_use = registered(CartridgeState::InUse, Some(7));
        assert_eq!(
            check(Some(&in_use), None),
            Err(Refusal::InUse { session_id: 7 })
        );
        assert_eq!(
            check(Some(&in_use), Some(8)),
            Err(Refusal::InUse { session_id: 7 })
        );
    }

    #[test]
    fn recalled_lot_is_refused_even_for_a_new_cartridge() {
        let limits = CartridgeLimits::default();
        let got = check_usable(&tag(), None, true, today(), &limits, None);
        assert_eq!(got, Err(Refusal::LotRecalled));
    }

    #[test]
    fn expiry_day_itself_is_usable_and_the_day_after_is_not() {
        let expiry = tag().expiry();
        assert!(!is_expired(expiry, expiry));
        assert!(!is_expired(expiry, date(2026, 6, 29)));
        assert!(is_expired(expiry, date(2026, 7, 1)));
        let limits = CartridgeLimits::default();
        let after = check_usable(&tag(), None, false, date(2026, 7, 1), &limits, None);
        assert_eq!(after, Err(Refusal::Expired));
        assert_eq!(
            check_usable(&tag(), None, false, expiry, &limits, None),
            Ok(())
        );
    }

    #[test]
    fn used_up_budget_is_refused_and_zero_limits_refuse_a_new_cartridge() {
        let limits = CartridgeLimits {
            max_run_ms: 1_000,
            max_strokes: 50,
        };
        let worn = Registered {
            used: Usage {
                run_ms: 1_000,
                strokes: 10,
            },
            ..registered(CartridgeState::InUse, Some(7))
        };
        let got = check_usable(&tag(), Some(&worn), false, today(), &limits, Some(7));
        assert_eq!(got, Err(Refusal::BudgetExhausted));
        for zero in [
            CartridgeLimits {
                max_run_ms: 0,
                ..limits
            },
            CartridgeLimits {
                max_strokes: 0,
                ..limits
            },
        ] {
            let got = check_usable(&tag(), None, false, today(), &zero, None);
            assert_eq!(got, Err(Refusal::BudgetExhausted));
        }
    }

    #[test]
    fn refusals_come_in_a_fixed_order() {
        // Spent, recalled, expired and used up all at once: spent is reported.
        let limits = CartridgeLimits {
            max_run_ms: 0,
            max_strokes: 0,
        };
        let spent = registered(CartridgeState::Spent, Some(1));
        let late = date(2027, 1, 1);
        let got = check_usable(&tag(), Some(&spent), true, late, &limits, None);
        assert_eq!(got, Err(Refusal::Spent));
        // Recalled, expired and used up: recalled.
        let got = check_usable(&tag(), None, true, late, &limits, None);
        assert_eq!(got, Err(Refusal::LotRecalled));
        // Expired and used up: expired.
        let got = check_usable(&tag(), None, false, late, &limits, None);
        assert_eq!(got, Err(Refusal::Expired));
    }

    #[test]
    fn only_the_bound_cartridge_may_stand_for_its_session() {
        assert!(seated_is_bound(Some("CART-1"), "CART-1"));
        assert!(!seated_is_bound(Some("CART-1"), "CART-2"));
        assert!(!seated_is_bound(None, "CART-1"));
    }
}
