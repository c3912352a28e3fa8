//! A pen that restarted (or was replaced) under needled: latched as a fault until the
//! operator clears faults, so nothing it was doing resumes by itself.

use needle_core::units::Micros;
use needle_link::PenId;

use super::{link_lost, Driver, PenEvent};
use crate::control::RemoteEnd;

impl Driver {
    /// Whether the pen that identified itself is not the one driven before, unchanged: if
    /// it is another pen, or ours unconfigured (pens are configured once per power-up) or
    /// with its clock behind what it told us, latches the restart.
    pub(super) fn restarted(
        &mut self,
        pen: PenId,
        config_hash: Option<u32>,
        pen_time: Micros,
        now: Micros,
        end: &RemoteEnd,
    ) {
        let before = self.driven.replace((pen, pen_time));
        let Some((was, seen)) = before else { return };
        let what = if was != pen {
            "replaced"
        } else if config_hash.is_none() || pen_time < seen {
            "restarted"
        } else {
            return;
        };
        tracing::error!(pen = %String::from_utf8_lossy(&pen.0), "link: the pen {what} since needled drove it; latched as a fault until faults are cleared");
        self.health.pen_restarts += 1;
        self.health.last_restart = Some(PenEvent {
            what,
            pen_time_us: pen_time.0,
            host_time_us: Some(now.0),
        });
        self.health.restart_latched = true;
        self.changed();
        self.show(end);
    }

    /// Publishes the pen's telemetry, overlaid with a latched `HostTimeout` while a restart
    /// is latched.
    pub(super) fn show(&mut self, end: &RemoteEnd) {
        self.telemetry = if self.health.restart_latched {
            link_lost(&self.pen_telemetry)
        } else {
            self.pen_telemetry
        };
        self.publish(end);
    }

    pub(super) fn unlatch(&mut self, end: &RemoteEnd) {
        tracing::info!("link: the pen's restart cleared by the operator");
        self.clearing = None;
        self.health.restart_latched = false;
        self.changed();
        self.show(end);
    }
}
