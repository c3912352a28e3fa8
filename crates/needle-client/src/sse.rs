//! The telemetry stream: server-sent events whose `data` is a `TelemetryEvent` in JSON.

use std::io::{BufRead, BufReader, Read};

use needle_api::TelemetryEvent;

use crate::Error;

/// The events of `GET /v1/telemetry`, in order; ends when the service closes the stream.
pub struct Telemetry {
    reader: BufReader<Box<dyn Read + Send + Sync>>,
}

impl Telemetry {
    pub(crate) fn new(reader: Box<dyn Read + Send + Sync>) -> Self {
        Self {
            reader: BufReader::new(reader),
        }
    }
}

impl Iterator for Telemetry {
    type Item = Result<TelemetryEvent, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut event = String::new();
        let mut data = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(Error::Transport(e.to_string()))),
            }
            let text = line.trim_end_matches(['\r', '\n']);
            if text.is_empty() {
                // The end of one event; keep-alive comments make none.
                if event == "telemetry" && !data.is_empty() {
                    return Some(
                        serde_json::from_str(&data)
                            .map_err(|e| Error::Decode(format!("{e}: {data}"))),
                    );
                }
                event.clear();
                data.clear();
            } else if let Some(v) = text.strip_prefix("event:") {
                event = v.trim_start().to_string();
            } else if let Some(v) = text.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_split_on_blank_lines_and_comments_are_skipped() {
        let body = r#"{"state":"Idle","faults":[],"last_fault":null,"interlocks":[],"homed":true,"depth":{"setpoint_um":0,"position_um":0,"ceiling_um":2500,"moving":false},"rate":{"setpoint_mhz":0,"measured_mhz":0},"duty_permyriad":0,"motor_enabled":false,"stroke_count":0,"current_ma":0,"temperature_mc":25000,"supply_mv":12000,"pedal":false,"controller_time_us":5,"session":null,"control":{"rate_hz":1000,"ticks":5,"overruns":0,"lateness_p50_us":1,"lateness_p99_us":2,"lateness_max_us":3,"realtime":false,"priority":null,"memory_locked":false,"cpu":null}}"#;
        let stream = format!(
            ":keep-alive\n\nevent: telemetry\ndata: {body}\n\nevent: telemetry\ndata: {body}\n\n"
        );
        let events: Vec<_> = Telemetry::new(Box::new(std::io::Cursor::new(stream.into_bytes())))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].telemetry.controller_time_us, 5);
        assert!(events[1].telemetry.homed);
    }
}
