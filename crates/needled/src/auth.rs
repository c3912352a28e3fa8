//! Who is calling. Per-person tokens live in the ledger's `people` table (only their SHA-256;
//! `needlectl person add|list|revoke`); tokens may also be configured (`[[service.tokens]]`).
//!
//! The first technician of a fresh install: when the ledger has no people and the
//! configuration no tokens, needled generates one operator and one technician token into a
//! 0600 `tokens.json` in the 0700 data directory (which only the service user and root can
//! read, as `needlectl` on the rig does) and adds both as people, created by `bootstrap`.
//! A technician then adds the real people and revokes the bootstrap ones.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;
use serde::{Deserialize, Serialize};

use std::sync::{Mutex, RwLock};

use crate::config::{self, TokenConfig};
use crate::session::{Actor, Role};
use crate::store::{same_hash, token_hash, LedgerError, PeopleError, Person, Store, TokenHash};

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

/// Who may call: the tokens of the configuration (hashed at start) and the people in the
/// ledger (`store/people.rs`, only hashes stored), each token checked in constant time on
/// its SHA-256. The active people are held in memory, loaded at start and changed only here
/// after the ledger committed the change, so checking a token never touches SQLite on an
/// async worker. A revoked person's token stops working at once; nobody else's changes.
#[derive(Debug)]
pub struct Tokens {
    configured: Vec<(TokenHash, Actor)>,
    people: Option<Mutex<Store>>,
    active: RwLock<Vec<(TokenHash, Actor)>>,
}

