//! The people who hold API tokens: name, role, the SHA-256 of their token (never the token),
//! who created them and when, and when and by whom they were revoked. Adding and revoking a
//! person is one transaction with the event that records it, and its actor is the
//! authenticated technician who did it.

use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

use super::{events, validate, Event, LedgerError, Store};
use crate::error::ErrorCode;
use crate::session::Role;

/// Event kind: a person was added (detail: name, role).
pub const PERSON_ADDED: &str = "person_added";
/// Event kind: a person's token was revoked (detail: name).
pub const PERSON_REVOKED: &str = "person_revoked";

/// Actor names the service writes itself, never a person's.
pub const RESERVED_NAMES: [&str; 2] = [super::SYSTEM_ACTOR, "bootstrap"];

/// SHA-256 of a bearer token, as stored.
pub type TokenHash = [u8; 32];

/// The stored hash of `token`.
pub fn token_hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// Equality of two hashes in constant time (no early exit on the first differing byte).
pub fn same_hash(a: &TokenHash, b: &TokenHash) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One person as listed (no hash): the contract's type.
pub use needle_api::Person;

/// Why a change to the people was refused; it changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum PeopleError {
    /// A person of this name exists (revoked or not: names are never reused).
    #[error("a person named {0:?} exists already (names are never reused)")]
    Exists(String),
    /// No person of this name.
    #[error("no person named {0:?}")]
    NotFound(String),
    /// The person's token is already revoked.
    #[error("{0:?} is already revoked")]
    AlreadyRevoked(String),
    /// A name the service itself writes as an actor (`system`, `bootstrap`): a person so
    /// named could pass their actions off as the service's.
    #[error("{0:?} is reserved for the service's own events")]
    Reserved(String),
    /// A refused name or another ledger refusal.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl PeopleError {
    /// Stable machine code.
    pub fn code(&self) -> ErrorCode {
        match self {
            PeopleError::Exists(_) => ErrorCode::PersonExists,
            PeopleError::NotFound(_) => ErrorCode::PersonNotFound,
            PeopleError::AlreadyRevoked(_) => ErrorCode::PersonRevoked,
            PeopleError::Reserved(_) => ErrorCode::PersonNameReserved,
            PeopleError::Ledger(e) => crate::error::known(e.code()),
        }
    }

    /// HTTP status for the API.
    pub fn status(&self) -> u16 {
        match self {
            PeopleError::Exists(_) | PeopleError::AlreadyRevoked(_) => 409,
            PeopleError::NotFound(_) => 404,
            PeopleError::Reserved(_) => 400,
            PeopleError::Ledger(e) if e.code() == "invalid_input" => 400,
            PeopleError::Ledger(_) => 503,
        }
    }
}

impl From<rusqlite::Error> for PeopleError {
    fn from(e: rusqlite::Error) -> Self {
        PeopleError::Ledger(LedgerError::Db(e))
    }
}

fn role_str(role: Role) -> &'static str {
    match role {
        Role::Operator => "operator",
        Role::Technician => "technician",
    }
}

fn role_of(s: &str) -> Result<Role, LedgerError> {
    match s {
        "operator" => Ok(Role::Operator),
        "technician" => Ok(Role::Technician),
        other => Err(LedgerError::Corrupt(format!("people.role = {other:?}"))),
    }
}

impl Store {
    /// Adds `name` with `role` and the hash of their token, with a [`PERSON_ADDED`] event by
    /// `by`, in one transaction. Refuses an existing name (also a revoked one).
    pub fn add_person(
        &mut self,
        name: &str,
        role: Role,
        hash: &TokenHash,
        by: &str,
        now_ms: i64,
    ) -> Result<(), PeopleError> {
        self.add_people(&[(name, role, *hash)], by, now_ms)
    }

