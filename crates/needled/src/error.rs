//! The API's error: a stable machine code, an HTTP status and a message for people.

pub use needle_api::ErrorCode;
use needle_core::protocol::Rejected;
use serde::Serialize;

use crate::cartridge::TagError;
use crate::control::ControlError;
use crate::store::{LedgerError, StoreError};

/// An error as the API reports it: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    #[serde(skip)]
    pub status: u16,
    /// Stable machine code.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: u16, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// The body the API sends for this error.
    pub fn body(&self) -> needle_api::ErrorBody {
        needle_api::ErrorBody {
            error: needle_api::ErrorDetail {
                code: self.code,
                message: self.message.clone(),
            },
        }
    }

    /// 400: the request is malformed or a value is out of range.
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, ErrorCode::NotFound, message)
    }

    /// 409: not allowed in the current state.
    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(409, code, message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, ErrorCode::Forbidden, message)
    }
}

impl From<Rejected> for ApiError {
    fn from(r: Rejected) -> Self {
        let message = match r {
            Rejected::WrongState(s) => format!("not allowed while the controller is {s:?}"),
            Rejected::NotHomed => "the depth axis must be homed first".to_string(),
            Rejected::FaultLatched(f) => format!("fault {} is latched; clear it first", f.code()),
            Rejected::CauseStillPresent(f) => {
                format!("the cause of fault {} is still present", f.code())
            }
            Rejected::Interlocked(i) => format!("interlock {}: {}", i.code(), i.reason()),
            Rejected::DepthOutOfRange => "depth outside 0..ceiling".to_string(),
            Rejected::CeilingOutOfRange => "depth ceiling above the configured maximum".to_string(),
            Rejected::RateOutOfRange => "stroke rate outside the configured range".to_string(),
            Rejected::DepthNotSettled => "the depth axis is still moving".to_string(),
        };
        let status = match r {
            Rejected::DepthOutOfRange | Rejected::CeilingOutOfRange | Rejected::RateOutOfRange => {
                400
            }
            _ => 409,
        };
        let code = match r {
            Rejected::WrongState(_) => ErrorCode::WrongState,
            Rejected::NotHomed => ErrorCode::NotHomed,
            Rejected::FaultLatched(_) => ErrorCode::FaultLatched,
            Rejected::CauseStillPresent(_) => ErrorCode::FaultCausePresent,
            Rejected::Interlocked(_) => ErrorCode::Interlocked,
            Rejected::DepthOutOfRange => ErrorCode::DepthOutOfRange,
            Rejected::CeilingOutOfRange => ErrorCode::CeilingOutOfRange,
            Rejected::RateOutOfRange => ErrorCode::RateOutOfRange,
            Rejected::DepthNotSettled => ErrorCode::DepthNotSettled,
        };
        ApiError::new(status, code, message)
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Busy => ApiError::new(503, ErrorCode::ControlBusy, e.to_string()),
            ControlError::Stopped => ApiError::new(503, ErrorCode::ControlStopped, e.to_string()),
        }
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        let code = known(e.code());
        let status = match code {
            ErrorCode::NotFound => 404,
            ErrorCode::InvalidInput => 400,
            ErrorCode::StorageError => 500,
            _ => 409,
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::new(500, known(e.code()), e.to_string())
    }
}

impl From<TagError> for ApiError {
    fn from(e: TagError) -> Self {
        ApiError::new(409, known(e.code()), e.to_string())
    }
}

/// The API code of a ledger or tag error's own code. Each of those is one of the API's
/// codes (the tests below prove it for every variant); should one ever not be, it is
/// reported as a storage error rather than invented.
pub(crate) fn known(code: &str) -> ErrorCode {
    ErrorCode::from_code(code).unwrap_or(ErrorCode::StorageError)
}

impl From<crate::cartridge::ChipError> for ApiError {
    fn from(e: crate::cartridge::ChipError) -> Self {
        ApiError::new(409, known(e.code()), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use needle_core::protocol::{Fault, Interlock, State};

    #[test]
    fn every_core_refusal_keeps_its_core_code() {
        let all = [
            Rejected::WrongState(State::Idle),
            Rejected::NotHomed,
            Rejected::FaultLatched(Fault::EStop),
            Rejected::CauseStillPresent(Fault::EStop),
            Rejected::Interlocked(Interlock::CartridgeMissing),
            Rejected::DepthOutOfRange,
            Rejected::CeilingOutOfRange,
            Rejected::RateOutOfRange,
            Rejected::DepthNotSettled,
        ];
        for r in all {
            assert_eq!(ApiError::from(r).code.as_str(), r.code(), "{r:?}");
        }
    }

    #[test]
    fn every_ledger_store_and_tag_code_is_an_api_code() {
        let ledger = [
            "cartridge_spent",
            "cartridge_expired",
            "lot_recalled",
            "cartridge_in_use",
            "cartridge_budget_exhausted",
            "cartridge_mismatch",
            "not_found",
            "session_interval",
            "session_wrong_state",
            "invalid_input",
            "storage_error",
            "storage_schema_unsupported",
            "tag_unknown_format",
            "tag_truncated",
            "tag_invalid_field",
            "tag_v1_unsupported",
            "tag_signer_unknown",
            "tag_signer_revoked",
            "tag_bad_signature",
        ];
        for code in ledger {
            assert_eq!(known(code).as_str(), code);
        }
        let tag = TagError::V1Unsupported;
        assert_eq!(ApiError::from(tag.clone()).code.as_str(), tag.code());
    }
}
