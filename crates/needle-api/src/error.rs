//! The error body every refusal carries, and the stable error codes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error response: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A refusal: a stable code for programs and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine code.
    pub code: ErrorCode,
    /// What went wrong, for people (its wording may change).
    pub message: String,
}

/// The stable error codes of the API. A code, once published, keeps its meaning; the HTTP
/// status each usually comes with is in its description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The bearer token is missing, malformed or unknown (401).
    Unauthorized,
    /// The token's role may not do this: it needs a technician (403).
    Forbidden,
    /// No such session, cartridge or endpoint; or a sim endpoint on real hardware (404).
    NotFound,
    /// The endpoint does not take that method (405).
    MethodNotAllowed,
    /// A JSON body was sent without `Content-Type: application/json` (415).
    UnsupportedMediaType,
    /// The body is larger than the API accepts (413).
    BodyTooLarge,
    /// The body is not JSON (400).
    InvalidJson,
    /// The body is JSON but not what the endpoint takes, or a value is out of range (400).
    InvalidRequest,
    /// The endpoint takes no body and one was sent (400).
    UnexpectedBody,
    /// A path parameter does not parse (400).
    InvalidPath,
    /// The query string does not parse or is inconsistent (400).
    InvalidQuery,
    /// A report format other than `json` or `csv` (400).
    InvalidFormat,
    /// The ledger refused a value (400).
    InvalidInput,
    /// An action that needs a recorded reason got none (400).
    ReasonRequired,
    /// Arming needs a depth and a rate (400).
    SetpointsRequired,
    /// The treatment area is not configured (400).
    UnknownArea,
    /// A checklist answer names no configured item (400).
    UnknownChecklistItem,
    /// The depth is above the treatment area's ceiling (400).
    DepthAboveAreaCeiling,
    /// The controller refused a depth outside 0..ceiling (400).
    DepthOutOfRange,
    /// The controller refused a ceiling above its configured maximum (400).
    CeilingOutOfRange,
    /// The controller refused a stroke rate outside its range (400).
    RateOutOfRange,
    /// A required checklist item is not confirmed (409).
    ChecklistIncomplete,
    /// Another session holds the pen (409).
    PenInUse,
    /// The session does not hold the pen (409).
    SessionNotActive,
    /// Not allowed in the session's state (409).
    SessionWrongState,
    /// The subject's previous session is too recent (409).
    SessionInterval,
    /// No cartridge is seated (409).
    CartridgeMissing,
    /// The cartridge is spent (409).
    CartridgeSpent,
    /// The cartridge is past its expiry date (409).
    CartridgeExpired,
    /// The cartridge is bound to another session (409).
    CartridgeInUse,
    /// The cartridge's run-time or stroke budget is used up (409).
    CartridgeBudgetExhausted,
    /// The seated cartridge is not the session's (409).
    CartridgeMismatch,
    /// The cartridge's lot is recalled (409).
    LotRecalled,
    /// The cartridge tag is not in a known format (409, 400 for sim hex).
    TagUnknownFormat,
    /// The cartridge tag is shorter than its format says (409).
    TagTruncated,
    /// A field of the cartridge tag is invalid (409).
    TagInvalidField,
    /// The cartridge tag's signature does not verify: not authentic (409).
    TagBadMac,
    /// The cartridge tag could not be read (500 or 503).
    TagReadFailed,
    /// The sim's tick log no longer holds that time (409).
    TicksForgotten,
    /// The controller refused: not allowed in its state (409).
    WrongState,
    /// The controller refused: the depth axis must be homed first (409).
    NotHomed,
    /// The controller refused: a fault is latched (409).
    FaultLatched,
    /// The controller refused to clear a fault whose cause is still present (409).
    FaultCausePresent,
    /// The controller refused: an interlock holds (409).
    Interlocked,
    /// The controller refused: the depth axis is still moving (409).
    DepthNotSettled,
    /// The ledger cannot write; the service is degraded and refuses changes (503).
    StorageUnavailable,
    /// The ledger failed (500).
    StorageError,
    /// The ledger's schema version is not supported (500).
    StorageSchemaUnsupported,
    /// The system clock is out of range (500).
    ClockInvalid,
    /// The service's runtime is gone (500).
    RuntimeMissing,
    /// The session owner's monitor is not running (503).
    MonitorUnavailable,
    /// The rig could not be disarmed (503).
    DisarmFailed,
    /// The control thread's command queue is full (503).
    ControlBusy,
    /// The control thread has stopped (503).
    ControlStopped,
    /// The plan's window for its next session has not opened; a technician may override with a reason (409).
    PlanWindowNotOpen,
    /// The plan was stopped and takes no more sessions or changes (409).
    PlanStopped,
    /// Every session of the plan has been given (409).
    PlanComplete,
    /// The plan's previous session is still open (409).
    PlanSessionOpen,
    /// The session's area is not one of the plan's areas (409).
    PlanArea,
    /// The session's subject is not the plan's subject (409).
    PlanSubjectMismatch,
    /// That session of the plan is already done and cannot be changed (409).
    PlanSessionDone,
    /// Deeper than this session's planned depth; a technician may override with a reason (409).
    DepthAbovePlan,
    /// The numbing has not acted yet; a technician may override with a reason (409).
    NumbingWait,
    /// A person of that name exists; names are never reused (409).
    PersonExists,
    /// No person of that name (404).
    PersonNotFound,
    /// The person was revoked already; a revocation is final (409).
    PersonRevoked,
    /// That name is one of the service's own actors (400).
    PersonNameReserved,
    /// The Host header names no host this service answers to: DNS rebinding or a misdirected request (421).
    HostNotAllowed,
    /// The service failed in a way it did not expect (500).
    InternalError,
    /// A version-1 (HMAC, per-pen key) tag: no longer accepted; the cartridge needs a factory-signed version-2 tag (409).
    TagV1Unsupported,
    /// The tag is signed by a key id this pen does not trust (409).
    TagSignerUnknown,
    /// The tag is signed by a revoked factory key (409).
    TagSignerRevoked,
    /// The tag's factory signature does not verify: a forged or altered identity (409).
    TagBadSignature,
    /// The cartridge's chip did not answer a fresh challenge with the key its signed identity names: a copy or a replay (409).
    ChipChallengeFailed,
    /// The cartridge's chip counts a use: it was armed before, on this pen or another (409).
    CartridgeUsedOnChip,
    /// This backend cannot challenge the cartridge's chip, and the configuration requires it (409).
    CartridgeChipUnavailable,
}

