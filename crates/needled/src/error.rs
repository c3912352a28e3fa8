//! The API's error: a stable machine code, an HTTP status and a message for people.

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
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// 400: the request is malformed or a value is out of range.
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "not_found", message)
    }

    /// 409: not allowed in the current state.
    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::new(409, code, message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "forbidden", message)
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
        ApiError::new(status, r.code(), message)
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Busy => ApiError::new(503, "control_busy", e.to_string()),
            ControlError::Stopped => ApiError::new(503, "control_stopped", e.to_string()),
        }
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        let code = e.code();
        let status = match code {
            "not_found" => 404,
            "invalid_input" => 400,
            "storage_error" => 500,
            _ => 409,
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::new(500, e.code(), e.to_string())
    }
}

impl From<TagError> for ApiError {
    fn from(e: TagError) -> Self {
        ApiError::new(409, e.code(), e.to_string())
    }
}

impl From<crate::cartridge::ChipError> for ApiError {
    fn from(e: crate::cartridge::ChipError) -> Self {
        ApiError::new(409, e.code(), e.to_string())
    }
}
