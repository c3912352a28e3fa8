//! What a refused configuration says: [`ConfigError`] (file, line, key, reason) and
//! [`Invalid`] (a key and a reason, from [`Config::validate`](super::Config::validate)).

use std::fmt;
use std::ops::RangeInclusive;

/// A configuration the service refuses to start with: where, which key, and what was expected.
///
/// Displays as `FILE:LINE: key 'KEY': MESSAGE`; the line or the key is left out when it is not
/// known (an unreadable file, a syntax error before any key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or other origin) the text came from, as given to [`load`](super::load) or
    /// [`parse`](super::parse).
    pub origin: String,
    /// 1-based line of the offending key or value, if known.
    pub line: Option<usize>,
    /// Dotted key path such as `depth.max_depth_um` or `service.tokens[1].token`, if known.
    pub key: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl ConfigError {
    /// Stable error code for the API and logs.
    pub fn code(&self) -> &'static str {
        "config_invalid"
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key '{key}'")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A value [`Config::validate`](super::Config::validate) refuses, named by its key path;
/// [`parse`](super::parse) adds file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Dotted key path, such as `areas.face.max_depth_um`.
    pub key: String,
    /// What was expected, and what was found.
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key '{}': {}", self.key, self.message)
    }
}

impl std::error::Error for Invalid {}

pub(super) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        key: key.into(),
        message: message.into(),
    }
}

pub(super) fn in_range<T: PartialOrd + fmt::Display>(
    key: &str,
    value: T,
    range: RangeInclusive<T>,
) -> Result<(), Invalid> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("expected {} to {}, got {value}", range.start(), range.end()),
        ))
    }
}
