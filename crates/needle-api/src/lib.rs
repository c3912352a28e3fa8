//! The contract of needled's HTTP API: every request and response body as a typed serde
//! struct or enum, the stable error codes as one enum ([`ErrorCode`]), and the OpenAPI
//! schemas of them all (`utoipa`'s `ToSchema`).
//!
//! needled serializes these types and clients (needlectl, hil-tests, needle-bench, the
//! service tests) deserialize them, so a field renamed here is renamed for everyone and a
//! mismatch is a compile error, not a surprise on the wire. The routes and the OpenAPI
//! document itself are assembled in `needled::api::openapi` (it needs the handlers).
//!
//! Files: `error.rs` (the error body and the codes), `session.rs` (sessions, reports,
//! requests), `cartridge.rs` (cartridges, recalls), `events.rs` (the event log), `plan.rs`
//! (treatment plans, numbing), `people.rs` (people and their tokens), `status.rs` (health,
//! status, version, telemetry), `sim.rs` (the sim backend's truth and injections).
//!
//! ```
//! let body: needle_api::ErrorBody =
//!     serde_json::from_str(r#"{"error":{"code":"pen_in_use","message":"session 3 holds the pen"}}"#)
//!         .unwrap();
//! assert_eq!(body.error.code, needle_api::ErrorCode::PenInUse);
//! ```

mod cartridge;
mod console;
mod error;
mod events;
mod people;
mod plan;
mod session;
mod sim;
mod status;

pub use cartridge::{Cartridge, CartridgeState, Needles, Recalled};
pub use console::{
    ConsoleArea, ConsoleCaller, ConsoleCartridgeBudget, ConsoleChecklistItem, ConsoleConfig,
    ConsoleInterlock, ConsoleSessionLimits, ConsoleStrokeRange,
};
pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use events::{EventRecord, Events, EventsQuery};
pub use people::{NewPerson, NewToken, People, Person, Revoked, Role};
pub use plan::{
    ChangePlan, CreatePlan, Numbing, Plan, PlanEvent, PlanId, PlanRecord, PlanSession, PlanSlot,
    PlanState, PlanStatus, PlanWindow, PlannedSession, Plans, PlansQuery, SlotStatus,
};
pub use session::{
    ChecklistItem, CreateSession, EndSession, Ok, Reason, ReportCartridge, ReportFormat,
    ReportPlan, ReportQuery, Session, SessionId, SessionReport, SessionState, SetpointEntry,
    Setpoints, TimelineEntry, UpdateChecklist,
};
pub use sim::{Injected, PulledChip, SimAction, SimTruth, StorageFailMode, Ticks, TicksQuery};
pub use status::{
    Backend, ControlStats, ControllerState, Depth, Health, HealthStatus, InterlockInfo,
    MonitorCode, Rate, Status, StorageHealth, Telemetry, TelemetryEvent, Version,
};
