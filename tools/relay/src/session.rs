//! The console's sessions (docs/relay.md, "The operator console"): an operator signs in with their
//! bearer token once and gets a random session id in a cookie (`HttpOnly`, `Secure`,
//! `SameSite=Strict`) and a random CSRF value that every form carries back. Only the SHA-256 of a
//! session id is kept, sessions expire after `LIFETIME`, and at most `MAX_SESSIONS` are held (the
//! oldest go first), so memory is bounded whatever the number of sign-ins.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How long a session lasts after sign-in.
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// Most sessions held at once.
pub const MAX_SESSIONS: usize = 1024;

/// One signed-in operator.
#[derive(Clone)]
pub struct Session {
    /// The operator's configured name.
    pub operator: String,
    /// The value every form must carry (hex, 256 bits).
    pub csrf: String,
    /// What the last action did, shown once on the next page.
    pub flash: Option<String>,
    expires: Instant,
    /// Sign-in order, to evict the oldest.
    serial: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the CSRF value.
        f.debug_struct("Session")
            .field("operator", &self.operator)
            .finish_non_exhaustive()
    }
}

/// The system's random generator failed.
#[derive(Debug, thiserror::Error)]
#[error("the system random generator failed: {0}")]
pub struct RandomError(String);

/// 32 random bytes, hex.
pub fn random_hex() -> Result<String, RandomError> {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut_slice()).map_err(|e| RandomError(e.to_string()))?;
    Ok(hex::encode(bytes.as_slice()))
}

/// Whether two secrets are equal, in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// The signed-in sessions.
#[derive(Default)]
pub struct Sessions {
    held: Mutex<HashMap<[u8; 32], Session>>,
    opened: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

impl Sessions {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens a session for `operator`: its id (for the cookie) and the session.
    pub fn open(&self, operator: &str) -> Result<(String, Session), RandomError> {
        let id = random_hex()?;
        let session = Session {
            operator: operator.to_owned(),
            csrf: random_hex()?,
            flash: None,
            expires: Instant::now() + LIFETIME,
            serial: self
                .opened
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        let mut held = self.held();
        let now = Instant::now();
        held.retain(|_, s| s.expires > now);
        while held.len() >= MAX_SESSIONS {
            let oldest = held.iter().min_by_key(|(_, s)| s.serial).map(|(k, _)| *k);
            match oldest {
                Some(k) => held.remove(&k),
                None => break,
            };
        }
        held.insert(key(&id), session.clone());
        Ok((id, session))
    }

    /// The session of a cookie's id, if it is open and not expired.
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut held = self.held();
        let k = key(id);
        match held.get(&k) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                held.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Takes the session's message for the next page.
    pub fn take_flash(&self, id: &str) -> Option<String> {
        self.held().get_mut(&key(id)).and_then(|s| s.flash.take())
    }

    /// Leaves a message for the session's next page.
    pub fn flash(&self, id: &str, message: String) {
        if let Some(s) = self.held().get_mut(&key(id)) {
            s.flash = Some(message);
        }
    }

    /// Ends a session.
    pub fn close(&self, id: &str) {
        self.held().remove(&key(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_open_expire_and_close() {
        let sessions = Sessions::default();
        let (id, s) = sessions.open("alice").unwrap();
        assert_eq!(id.len(), 64);
        assert_eq!(sessions.get(&id).unwrap().operator, "alice");
        assert_eq!(sessions.get(&id).unwrap().csrf, s.csrf);
        assert!(sessions.get("not a session").is_none());
        sessions.flash(&id, "done".into());
        assert_eq!(sessions.take_flash(&id).as_deref(), Some("done"));
        assert_eq!(sessions.take_flash(&id), None);
        sessions.close(&id);
        assert!(sessions.get(&id).is_none());
        // Bounded: the oldest sessions make room.
        let first = sessions.open("a").unwrap().0;
        for _ in 0..MAX_SESSIONS {
            sessions.open("b").unwrap();
        }
        assert!(sessions.get(&first).is_none());
        assert_eq!(sessions.held().len(), MAX_SESSIONS);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", ""));
    }
}
