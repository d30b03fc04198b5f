//! Bearer tokens: who is calling ([`Caller`]), checked in constant time and
//! known afterwards only by a hash of the token, never the token itself.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use crate::problem::ApiError;
use crate::state::App;

/// The identity of a token: the hex SHA-256 of it. What records and logs
/// keep; the token cannot be recovered from it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity(pub String);

impl Identity {
    /// The identity of `token`.
    pub fn of(token: &str) -> Self {
        let d = Sha256::digest(token.as_bytes());
        let mut s = String::with_capacity(64);
        for b in d {
            s.push_str(&format!("{b:02x}"));
        }
        Identity(s)
    }

    /// The caller of a server without tokens (loopback only).
    pub fn anonymous() -> Self {
        Identity("anonymous".into())
    }
}

/// The configured tokens, held as their digests so that a comparison takes
/// the same time whichever byte differs.
#[derive(Debug, Default)]
pub struct Tokens {
    digests: Vec<[u8; 32]>,
}

impl Tokens {
    /// The tokens of `--token-file` / `RUNBOX_TOKENS` (blank ones dropped).
    pub fn new(tokens: &[String]) -> Self {
        Self {
            digests: tokens
                .iter()
                .map(|t| t.trim())
                .filter(|t| !t.is_empty())
                .map(|t| Sha256::digest(t.as_bytes()).into())
                .collect(),
        }
    }

    /// Is authentication on?
    pub fn enabled(&self) -> bool {
        !self.digests.is_empty()
    }

    /// The identity of a presented token, if it is one of ours. Every
    /// configured token is compared, each in constant time.
    pub fn check(&self, presented: &str) -> Option<Identity> {
        let d: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = false;
        for known in &self.digests {
            let diff = known
                .iter()
                .zip(d.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            found |= diff == 0;
        }
        found.then(|| Identity::of(presented))
    }
}

/// The authenticated caller of a `/v1` route.
#[derive(Debug, Clone)]
pub struct Caller(pub Identity);

impl FromRequestParts<App> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        if !app.tokens.enabled() {
            return Ok(Caller(Identity::anonymous()));
        }
        let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized("an Authorization: Bearer TOKEN header is required")
        })?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer TOKEN`")
            })?;
        app.tokens
            .check(token)
            .map(Caller)
            .ok_or_else(|| ApiError::unauthorized("the token is not valid"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_and_known_by_their_hash() {
        let t = Tokens::new(&["alpha".into(), " ".into(), "beta\n".into()]);
        assert!(t.enabled());
        assert_eq!(t.check("alpha"), Some(Identity::of("alpha")));
        assert_eq!(t.check("beta"), Some(Identity::of("beta")));
        assert_eq!(t.check("alph"), None);
        assert_eq!(t.check(""), None);
        assert!(!Identity::of("alpha").0.contains("alpha"));
        assert_eq!(Identity::of("alpha").0.len(), 64);
        assert!(!Tokens::new(&[" ".into()]).enabled());
    }
}