    /// Adds several people at once: all or none (the bootstrap people of a fresh ledger, so a
    /// start killed half-way cannot leave one of them missing for good).
    pub fn add_people(
        &mut self,
        people: &[(&str, Role, TokenHash)],
        by: &str,
        now_ms: i64,
    ) -> Result<(), PeopleError> {
        for (name, _, _) in people {
            validate::text("name", name)?;
            if RESERVED_NAMES
                .iter()
                .any(|r| name.trim().eq_ignore_ascii_case(r))
            {
                return Err(PeopleError::Reserved((*name).to_owned()));
            }
        }
        validate::text("actor", by)?;
        validate::time("at_ms", now_ms)?;
        let mut refused = None;
        let written = self.write(|tx| {
            for (name, role, hash) in people {
                let exists: Option<String> = tx
                    .query_row("SELECT name FROM people WHERE name = ?1", [name], |r| {
                        r.get(0)
                    })
                    .optional()?;
                if exists.is_some() {
                    // An error rolls back the people added before it.
                    refused = Some(PeopleError::Exists((*name).to_owned()));
                    return Err(LedgerError::InvalidInput(format!("{name} exists")));
                }
                tx.execute(
                    "INSERT INTO people (name, role, token_sha256, created_at_ms, created_by)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![name, role_str(*role), hash.as_slice(), now_ms, by],
                )?;
                events::insert(
                    tx,
                    &Event::new(now_ms, by, PERSON_ADDED)
                        .detail(serde_json::json!({ "name": name, "role": role_str(*role) })),
                )?;
            }
            Ok(())
        });
        match refused {
            Some(e) => Err(e),
            None => Ok(written?),
        }
    }

    /// Revokes `name`'s token, with a [`PERSON_REVOKED`] event by `by`, in one transaction.
    pub fn revoke_person(&mut self, name: &str, by: &str, now_ms: i64) -> Result<(), PeopleError> {
        validate::text("actor", by)?;
        validate::time("at_ms", now_ms)?;
        self.write(|tx| {
            let revoked: Option<Option<i64>> = tx
                .query_row(
                    "SELECT revoked_at_ms FROM people WHERE name = ?1",
                    [name],
                    |r| r.get(0),
                )
                .optional()?;
            match revoked {
                None => return Ok(Err(PeopleError::NotFound(name.to_owned()))),
                Some(Some(_)) => return Ok(Err(PeopleError::AlreadyRevoked(name.to_owned()))),
                Some(None) => {}
            }
            tx.execute(
                "UPDATE people SET revoked_at_ms = ?2, revoked_by = ?3 WHERE name = ?1",
                params![name, now_ms, by],
            )?;
            events::insert(
                tx,
                &Event::new(now_ms, by, PERSON_REVOKED).detail(serde_json::json!({ "name": name })),
            )?;
            Ok(Ok(()))
        })?
    }

    /// Everyone, revoked or not, by name.
    pub fn people(&self) -> Result<Vec<Person>, LedgerError> {
        self.read(|tx| {
            let mut stmt = tx.prepare(
                "SELECT name, role, created_at_ms, created_by, revoked_at_ms, revoked_by
                 FROM people ORDER BY name",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (name, role, created_at_ms, created_by, revoked_at_ms, revoked_by) = row?;
                out.push(Person {
                    name,
                    role: role_of(&role)?,
                    created_at_ms,
                    created_by,
                    revoked_at_ms,
                    revoked_by,
                });
            }
            Ok(out)
        })
    }

    /// Every person not revoked, with their token's hash.
    pub fn active_people(&self) -> Result<Vec<(String, Role, TokenHash)>, LedgerError> {
        self.read(|tx| {
            let mut stmt = tx.prepare(
                "SELECT name, role, token_sha256 FROM people WHERE revoked_at_ms IS NULL",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (name, role, stored) = row?;
                let hash: TokenHash = stored
                    .try_into()
                    .map_err(|_| LedgerError::Corrupt(format!("people.token_sha256 of {name}")))?;
                out.push((name, role_of(&role)?, hash));
            }
            Ok(out)
        })
    }

    /// The active person whose token hashes to `hash` (every hash compared in constant time).
    pub fn person_by_token(&self, hash: &TokenHash) -> Result<Option<(String, Role)>, LedgerError> {
        let mut found = None;
        for (name, role, stored) in self.active_people()? {
            if same_hash(&stored, hash) && found.is_none() {
                found = Some((name, role));
            }
        }
        Ok(found)
    }

