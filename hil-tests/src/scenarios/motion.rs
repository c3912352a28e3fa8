//! Motion: where the needles are and how fast they stroke, measured by the jig.

use std::time::{Duration, Instant};

use super::deepest_area;
use crate::bench::Bench;
use crate::error::{HilError, Result};
use crate::report::Recorder;

/// Depths the axis is sent to between homings, µm (clamped to the area's ceiling).
const AWAY_DEPTHS: [u32; 6] = [2_000, 600, 1_400, 300, 2_400, 1_000];

/// Homing repeatability: homes `scenarios.homing_runs` times, first from the power-up
/// position, then each time from a different depth, and measures where the depth stop really
/// ends up. Proves the reference the whole depth scale rests on repeats within
/// `tolerances.homing_spread_um` (default: one step of the depth stepper).
pub fn homing_repeatability(b: &mut Bench, r: &mut Recorder) -> Result<()> {
    let step = b.rig.settings().depth_step_um;
    let limit = b.config.tolerances.homing_spread_um.unwrap_or(step);
    let tol = b.config.tolerances.depth_um;
    let runs = b.config.scenarios.homing_runs as usize;
    let (area, ceiling) = deepest_area(b);
    let rate = b.rig.settings().rate_min_hz;
    let mut homes = Vec::new();
    for i in 0..runs {
        let from = if i == 0 {
            b.jig.depth()?.depth_um.round() as u32
        } else {
            let depth = AWAY_DEPTHS[(i - 1) % AWAY_DEPTHS.len()].min(ceiling);
            let s = b.armed_session(&area, depth, rate)?;
            b.end(s.id)?;
            depth
        };
        b.home()?;
        let home = b.settled_depth()?.depth_um;
        r.point(
            "home",
            &format!("from {from} um"),
            0.0,
            home,
            "um",
            0.0,
            tol,
        );
        homes.push(home);
    }
    let max = homes.iter().copied().fold(f64::MIN, f64::max);
    let min = homes.iter().copied().fold(f64::MAX, f64::min);
    let mean = homes.iter().sum::<f64>() / homes.len() as f64;
    r.figure("home_positions_um", &homes);
    r.figure("home_mean_um", mean);
    r.check(
        &format!("spread of the home position over {runs} homings"),
        max - min <= limit,
        format!("{:.2} um", max - min),
        format!("<= {limit:.2} um"),
    );
    Ok(())
}

/// Depth accuracy: sweeps the depth from `sweep_from_um` to `sweep_to_um` in `sweep_step_um`
/// steps going deeper, then back going shallower (the lash is taken up the other way), and
/// measures each settled depth with the jig. Proves every setpoint lands within
/// `tolerances.depth_um` (goal: +-0.02 mm) from both directions.
pub fn depth_accuracy_sweep(b: &mut Bench, r: &mut Recorder) -> Result<()> {
    let sc = b.config.scenarios.clone();
    let tol = b.config.tolerances.depth_um;
    let ceiling = *b.rig.settings().areas.get(&sc.sweep_area).ok_or_else(|| {
        HilError::Config(format!(
            "scenarios.sweep_area '{}' is not an area of the rig's config",
            sc.sweep_area
        ))
    })?;
    if ceiling < sc.sweep_to_um {
        return Err(HilError::Config(format!(
            "scenarios.sweep_to_um {} is above the ceiling of area '{}' ({ceiling} um)",
            sc.sweep_to_um, sc.sweep_area
        )));
    }
    let up: Vec<u32> = (sc.sweep_from_um..=sc.sweep_to_um)
        .step_by(sc.sweep_step_um as usize)
        .collect();
    let down: Vec<u32> = up.iter().rev().skip(1).copied().collect();
    let rate = b.rig.settings().rate_min_hz;
    let started = Instant::now();
    let s = b.armed_session(&sc.sweep_area, up[0], rate)?;
    for (direction, points) in [("up", &up), ("down", &down)] {
        for (i, &setpoint) in points.iter().enumerate() {
            if !(direction == "up" && i == 0) {
                b.set_depth(s.id, setpoint)?;
            }
            let d = b.settled_depth()?;
            r.point(
                "depth",
                direction,
                f64::from(setpoint),
                d.depth_um,
                "um",
                0.0,
                tol,
            );
        }
    }
    b.end(s.id)?;
    let moves = r.points().len();
    r.figure("moves", moves);
    r.figure("sweep_s", started.elapsed().as_secs_f64());
    for direction in ["up", "down"] {
        let errors: Vec<f64> = r
            .points()
            .iter()
            .filter(|p| p.direction == direction)
            .map(|p| p.error)
            .collect();
        let worst = errors.iter().fold(0.0f64, |m, e| m.max(e.abs()));
        let mean = errors.iter().sum::<f64>() / errors.len().max(1) as f64;
        let outside = errors.iter().filter(|e| e.abs() > tol).count();
        r.figure(&format!("max_abs_error_{direction}_um"), worst);
        r.figure(&format!("mean_error_{direction}_um"), mean);
        r.check(
            &format!(
                "depth lands within tolerance {}",
                if direction == "up" {
                    "going deeper"
                } else {
                    "going shallower"
                }
            ),
            outside == 0,
            format!(
                "max |error| {worst:.2} um, mean {mean:+.2} um, {outside} of {} points outside",
                errors.len()
            ),
            format!("+-{tol} um"),
        );
    }
    Ok(())
}

