//! What can go wrong in needlectl, and the exit code of each class of failure.
//!
//! Every failure is printed as `error: <code>: <message>` on stderr (with an optional
//! `hint:` line); with `--json` the error JSON (the API's own body when the service sent one)
//! is printed on stdout too, so scripts can read it either way.

use std::io::Write;

use serde_json::json;

/// The exit codes, one per class of failure. Stable: jig scripts branch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 1: a local failure after the work was done, e.g. the output file could not be written.
    Local = 1,
    /// 2: bad command line or local configuration (URL, key file, tag file, checklist config).
    Usage = 2,
    /// 3: the service could not be reached, or it did not answer in time.
    Connection = 3,
    /// 4: the service (or offline tag verification) refused the request: a 4xx answer other
    /// than 401/403. Nothing was changed.
    Refused = 4,
    /// 5: the service failed: a 5xx answer, an answer that is not what the API promises, or
    /// `health` finding the control loop stalled.
    Server = 5,
    /// 6: no usable credentials: no token found locally, or the service answered 401/403.
    Auth = 6,
    /// 7: `wait` did not see the state: timed out, or the controller latched a fault.
    NotReached = 7,
}

/// A failure, as reported to the user and to scripts.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The class, which decides the exit code.
    pub exit: Exit,
    /// Stable machine code: the API's `error.code`, or one of needlectl's own.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// What to do about it, if there is something useful to say.
    pub hint: Option<String>,
    /// The API's error body exactly as received, when the service sent one.
    pub body: Option<String>,
}

impl Failure {
    /// A failure of class `exit` with a code and a message.
    pub fn new(exit: Exit, code: &str, message: impl Into<String>) -> Self {
        Self {
            exit,
            code: code.to_string(),
            message: message.into(),
            hint: None,
            body: None,
        }
    }

    /// A usage or configuration failure (exit 2).
    pub fn usage(code: &str, message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, code, message)
    }

    /// A local I/O failure (exit 1).
    pub fn local(code: &str, message: impl Into<String>) -> Self {
        Self::new(Exit::Local, code, message)
    }

    /// This failure with a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        self.exit as u8
    }

    /// Prints the failure: always on stderr; with `json` also as error JSON on stdout.
    pub fn report(&self, json: bool) {
        if json {
            let text = match &self.body {
                Some(body) => body.trim_end().to_string(),
                None => {
                    json!({ "error": { "code": self.code, "message": self.message } }).to_string()
                }
            };
            // stdout may be gone (a closed pipe); stderr still carries the error.
            let _ = writeln!(std::io::stdout().lock(), "{text}");
        }
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "error: {}: {}", self.code, self.message);
        if let Some(hint) = &self.hint {
            let _ = writeln!(err, "hint: {hint}");
        }
    }
}

/// Writes `text` to stdout, with a final newline if it has none.
pub fn emit(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    let result = if text.ends_with('\n') {
        out.write_all(text.as_bytes())
    } else {
        writeln!(out, "{text}")
    };
    result
        .and_then(|()| out.flush())
        .map_err(|e| Failure::local("stdout_failed", format!("cannot write to stdout: {e}")))
}