impl ErrorCode {
    /// Every code, in the order of the enum.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::BodyTooLarge,
        ErrorCode::InvalidJson,
        ErrorCode::InvalidRequest,
        ErrorCode::UnexpectedBody,
        ErrorCode::InvalidPath,
        ErrorCode::InvalidQuery,
        ErrorCode::InvalidFormat,
        ErrorCode::InvalidInput,
        ErrorCode::ReasonRequired,
        ErrorCode::SetpointsRequired,
        ErrorCode::UnknownArea,
        ErrorCode::UnknownChecklistItem,
        ErrorCode::DepthAboveAreaCeiling,
        ErrorCode::DepthOutOfRange,
        ErrorCode::CeilingOutOfRange,
        ErrorCode::RateOutOfRange,
        ErrorCode::ChecklistIncomplete,
        ErrorCode::PenInUse,
        ErrorCode::SessionNotActive,
        ErrorCode::SessionWrongState,
        ErrorCode::SessionInterval,
        ErrorCode::CartridgeMissing,
        ErrorCode::CartridgeSpent,
        ErrorCode::CartridgeExpired,
        ErrorCode::CartridgeInUse,
        ErrorCode::CartridgeBudgetExhausted,
        ErrorCode::CartridgeMismatch,
        ErrorCode::LotRecalled,
        ErrorCode::TagUnknownFormat,
        ErrorCode::TagTruncated,
        ErrorCode::TagInvalidField,
        ErrorCode::TagBadMac,
        ErrorCode::TagReadFailed,
        ErrorCode::TicksForgotten,
        ErrorCode::WrongState,
        ErrorCode::NotHomed,
        ErrorCode::FaultLatched,
        ErrorCode::FaultCausePresent,
        ErrorCode::Interlocked,
        ErrorCode::DepthNotSettled,
        ErrorCode::StorageUnavailable,
        ErrorCode::StorageError,
        ErrorCode::StorageSchemaUnsupported,
        ErrorCode::ClockInvalid,
        ErrorCode::RuntimeMissing,
        ErrorCode::MonitorUnavailable,
        ErrorCode::DisarmFailed,
        ErrorCode::ControlBusy,
        ErrorCode::ControlStopped,
        ErrorCode::PlanWindowNotOpen,
        ErrorCode::PlanStopped,
        ErrorCode::PlanComplete,
        ErrorCode::PlanSessionOpen,
        ErrorCode::PlanArea,
        ErrorCode::PlanSubjectMismatch,
        ErrorCode::PlanSessionDone,
        ErrorCode::DepthAbovePlan,
        ErrorCode::NumbingWait,
        ErrorCode::PersonExists,
        ErrorCode::PersonNotFound,
        ErrorCode::PersonRevoked,
        ErrorCode::PersonNameReserved,
        ErrorCode::HostNotAllowed,
        ErrorCode::InternalError,
        ErrorCode::TagV1Unsupported,
        ErrorCode::TagSignerUnknown,
        ErrorCode::TagSignerRevoked,
        ErrorCode::TagBadSignature,
        ErrorCode::ChipChallengeFailed,
        ErrorCode::CartridgeUsedOnChip,
        ErrorCode::CartridgeChipUnavailable,
    ];

    /// The code as it appears on the wire, e.g. `pen_in_use`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::UnexpectedBody => "unexpected_body",
            ErrorCode::InvalidPath => "invalid_path",
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::InvalidFormat => "invalid_format",
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::ReasonRequired => "reason_required",
            ErrorCode::SetpointsRequired => "setpoints_required",
            ErrorCode::UnknownArea => "unknown_area",
            ErrorCode::UnknownChecklistItem => "unknown_checklist_item",
            ErrorCode::DepthAboveAreaCeiling => "depth_above_area_ceiling",
            ErrorCode::DepthOutOfRange => "depth_out_of_range",
            ErrorCode::CeilingOutOfRange => "ceiling_out_of_range",
            ErrorCode::RateOutOfRange => "rate_out_of_range",
            ErrorCode::ChecklistIncomplete => "checklist_incomplete",
            ErrorCode::PenInUse => "pen_in_use",
            ErrorCode::SessionNotActive => "session_not_active",
            ErrorCode::SessionWrongState => "session_wrong_state",
            ErrorCode::SessionInterval => "session_interval",
            ErrorCode::CartridgeMissing => "cartridge_missing",
            ErrorCode::CartridgeSpent => "cartridge_spent",
            ErrorCode::CartridgeExpired => "cartridge_expired",
            ErrorCode::CartridgeInUse => "cartridge_in_use",
            ErrorCode::CartridgeBudgetExhausted => "cartridge_budget_exhausted",
            ErrorCode::CartridgeMismatch => "cartridge_mismatch",
            ErrorCode::LotRecalled => "lot_recalled",
            ErrorCode::TagUnknownFormat => "tag_unknown_format",
            ErrorCode::TagTruncated => "tag_truncated",
            ErrorCode::TagInvalidField => "tag_invalid_field",
            ErrorCode::TagBadMac => "tag_bad_mac",
            ErrorCode::TagReadFailed => "tag_read_failed",
            ErrorCode::TicksForgotten => "ticks_forgotten",
            ErrorCode::WrongState => "wrong_state",
            ErrorCode::NotHomed => "not_homed",
            ErrorCode::FaultLatched => "fault_latched",
            ErrorCode::FaultCausePresent => "fault_cause_present",
            ErrorCode::Interlocked => "interlocked",
            ErrorCode::DepthNotSettled => "depth_not_settled",
            ErrorCode::StorageUnavailable => "storage_unavailable",
            ErrorCode::StorageError => "storage_error",
            ErrorCode::StorageSchemaUnsupported => "storage_schema_unsupported",
            ErrorCode::ClockInvalid => "clock_invalid",
            ErrorCode::RuntimeMissing => "runtime_missing",
            ErrorCode::MonitorUnavailable => "monitor_unavailable",
            ErrorCode::DisarmFailed => "disarm_failed",
            ErrorCode::ControlBusy => "control_busy",
            ErrorCode::ControlStopped => "control_stopped",
            ErrorCode::PlanWindowNotOpen => "plan_window_not_open",
            ErrorCode::PlanStopped => "plan_stopped",
            ErrorCode::PlanComplete => "plan_complete",
            ErrorCode::PlanSessionOpen => "plan_session_open",
            ErrorCode::PlanArea => "plan_area",
            ErrorCode::PlanSubjectMismatch => "plan_subject_mismatch",
            ErrorCode::PlanSessionDone => "plan_session_done",
            ErrorCode::DepthAbovePlan => "depth_above_plan",
            ErrorCode::NumbingWait => "numbing_wait",
            ErrorCode::PersonExists => "person_exists",
            ErrorCode::PersonNotFound => "person_not_found",
            ErrorCode::PersonRevoked => "person_revoked",
            ErrorCode::PersonNameReserved => "person_name_reserved",
            ErrorCode::HostNotAllowed => "host_not_allowed",
            ErrorCode::InternalError => "internal_error",
            ErrorCode::TagV1Unsupported => "tag_v1_unsupported",
            ErrorCode::TagSignerUnknown => "tag_signer_unknown",
            ErrorCode::TagSignerRevoked => "tag_signer_revoked",
            ErrorCode::TagBadSignature => "tag_bad_signature",
            ErrorCode::ChipChallengeFailed => "chip_challenge_failed",
            ErrorCode::CartridgeUsedOnChip => "cartridge_used_on_chip",
            ErrorCode::CartridgeChipUnavailable => "cartridge_chip_unavailable",
        }
    }

    /// The code named `text`, if it is one.
    pub fn from_code(text: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.as_str() == text)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_serializes_as_its_wire_name_and_parses_back() {
        for &code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
            assert_eq!(ErrorCode::from_code(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::from_code("no_such_code"), None);
    }

    #[test]
    fn codes_are_unique() {
        let mut names: Vec<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before);
    }
}
