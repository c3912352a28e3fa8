//! Input checks shared by the ledger's operations. They run before any write, so bad input
//! changes nothing.

use super::LedgerError;

/// Longest operator, actor, subject reference, area or checklist item, in characters.
pub const MAX_TEXT_CHARS: usize = 128;
/// Longest reason, in characters.
pub const MAX_REASON_CHARS: usize = 1000;
/// Most checklist items in one session.
pub const MAX_CHECKLIST_ITEMS: usize = 64;
/// Largest event detail, as JSON text, in bytes.
pub const MAX_DETAIL_BYTES: usize = 16 * 1024;

fn invalid(message: String) -> LedgerError {
    LedgerError::InvalidInput(message)
}

/// Whether `value` is blank: nothing but white space as the API's schema counts it, the
/// `\s` of its patterns (ECMA-262: Unicode's white space and U+FEFF, the byte order mark,
/// which Rust's `char::is_whitespace` leaves out). So a value the schema refuses as blank is
/// refused here too.
pub fn is_blank(value: &str) -> bool {
    value.chars().all(|c| c.is_whitespace() || c == '\u{feff}')
}

/// A one-line name: not blank, at most [`MAX_TEXT_CHARS`], no control characters.
pub(super) fn text(field: &str, value: &str) -> Result<(), LedgerError> {
    if is_blank(value) {
        return Err(invalid(format!("{field} must not be empty")));
    }
    if value.chars().count() > MAX_TEXT_CHARS {
        return Err(invalid(format!(
            "{field} is longer than {MAX_TEXT_CHARS} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(())
}

/// A reason: not blank, at most [`MAX_REASON_CHARS`], no control characters but newline and
/// tab.
pub(super) fn reason(field: &str, value: &str) -> Result<(), LedgerError> {
    if is_blank(value) {
        return Err(invalid(format!("{field} must not be empty")));
    }
    if value.chars().count() > MAX_REASON_CHARS {
        return Err(invalid(format!(
            "{field} is longer than {MAX_REASON_CHARS} characters"
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(invalid(format!(
            "{field} must not contain control characters other than newline and tab"
        )));
    }
    Ok(())
}

/// An event kind: 1..=64 characters of `[a-z0-9_]`.
pub(super) fn kind(value: &str) -> Result<(), LedgerError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "event kind must be 1..=64 characters of [a-z0-9_]".to_owned(),
        ))
    }
}

/// A unix time in milliseconds: not before 1970.
pub(super) fn time(field: &str, value: i64) -> Result<(), LedgerError> {
    if value < 0 {
        return Err(invalid(format!("{field} must not be negative")));
    }
    Ok(())
}

/// A counter that must fit SQLite's signed 64-bit integers.
pub(super) fn counter(field: &str, value: u64) -> Result<i64, LedgerError> {
    i64::try_from(value).map_err(|_| invalid(format!("{field} is too large")))
}

/// A cartridge id or lot (same rules as on the tag).
pub(super) fn identifier(field: &'static str, value: &str) -> Result<(), LedgerError> {
    crate::cartridge::validate_identifier(field, value).map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_one_line_non_blank_and_bounded() {
        assert!(text("f", "op-anna").is_ok());
        assert!(text("f", &"é".repeat(MAX_TEXT_CHARS)).is_ok());
        for bad in ["", "   ", "a\nb", "tab\there", "nul\0"] {
            assert!(text("f", bad).is_err(), "{bad:?}");
        }
        // Blank as the schema's `\s` counts it: the byte order mark too.
        for blank in ["\u{feff}", " \u{feff}\u{3000}\u{a0} "] {
            assert!(text("f", blank).is_err(), "{blank:?}");
            assert!(reason("f", blank).is_err(), "{blank:?}");
        }
        assert!(text("f", "\u{feff}op-anna").is_ok());
        assert!(text("f", &"a".repeat(MAX_TEXT_CHARS + 1)).is_err());
    }

    #[test]
    fn reasons_may_span_lines_but_not_hold_other_controls() {
        assert!(reason("r", "first line\nsecond\tcolumn").is_ok());
        assert!(reason("r", "").is_err());
        assert!(reason("r", "\n").is_err());
        assert!(reason("r", "bell\u{7}").is_err());
        assert!(reason("r", &"x".repeat(MAX_REASON_CHARS + 1)).is_err());
    }

    #[test]
    fn kinds_are_snake_case_identifiers() {
        assert!(kind("fault").is_ok());
        assert!(kind("controller_state_2").is_ok());
        for bad in ["", "Fault", "has space", "dash-ed", &"a".repeat(65)] {
            assert!(kind(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn counters_and_times_must_fit_and_not_precede_1970() {
        assert_eq!(counter("c", 5).expect("fits"), 5);
        assert!(counter("c", u64::MAX).is_err());
        assert!(time("t", 0).is_ok());
        assert!(time("t", -1).is_err());
    }
}
