//! From a file or text to a validated [`Config`], and every refusal to a [`ConfigError`] with
//! file, line and key.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::{ConfigError, Invalid};
use super::spans::{line_of, KeyLines};
use super::{Config, HardwareConfig};

/// Reads, parses and validates the configuration file at `path`.
///
/// A relative `service.data_dir` is resolved against the current directory.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let text = read(path, &origin)?;
    parse(&text, &origin)
}

/// Reads only the `[hardware]` table of the configuration file at `path`, for
/// `needled --safe-outputs`: the outputs must be driven safe even when another section of the
/// file would be refused. The table itself is parsed as strictly as by [`load`], and the
/// section of the chosen backend must be present; nothing else is checked.
pub fn load_hardware(path: &Path) -> Result<HardwareConfig, ConfigError> {
    /// The file with every section but `[hardware]` ignored (still checked as TOML).
    #[derive(Deserialize)]
    struct HardwareOnly {
        #[serde(default)]
        hardware: HardwareConfig,
    }

    let origin = path.display().to_string();
    let text = read(path, &origin)?;
    let source = Source {
        text: &text,
        origin: &origin,
    };
    let hardware = source.deserialize::<HardwareOnly>()?.hardware;
    hardware
        .require_backend_section()
        .map_err(|e| source.refused(e))?;
    Ok(hardware)
}

/// Parses and validates configuration text; `origin` names it in errors (usually the path).
///
/// A relative `service.data_dir` is resolved against the current directory.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let source = Source { text, origin };
    let mut config: Config = source.deserialize()?;
    config.validate().map_err(|e| source.refused(e))?;
    if config.service.data_dir.is_relative() {
        let cwd = std::env::current_dir().map_err(|e| {
            let key = "service.data_dir";
            source.error(
                KeyLines::of(text).locate(key).line,
                Some(key.to_owned()),
                format!("cannot resolve the relative path against the current directory: {e}"),
            )
        })?;
        config.service.data_dir = cwd.join(&config.service.data_dir);
    }
    Ok(config)
}

fn read(path: &Path, origin: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        origin: origin.to_owned(),
        line: None,
        key: None,
        message: format!("cannot read the configuration file: {e}"),
    })
}

/// Configuration text and where it came from, to put file and line on its errors.
struct Source<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Source<'_> {
    fn error(&self, line: Option<usize>, key: Option<String>, message: String) -> ConfigError {
        ConfigError {
            origin: self.origin.to_owned(),
            line,
            key,
            message,
        }
    }

    /// Deserializes the text; an error names the line from toml's span and the key from the
    /// path `serde_path_to_error` tracked on the way down.
    fn deserialize<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        serde_path_to_error::deserialize(toml::Deserializer::new(self.text)).map_err(|e| {
            let path = e
                .path()
                .iter()
                .next()
                .is_some()
                .then(|| e.path().to_string());
            let e = e.into_inner();
            let line = match (e.span(), &path) {
                (Some(span), _) => Some(line_of(self.text, span.start)),
                (None, Some(path)) => KeyLines::of(self.text).locate(path).line,
                (None, None) => None,
            };
            // A syntax error is found before any key: on a `[table]` line, name the table.
            let key = path.or_else(|| line.and_then(|line| self.table_header(line)));
            // toml's messages may span lines ("invalid table header\nexpected `.`, `]`").
            let message = e.message().trim().replace('\n', ", ");
            self.error(line, key, message)
        })
    }

    /// A value [`Config::validate`] refused, on the line of its key (or, for a key the file
    /// does not set, of its table, saying that the default applies).
    fn refused(&self, e: Invalid) -> ConfigError {
        let located = KeyLines::of(self.text).locate(&e.key);
        let message = if located.set {
            e.message
        } else {
            format!(
                "{} (the key is not set in the file: its default applies)",
                e.message
            )
        };
        self.error(located.line, Some(e.key), message)
    }

    /// The name of the table whose `[header]` (or `[[header]]`) is on `line`.
    fn table_header(&self, line: usize) -> Option<String> {
        let text = self.text.lines().nth(line.saturating_sub(1))?.trim();
        let header = text.strip_prefix('[')?;
        let header = header.split(']').next()?.trim_start_matches('[').trim();
        (!header.is_empty()).then(|| header.to_owned())
    }
}