    /// Whether anyone was ever added.
    pub fn has_people(&self) -> Result<bool, LedgerError> {
        self.read(|tx| Ok(tx.query_row("SELECT EXISTS (SELECT 1 FROM people)", [], |r| r.get(0))?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("ledger.db")).expect("open");
        (dir, store)
    }

    #[test]
    fn a_revoked_person_is_not_found_by_token_while_others_are() {
        let (_dir, mut store) = store();
        let (a, b) = (
            token_hash("token-of-ann-0000"),
            token_hash("token-of-bob-0000"),
        );
        store
            .add_person("ann", Role::Operator, &a, "tech", 1)
            .unwrap();
        store
            .add_person("bob", Role::Technician, &b, "tech", 2)
            .unwrap();
        store.revoke_person("ann", "bob", 3).unwrap();
        assert_eq!(store.person_by_token(&a).unwrap(), None);
        assert_eq!(
            store.person_by_token(&b).unwrap(),
            Some(("bob".to_owned(), Role::Technician))
        );
        let people = store.people().unwrap();
        assert_eq!(people[0].revoked_by.as_deref(), Some("bob"));
        assert_eq!(people[1].revoked_at_ms, None);
        let events = store.events_after(0, 10).unwrap();
        let kinds: Vec<_> = events
            .iter()
            .map(|e| (e.event.actor.as_str(), e.event.kind.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("tech", PERSON_ADDED),
                ("tech", PERSON_ADDED),
                ("bob", PERSON_REVOKED)
            ]
        );
    }

    #[test]
    fn refusals_change_nothing_and_have_codes() {
        let (_dir, mut store) = store();
        let h = token_hash("token-of-ann-0000");
        store
            .add_person("ann", Role::Operator, &h, "tech", 1)
            .unwrap();
        let e = store
            .add_person(
                "ann",
                Role::Technician,
                &token_hash("other-token-0000"),
                "tech",
                2,
            )
            .unwrap_err();
        assert_eq!(e.code().as_str(), "person_exists");
        assert_eq!(
            store
                .revoke_person("zed", "tech", 2)
                .unwrap_err()
                .code()
                .as_str(),
            "person_not_found"
        );
        store.revoke_person("ann", "tech", 3).unwrap();
        assert_eq!(
            store
                .revoke_person("ann", "tech", 4)
                .unwrap_err()
                .code()
                .as_str(),
            "person_revoked"
        );
        // A revoked name cannot be re-added with a new token either.
        assert_eq!(
            store
                .add_person(
                    "ann",
                    Role::Operator,
                    &token_hash("new-token-00000"),
                    "tech",
                    5
                )
                .unwrap_err()
                .code()
                .as_str(),
            "person_exists"
        );
        for reserved in ["system", "Bootstrap"] {
            let e = store
                .add_person(
                    reserved,
                    Role::Technician,
                    &token_hash("token-of-sys-0000"),
                    "tech",
                    6,
                )
                .unwrap_err();
            assert_eq!(e.code().as_str(), "person_name_reserved");
        }
        assert_eq!(store.events_after(0, 10).unwrap().len(), 2);
        assert_eq!(store.people().unwrap().len(), 1);
    }

    #[test]
    fn adding_several_people_is_all_or_none() {
        let (_dir, mut store) = store();
        store
            .add_person(
                "bob",
                Role::Operator,
                &token_hash("token-of-bob-0000"),
                "t",
                1,
            )
            .unwrap();
        let batch = [
            ("ann", Role::Operator, token_hash("token-of-ann-0000")),
            ("bob", Role::Technician, token_hash("token-of-bob-1111")),
        ];
        assert_eq!(
            store
                .add_people(&batch, "t", 2)
                .unwrap_err()
                .code()
                .as_str(),
            "person_exists"
        );
        assert_eq!(
            store.people().unwrap().len(),
            1,
            "ann was rolled back with bob"
        );
        assert_eq!(store.events_after(0, 10).unwrap().len(), 1);
    }

    #[test]
    fn the_database_refuses_unrevoking_and_deleting_people() {
        let (_dir, mut store) = store();
        store
            .add_person(
                "ann",
                Role::Operator,
                &token_hash("token-of-ann-0000"),
                "t",
                1,
            )
            .unwrap();
        store.revoke_person("ann", "t", 2).unwrap();
        assert!(store
            .conn
            .execute(
                "UPDATE people SET revoked_at_ms = NULL, revoked_by = NULL",
                []
            )
            .is_err());
        assert!(store.conn.execute("DELETE FROM people", []).is_err());
        assert_eq!(
            store
                .person_by_token(&token_hash("token-of-ann-0000"))
                .unwrap(),
            None
        );
    }
}
