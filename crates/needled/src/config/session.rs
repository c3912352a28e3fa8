//! `[areas]`, the treatment areas and their depth ceilings, and `[session]` with its
//! pre-treatment checklist; their defaults come from the domain brief.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One treatment area, such as `[areas.face]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AreaConfig {
    /// `max_depth_um`: depth ceiling in this area; at most `depth.max_depth_um`.
    pub max_depth_um: u32,
    /// `time_limit_min`: session time limit in this area, if shorter than
    /// `session.time_limit_min`.
    #[serde(default)]
    pub time_limit_min: Option<u32>,
}

/// The default treatment areas and depth ceilings (domain brief: 0.5 to 2.5 mm, deeper for
/// scars and stretch marks on the body).
pub fn default_areas() -> BTreeMap<String, AreaConfig> {
    [
        ("face", 1_500),
        ("forehead", 1_000),
        ("neck", 1_000),
        ("decolletage", 1_500),
        ("hands", 1_000),
        ("body", 2_500),
        ("scalp", 1_500),
    ]
    .into_iter()
    .map(|(name, max_depth_um)| {
        (
            name.to_owned(),
            AreaConfig {
                max_depth_um,
                time_limit_min: None,
            },
        )
    })
    .collect()
}

// --- [session] -------------------------------------------------------------------------------

/// `[session]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// `time_limit_min`: longest session. Default 60.
    pub time_limit_min: u32,
    /// `warning_before_min`: warn this long before the limit. Default 5.
    pub warning_before_min: u32,
    /// `min_interval_days`: shortest interval between two sessions of one subject; a shorter
    /// one needs an override with a recorded reason. Default 28.
    pub min_interval_days: u32,
    /// `[[session.checklist]]`: what the operator confirms before a session may arm. If
    /// present in the file it replaces the whole default list.
    pub checklist: Vec<ChecklistItem>,
    /// `post_care`: after-care advice printed in every session report.
    pub post_care: String,
    /// `numbing_wait_min`: once numbing is recorded applied to a session
    /// (`POST /v1/sessions/{id}/numbing`), arming waits this long (a technician may override
    /// with a reason); 0 turns the wait off. Default 20.
    pub numbing_wait_min: u32,
}

/// The default after-care advice (DOMAIN.md: redness for 24 to 48 hours).
pub const DEFAULT_POST_CARE: &str = "Expect redness and sensitivity for 24 to 48 hours. Keep the \
    area clean; no makeup for 24 hours; no retinoids, exfoliants or peels and no sun exposure for \
    48 hours; use sunscreen. Contact the clinic about swelling, pus, fever or pain that grows.";

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            time_limit_min: 60,
            warning_before_min: 5,
            min_interval_days: 28,
            checklist: default_checklist(),
            post_care: DEFAULT_POST_CARE.to_string(),
            numbing_wait_min: 20,
        }
    }
}

/// One item of the pre-treatment checklist.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecklistItem {
    /// `id`: stable identifier recorded with the answer, `[a-z0-9_]`.
    pub id: String,
    /// `text`: what the operator confirms.
    pub text: String,
    /// `required`: whether the session may not arm without it. Default true.
    #[serde(default = "yes")]
    pub required: bool,
}

fn yes() -> bool {
    true
}

/// The default checklist: the contraindications of the domain brief, consent, and numbing
/// (optional).
pub fn default_checklist() -> Vec<ChecklistItem> {
    [
        (
            "no_active_acne",
            "No active acne in the treatment area",
            true,
        ),
        ("no_eczema", "No eczema in the treatment area", true),
        ("no_rosacea", "No rosacea in the treatment area", true),
        ("no_keloid_history", "No history of keloid scarring", true),
        (
            "no_sunburn_or_tan",
            "Skin is not sunburned or freshly tanned",
            true,
        ),
        (
            "no_recent_actives",
            "No recent retinoids, exfoliants, chemical peels or laser treatment",
            true,
        ),
        ("consent", "The subject has given informed consent", true),
        (
            "numbing",
            "Numbing cream applied 20 to 30 minutes before",
            false,
        ),
    ]
    .into_iter()
    .map(|(id, text, required)| ChecklistItem {
        id: id.to_owned(),
        text: text.to_owned(),
        required,
    })
    .collect()
}