fn role_of(r: config::Role) -> Role {
    match r {
        config::Role::Operator => Role::Operator,
        config::Role::Technician => Role::Technician,
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// A new bearer token: 256 random bits, hex.
pub fn new_token() -> String {
    random_hex(32)
}

/// A list of generated tokens, with the name and role each belongs to.
#[derive(Debug, Clone)]
pub struct Generated(pub Vec<StoredToken>);

impl Tokens {
    /// The configuration's tokens and, if given, the people of the ledger `people` (a
    /// connection of its own on the ledger's file).
    pub fn new(tokens: &[TokenConfig], people: Option<Store>) -> Result<Self, LedgerError> {
        let active = match &people {
            Some(store) => store
                .active_people()?
                .into_iter()
                .map(|(name, role, hash)| (hash, Actor { name, role }))
                .collect(),
            None => Vec::new(),
        };
        Ok(Tokens {
            configured: tokens
                .iter()
                .map(|t| {
                    (
                        token_hash(&t.token),
                        Actor {
                            name: t.name.clone(),
                            role: role_of(t.role),
                        },
                    )
                })
                .collect(),
            people: people.map(Mutex::new),
            active: RwLock::new(active),
        })
    }

    fn store(&self) -> Result<std::sync::MutexGuard<'_, Store>, PeopleError> {
        self.people
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
            .ok_or_else(|| {
                PeopleError::Ledger(LedgerError::InvalidInput("no ledger for people".into()))
            })
    }

    /// Everyone in the ledger, revoked or not.
    pub fn people(&self) -> Result<Vec<Person>, PeopleError> {
        Ok(self.store()?.people()?)
    }

    /// Adds a person (see [`Store::add_person`]); their token works once this returns.
    pub fn add_person(
        &self,
        name: &str,
        role: Role,
        hash: &TokenHash,
        by: &str,
        now_ms: i64,
    ) -> Result<(), PeopleError> {
        let mut store = self.store()?;
        store.add_person(name, role, hash, by, now_ms)?;
        self.active_mut().push((
            *hash,
            Actor {
                name: name.to_owned(),
                role,
            },
        ));
        Ok(())
    }

    /// Revokes a person (see [`Store::revoke_person`]); their token is refused once the
    /// ledger has recorded it, and nobody else's changes.
    pub fn revoke_person(&self, name: &str, by: &str, now_ms: i64) -> Result<(), PeopleError> {
        let mut store = self.store()?;
        store.revoke_person(name, by, now_ms)?;
        self.active_mut().retain(|(_, a)| a.name != name);
        Ok(())
    }

    fn active_mut(&self) -> std::sync::RwLockWriteGuard<'_, Vec<(TokenHash, Actor)>> {
        self.active.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The actor a token belongs to: every configured hash and every active person's hash is
    /// compared in constant time (no early exit), configured tokens first.
    pub fn lookup(&self, token: &str) -> Option<Actor> {
        let hash = token_hash(token);
        let active = self.active.read().unwrap_or_else(|p| p.into_inner());
        let mut found = None;
        for (stored, actor) in self.configured.iter().chain(active.iter()) {
            if same_hash(stored, &hash) && found.is_none() {
                found = Some(actor.clone());
            }
        }
        found
    }
}

impl Generated {
    /// The generated tokens in `data_dir`, created (mode 0600) on first start.
    pub fn load_or_generate(data_dir: &Path) -> std::io::Result<(Self, PathBuf)> {
        let path = data_dir.join(TOKEN_FILE);
        match fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => {
                return Ok((Self::parse_file(&path, &text)?, path));
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
                token: new_token(),
            },
            StoredToken {
                name: "technician".into(),
                role: Role::Technician,
                token: new_token(),
            },
        ];
        let text = serde_json::to_string_pretty(&tokens).map_err(std::io::Error::other)?;
        // Atomically, as the device key: a complete temporary file, fsynced, then hard-linked
        // into place (never over a file another process created meanwhile), so a crash leaves
        // no file or a complete one.
        let tmp = data_dir.join(format!(".{TOKEN_FILE}.{}.tmp", random_hex(8)));
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
                Ok((Generated(tokens), path))
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
        Ok(Generated(tokens))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let (a, path) = Generated::load_or_generate(dir.path()).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (b, _) = Generated::load_or_generate(dir.path()).unwrap();
        assert_eq!(a.0[1].token, b.0[1].token);
        assert_eq!(a.0[1].role, Role::Technician);
        // 256 bits.
        assert_eq!(a.0[1].token.len(), 64);
    }

    #[test]
    fn lookup_finds_configured_tokens_and_active_people_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("l.db")).unwrap();
        let (ann, bob, cid) = (new_token(), new_token(), new_token());
        store
            .add_person("ann", Role::Operator, &token_hash(&ann), "t", 1)
            .unwrap();
        let configured = [TokenConfig {
            token: "configured-token-0001".into(),
            role: config::Role::Technician,
            name: "jig".into(),
        }];
        let tokens = Tokens::new(&configured, Some(store.reopen().unwrap())).unwrap();
        tokens
            .add_person("bob", Role::Operator, &token_hash(&bob), "t", 2)
            .unwrap();
        assert_eq!(tokens.lookup(&ann).map(|a| a.name), Some("ann".into()));
        assert_eq!(tokens.lookup(&bob).map(|a| a.name), Some("bob".into()));
        tokens.revoke_person("ann", "t", 3).unwrap();
        assert_eq!(tokens.lookup(&ann), None);
        assert_eq!(tokens.lookup(&bob).map(|a| a.name), Some("bob".into()));
        // A refused change leaves the tokens as they were.
        assert!(tokens
            .add_person("bob", Role::Technician, &token_hash(&cid), "t", 4)
            .is_err());
        assert_eq!(tokens.lookup(&cid), None);
        let jig = tokens.lookup("configured-token-0001").unwrap();
        assert_eq!((jig.name.as_str(), jig.role), ("jig", Role::Technician));
        assert_eq!(tokens.lookup(""), None);
        assert_eq!(tokens.lookup("wrong"), None);
        // What the ledger holds is what a restart loads.
        let again = Tokens::new(&[], Some(store.reopen().unwrap())).unwrap();
        assert_eq!(again.lookup(&ann), None);
        assert_eq!(again.lookup(&bob).map(|a| a.name), Some("bob".into()));
    }
}
