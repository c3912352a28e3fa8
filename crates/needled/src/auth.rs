//! API tokens: from the configuration, or generated on first start into a 0600 file in the
//! data directory that `needlectl` and jig scripts read.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::config::{self, TokenConfig};
use crate::session::{Actor, Role};

/// Name of the generated token file in the data directory.
pub const TOKEN_FILE: &str = "tokens.json";

/// One token as stored in the generated file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredToken {
    /// Name recorded as the actor of its calls.
    pub name: String,
    /// Role.
    pub role: Role,
    /// The secret.
    pub token: String,
}

/// The known tokens.
#[derive(Debug, Clone)]
pub struct Tokens(Vec<StoredToken>);

fn role_of(r: config::Role) -> Role {
    match r {
        config::Role::Operator => Role::Operator,
        config::Role::Technician => Role::Technician,
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Constant-time comparison, so a token cannot be guessed byte by byte from timing.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Tokens {
    /// Tokens from the configuration.
    pub fn from_config(tokens: &[TokenConfig]) -> Self {
        Tokens(
            tokens
                .iter()
                .map(|t| StoredToken {
                    name: t.name.clone(),
                    role: role_of(t.role),
                    token: t.token.clone(),
                })
                .collect(),
        )
    }

    /// The generated tokens in `data_dir`, created (mode 0600) on first start.
    pub fn load_or_generate(data_dir: &Path) -> std::io::Result<(Self, PathBuf)> {
        let path = data_dir.join(TOKEN_FILE);
        match fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => {
                return Ok((Self::parse_file(&path, &text)?, path))
            }
            // Empty: what a crash between creating and writing the file left behind before it
            // was written atomically. No token was ever handed out from it: make new ones.
            Ok(_) => fs::remove_file(&path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let tokens = vec![
            StoredToken {
                name: "operator".into(),
                role: Role::Operator,
                token: random_token(),
            },
            StoredToken {
                name: "technician".into(),
                role: Role::Technician,
                token: random_token(),
            },
        ];
        let text = serde_json::to_string_pretty(&tokens).map_err(std::io::Error::other)?;
        // Atomically, as the device key: a complete temporary file, fsynced, then hard-linked
        // into place (never over a file another process created meanwhile), so a crash leaves
        // no file or a complete one.
        let tmp = data_dir.join(format!(".{TOKEN_FILE}.{}.tmp", &random_token()[..16]));
        let written = (|| {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                fs::File::open(data_dir)?.sync_all()?;
                Ok((Tokens(tokens), path))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = fs::read_to_string(&path)?;
                Ok((Self::parse_file(&path, &text)?, path))
            }
            Err(e) => Err(e),
        }
    }

    fn parse_file(path: &Path, text: &str) -> std::io::Result<Self> {
        let tokens: Vec<StoredToken> = serde_json::from_str(text).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        Ok(Tokens(tokens))
    }

    /// The actor a token belongs to.
    pub fn lookup(&self, token: &str) -> Option<Actor> {
        self.0
            .iter()
            .find(|t| same(&t.token, token))
            .map(|t| Actor {
                name: t.name.clone(),
                role: t.role,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let (a, path) = Tokens::load_or_generate(dir.path()).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (b, _) = Tokens::load_or_generate(dir.path()).unwrap();
        let tech = &a.0[1].token;
        assert_eq!(b.lookup(tech).map(|x| x.role), Some(Role::Technician));
        assert!(a.lookup("wrong").is_none());
        assert!(a.lookup("").is_none());
    }
}