/// Waits for the stroke rate to enter the band around `target_hz` and stay there for `hold`;
/// returns when it entered, µs on the jig's clock, or `None` if it did not within `timeout`.
fn settle(
    b: &mut Bench,
    target_hz: f64,
    band_hz: f64,
    hold: Duration,
    timeout: Duration,
) -> Result<Option<u64>> {
    let deadline = Instant::now() + timeout;
    let hold_us = u64::try_from(hold.as_micros()).unwrap_or(u64::MAX);
    let mut inside_since: Option<u64> = None;
    loop {
        let reading = b.jig.instant_rate()?;
        if (reading.rate_hz - target_hz).abs() <= band_hz {
            let since = *inside_since.get_or_insert(reading.at_us);
            if reading.at_us.saturating_sub(since) >= hold_us {
                return Ok(Some(since));
            }
        } else {
            inside_since = None;
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Stroke-rate accuracy and settling: starts at the lowest rate, steps up across the
/// configured range in `rate_step_hz` steps, then steps down to the lowest again. After each
/// change it times how long the rate takes to enter and stay in the band, then counts strokes
/// over `rate_window_ms` as an optical counter does. Proves the rate holds within
/// `tolerances.rate_percent` (goal: +-1 %) and settles within `tolerances.rate_settle_ms`.
pub fn stroke_rate_accuracy(b: &mut Bench, r: &mut Recorder) -> Result<()> {
    let (min, max) = (b.rig.settings().rate_min_hz, b.rig.settings().rate_max_hz);
    let step = b.config.scenarios.rate_step_hz as usize;
    let window = Duration::from_millis(b.config.scenarios.rate_window_ms);
    let tol_pct = b.config.tolerances.rate_percent;
    let settle_limit = b.config.tolerances.rate_settle_ms;
    let mut rates: Vec<u32> = (min..=max).step_by(step).collect();
    if rates.last() != Some(&max) {
        rates.push(max);
    }
    rates.push(min);
    let (area, _) = deepest_area(b);
    let s = b.armed_session(&area, 1_000, rates[0])?;
    let mut settles = Vec::new();
    let mut worst_error_pct = 0.0f64;
    let mut worst_uncertainty_pct = 0.0f64;
    let mut unsettled = Vec::new();
    let mut violations = 0usize;
    let mut remeasured = 0usize;
    for (i, &rate) in rates.iter().enumerate() {
        let target = f64::from(rate);
        let t0 = b.jig.now_us()?;
        let direction = match i {
            0 => "start",
            _ if rate > rates[i - 1] => "up",
            _ => "down",
        };
        if i == 0 {
            b.start(s.id)?;
        } else {
            b.set_rate(s.id, rate)?;
        }
        let entered = settle(
            b,
            target,
            target * tol_pct / 100.0,
            Duration::from_millis(150),
            Duration::from_secs(3),
        )?;
        match entered {
            Some(at) => settles.push((rate, direction, at.saturating_sub(t0) as f64 / 1_000.0)),
            None => unsettled.push(rate),
        }
        // A window whose edges the jig could not pin down is measured again (up to three
        // windows); the best-resolved one is the point, and any window that shows the rate
        // out of the band beyond its own uncertainty is a violation.
        let band = target * tol_pct / 100.0;
        let mut m = b.jig.stroke_rate(window)?;
        let mut windows = 1;
        violations += usize::from((m.rate_hz - target).abs() - m.uncertainty_hz > band);
        while m.uncertainty_hz > band / 4.0 && windows < 3 {
            let again = b.jig.stroke_rate(window)?;
            windows += 1;
            remeasured += 1;
            violations += usize::from((again.rate_hz - target).abs() - again.uncertainty_hz > band);
            if again.uncertainty_hz < m.uncertainty_hz {
                m = again;
            }
        }
        r.point(
            "rate",
            direction,
            target,
            m.rate_hz,
            "Hz",
            m.uncertainty_hz,
            target * tol_pct / 100.0,
        );
        worst_error_pct = worst_error_pct.max(((m.rate_hz - target) / target * 100.0).abs());
        worst_uncertainty_pct = worst_uncertainty_pct.max(m.uncertainty_hz / target * 100.0);
    }
    b.end(s.id)?;
    let outside = r.points().iter().filter(|p| !p.passed).count();
    r.figure("rates_hz", &rates);
    r.figure("windows_measured_again", remeasured);
    r.figure(
        "settle_ms",
        settles
            .iter()
            .map(|(rate, dir, ms)| (rate, dir, (ms * 10.0).round() / 10.0))
            .collect::<Vec<_>>(),
    );
    r.check(
        "stroke rate over the window within tolerance at every rate",
        outside == 0 && violations == 0,
        format!(
            "worst error {worst_error_pct:.3} %, {outside} of {} rates outside, {violations} windows \
             out of the band beyond their uncertainty",
            rates.len()
        ),
        format!("+-{tol_pct} %"),
    );
    r.check(
        "rate measurement resolves the tolerance",
        worst_uncertainty_pct <= tol_pct / 4.0,
        format!("worst uncertainty {worst_uncertainty_pct:.3} %"),
        format!("<= {:.3} % (a quarter of the tolerance)", tol_pct / 4.0),
    );
    let worst_settle = settles.iter().map(|s| s.2).fold(0.0f64, f64::max);
    r.check(
        "rate settles into the band after every change",
        unsettled.is_empty() && worst_settle <= settle_limit,
        if unsettled.is_empty() {
            format!("worst {worst_settle:.1} ms")
        } else {
            format!("never settled at {unsettled:?} Hz; worst of the rest {worst_settle:.1} ms")
        },
        format!("<= {settle_limit} ms"),
    );
    r.note(format!(
        "rate counted over >= {} ms windows between stroke edges; on the sim each edge is bracketed by two truth \
         polls, and the uncertainty is the resulting half-width",
        window.as_millis()
    ));
    Ok(())
}
