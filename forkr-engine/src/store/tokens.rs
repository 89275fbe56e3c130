//! API tokens limited to one project (`forkr-server token create --project P`).
//!
//! A token is `fkt_<id>_<secret>`: `id` (8 hex) names it in listings and for revoking, `secret` is
//! 32 random bytes. Only the SHA-256 of the whole token is stored, so the database (or a backup of
//! it) grants nothing. Lookup is by that hash: a timing difference could only reveal a prefix of a
//! hash, never of a token, so no constant-time comparison is needed here (the admin token, which is
//! compared as a string, uses one).

use rusqlite::{OptionalExtension, params};
use sha2::Digest;

use super::Store;
use crate::{Error, Result};

/// A project token as listed (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenRow {
    pub id: String,
    pub project: String,
    pub created_at: String,
}

/// The stored form of a token.
fn hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

impl Store {
    /// Creates a token for `project`; returns its row and the token, which is shown once.
    pub fn create_token(&self, project: &str) -> Result<(TokenRow, String)> {
        crate::name::validate(crate::name::NameKind::Project, project)?;
        let id = crate::engine::random_hex(4)?;
        let token = format!("fkt_{id}_{}", crate::engine::random_hex(32)?);
        let row = TokenRow { id, project: project.to_owned(), created_at: crate::engine::now() };
        self.conn().execute(
            "INSERT INTO tokens (id, hash, project, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![row.id, hash(&token), row.project, row.created_at],
        )?;
        Ok((row, token))
    }

    /// The project `token` is limited to, if it is a project token.
    pub fn token_project(&self, token: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row("SELECT project FROM tokens WHERE hash = ?1", params![hash(token)], |r| r.get(0))
            .optional()?)
    }

    /// Every project token, oldest first.
    pub fn list_tokens(&self) -> Result<Vec<TokenRow>> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT id, project, created_at FROM tokens ORDER BY created_at, id")?;
        let rows =
            st.query_map([], |r| Ok(TokenRow { id: r.get(0)?, project: r.get(1)?, created_at: r.get(2)? }))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Revokes the token with `id`; a 404 when there is none.
    pub fn revoke_token(&self, id: &str) -> Result<()> {
        if self.conn().execute("DELETE FROM tokens WHERE id = ?1", params![id])? == 0 {
            return Err(Error::not_found("token", id));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stored_hashed_scoped_and_revocable() {
        let s = Store::in_memory().unwrap();
        let (row, token) = s.create_token("alpha").unwrap();
        assert!(token.starts_with(&format!("fkt_{}_", row.id)) && token.len() == 4 + 8 + 1 + 64, "{token}");
        assert_eq!(s.token_project(&token).unwrap().as_deref(), Some("alpha"));
        assert_eq!(s.token_project(&format!("{token}x")).unwrap(), None);
        assert_eq!(s.token_project("").unwrap(), None);
        // Only the hash is stored.
        let stored: String = s.conn().query_row("SELECT hash FROM tokens", [], |r| r.get(0)).unwrap();
        assert_ne!(stored, token);
        assert!(!stored.contains(&token[13..]));
        let (_, other) = s.create_token("beta").unwrap();
        assert_ne!(other, token);
        assert_eq!(s.list_tokens().unwrap().len(), 2);
        assert_eq!(s.create_token("Not A Project").unwrap_err().code(), "invalid_name");
        s.revoke_token(&row.id).unwrap();
        assert_eq!(s.token_project(&token).unwrap(), None);
        assert_eq!(s.revoke_token(&row.id).unwrap_err().kind(), crate::ErrorKind::NotFound);
    }
}
