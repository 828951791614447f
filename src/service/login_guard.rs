//! The gate every password login goes through, whichever face it comes from (the native
//! `POST /api/v1/auth/login`, the MAAS face's `accounts/authenticate/`, a cookie login later).
//! Two bounds:
//!
//! - **Hashing is bounded.** argon2 takes 19 MiB for each verification. Verifications run in
//!   `hash_slots` slots, so the memory for hashing is at most `hash_slots` buffers however many
//!   logins arrive. A buffer is handed on to a login waiting for a slot, and given back to the
//!   system when none waits: an appliance that sees a login an hour holds no 19 MiB for it
//!   (the daemon fixes glibc's mmap threshold, see `daemon::fix_malloc_thresholds`, so a freed
//!   buffer is unmapped, not kept in an arena). At most `hash_queue`
//!   logins wait for a slot, each for at most `hash_wait`; beyond either, the login is answered
//!   503 with Retry-After at once, and not counted as a failure.
//! - **Repeated failures are slowed down**, per user name and per source address (IPv6 per /64).
//!   Every attempt is counted when it is admitted (so attempts sent all at once cannot slip past
//!   the count before the first one fails); a success forgets the user's count and gives the
//!   source its attempt back. After `free_failures_per_user` (or `_per_source`) counted
//!   attempts, each further attempt must wait 1 s, then 2 s, 4 s... up to `max_delay` after the
//!   previous one (a lockout that grows, and ends by itself); sooner, it is answered 429 with Retry-After before any hashing. A name that
//!   is not a user is counted the same way, and the answer never says which it was. A count is
//!   forgotten `FORGET_AFTER` after its last attempt, and at most `MAX_TRACKED` names and as
//!   many sources are tracked: when full, the one whose last attempt is oldest is forgotten.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

use super::ServiceError;
use super::enlist::source_key;

/// Names (and, separately, sources) whose attempts are counted at once.
const MAX_TRACKED: usize = 4096;

/// A count is forgotten this long after its last attempt.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);

/// The largest argon2 memory a stored hash may ask for (256 MiB); a larger one never verifies.
const MAX_HASH_BLOCKS: usize = 256 * 1024;

/// Settings of the login gate (`[auth]` `login_*` in the configuration).
#[derive(Clone, Copy, Debug)]
pub struct LoginOptions {
    /// Password hashes computed at once (each takes 19 MiB while it runs, kept for reuse).
    pub hash_slots: usize,
    /// Logins that may wait for a slot; more are answered 503 at once.
    pub hash_queue: usize,
    /// The longest a login waits for a slot before it is answered 503.
    pub hash_wait: Duration,
    /// Attempts for one user name before each further one is delayed.
    pub free_failures_per_user: u32,
    /// Attempts from one source address (IPv6: /64) before each further one is delayed.
    pub free_failures_per_source: u32,
    /// The longest delay between two attempts once they are delayed.
    pub max_delay: Duration,
}

impl Default for LoginOptions {
    fn default() -> Self {
        LoginOptions {
            hash_slots: 2,
            hash_queue: 32,
            hash_wait: Duration::from_secs(5),
            free_failures_per_user: 5,
            free_failures_per_source: 20,
            max_delay: Duration::from_secs(60),
        }
    }
}

/// Counted attempts of one user name or source.
#[derive(Clone, Copy, Debug)]
struct Record {
    attempts: u32,
    last: Instant,
}

/// Attempts per key, bounded in size.
struct Counts<K> {
    free: u32,
    max_delay: Duration,
    records: HashMap<K, Record>,
}

impl<K: Hash + Eq + Clone> Counts<K> {
    fn new(free: u32, max_delay: Duration) -> Counts<K> {
        Counts {
            free,
            max_delay,
            records: HashMap::new(),
        }
    }

    /// How long after its last attempt a key with `attempts` counted attempts must wait.
    fn delay(&self, attempts: u32) -> Duration {
        if attempts < self.free {
            return Duration::ZERO;
        }
        let doublings = (attempts - self.free).min(20);
        Duration::from_secs(1u64 << doublings).min(self.max_delay)
    }

    /// How long `key` must still wait at `now` (zero: it may try).
    ///
    /// Attempts within the free ones never wait, however close together: `now` is read before
    /// the locks, so a concurrent attempt may have been counted with a later instant than this
    /// one's, and `last - now` must not turn into a wait (200 concurrent logins once got 429s
    /// that way).
    fn wait(&self, key: &K, now: Instant) -> Duration {
        match self.records.get(key) {
            Some(r) if now.saturating_duration_since(r.last) < FORGET_AFTER => {
                let delay = self.delay(r.attempts);
                if delay.is_zero() {
                    return Duration::ZERO;
                }
                (r.last + delay).saturating_duration_since(now)
            }
            _ => Duration::ZERO,
        }
    }

    /// Counts an attempt of `key` at `now` (after `wait` said zero).
    fn charge(&mut self, key: &K, now: Instant) {
        if !self.records.contains_key(key) && self.records.len() >= MAX_TRACKED {
            self.records
                .retain(|_, r| now.duration_since(r.last) < FORGET_AFTER);
            if self.records.len() >= MAX_TRACKED
                && let Some(oldest) = self
                    .records
                    .iter()
                    .min_by_key(|(_, r)| r.last)
                    .map(|(k, _)| k.clone())
            {
                self.records.remove(&oldest);
            }
        }
        let r = self.records.entry(key.clone()).or_insert(Record {
            attempts: 0,
            last: now,
        });
        if now.duration_since(r.last) >= FORGET_AFTER {
            r.attempts = 0;
        }
        r.attempts = r.attempts.saturating_add(1);
        // Never backwards: a concurrent attempt may have been counted with a later instant.
        r.last = r.last.max(now);
    }

    /// Gives back one counted attempt of `key`.
    fn refund(&mut self, key: &K) {
        if let Some(r) = self.records.get_mut(key) {
            r.attempts = r.attempts.saturating_sub(1);
            if r.attempts == 0 {
                self.records.remove(key);
            }
        }
    }

    fn forget(&mut self, key: &K) {
        self.records.remove(key);
    }
}

/// An admitted login attempt: what was counted, so that it can be given back.
#[derive(Debug)]
pub(crate) struct Attempt {
    user: String,
    source: Option<IpAddr>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Whole seconds for Retry-After, rounded up, at least 1.
fn retry_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The login gate: hashing slots with their buffers, and the failure counts.
pub(crate) struct LoginGuard {
    options: LoginOptions,
    slots: Arc<Semaphore>,
    /// Logins waiting for a slot now.
    waiting: AtomicUsize,
    /// Buffers of the slots not hashing now, kept only while logins wait for them (at most
    /// `hash_slots` exist at once).
    memory: Mutex<Vec<Vec<Block>>>,
    users: Mutex<Counts<String>>,
    sources: Mutex<Counts<IpAddr>>,
}

impl LoginGuard {
    pub(crate) fn new(options: LoginOptions) -> LoginGuard {
        LoginGuard {
            options,
            slots: Arc::new(Semaphore::new(options.hash_slots.max(1))),
            waiting: AtomicUsize::new(0),
            memory: Mutex::new(Vec::new()),
            users: Mutex::new(Counts::new(
                options.free_failures_per_user,
                options.max_delay,
            )),
            sources: Mutex::new(Counts::new(
                options.free_failures_per_source,
                options.max_delay,
            )),
        }
    }

    /// Admits an attempt for `user` from `source` at `now`, counting it, or answers 429.
    pub(crate) fn admit(
        &self,
        user: &str,
        source: Option<IpAddr>,
        now: Instant,
    ) -> Result<Attempt, ServiceError> {
        let source = source.map(source_key);
        // Both locks, always in this order, so the check and the count are one step.
        let mut users = lock(&self.users);
        let mut sources = lock(&self.sources);
        let user_key = user.to_string();
        let wait = users
            .wait(&user_key, now)
            .max(source.map_or(Duration::ZERO, |s| sources.wait(&s, now)));
        if !wait.is_zero() {
            let secs = retry_secs(wait);
            return Err(ServiceError::RateLimited {
                message: format!(
                    "too many failed logins for this user name or from this address; \
                     try again in {secs} s"
                ),
                retry_after_secs: secs,
            });
        }
        users.charge(&user_key, now);
        if let Some(s) = &source {
            sources.charge(s, now);
        }
        Ok(Attempt {
            user: user_key,
            source,
        })
    }

    /// The attempt was right: the user's count is forgotten, the source gets its attempt back.
    pub(crate) fn succeeded(&self, attempt: Attempt) {
        lock(&self.users).forget(&attempt.user);
        if let Some(s) = &attempt.source {
            lock(&self.sources).refund(s);
        }
    }

    /// The attempt was never checked (no slot): both get it back.
    pub(crate) fn not_tried(&self, attempt: Attempt) {
        lock(&self.users).refund(&attempt.user);
        if let Some(s) = &attempt.source {
            lock(&self.sources).refund(s);
        }
    }

    /// Runs `work` with a slot's argon2 buffer on a blocking thread, waiting for a slot as the
    /// options allow, or answers 503.
    pub(crate) async fn hash<T, F>(&self, work: F) -> Result<T, ServiceError>
    where
        F: FnOnce(&mut Vec<Block>) -> T + Send + 'static,
        T: Send + 'static,
    {
        let busy = || ServiceError::Busy {
            message: "too many logins at once; try again in a moment".into(),
            retry_after_secs: 1,
        };
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.options.hash_queue {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    return Err(busy());
                }
                let got = tokio::time::timeout(
                    self.options.hash_wait,
                    self.slots.clone().acquire_owned(),
                )
                .await;
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                match got {
                    Ok(Ok(p)) => p,
                    _ => return Err(busy()),
                }
            }
        };
        let mut memory = lock(&self.memory).pop().unwrap_or_default();
        let (memory, out) = tokio::task::spawn_blocking(move || {
            let out = work(&mut memory);
            (memory, out)
        })
        .await
        .map_err(|e| ServiceError::Invalid(format!("password hashing failed: {e}")))?;
        if self.waiting.load(Ordering::SeqCst) > 0 {
            lock(&self.memory).push(memory);
        } else {
            drop(memory);
        }
        drop(permit);
        Ok(out)
    }
}

/// Why a password could not be checked against a stored hash.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HashError {
    /// The stored hash is not an argon2 PHC string this build reads.
    #[error("the stored password hash cannot be read: {0}")]
    Format(String),
    /// argon2 refused its inputs.
    #[error("argon2 failed: {0}")]
    Argon2(String),
}

impl From<argon2::Error> for HashError {
    fn from(e: argon2::Error) -> Self {
        HashError::Argon2(e.to_string())
    }
}

impl From<argon2::password_hash::Error> for HashError {
    fn from(e: argon2::password_hash::Error) -> Self {
        HashError::Format(e.to_string())
    }
}

/// Hashes `password` (argon2id, the crate's default parameters) with `memory` as argon2's
/// working memory, into a PHC string.
pub(crate) fn hash_password_with(
    password: &str,
    memory: &mut Vec<Block>,
) -> Result<String, HashError> {
    let mut salt_bytes = [0u8; 16];
    rand::Rng::fill(&mut rand::rng(), &mut salt_bytes);
    let salt = SaltString::encode_b64(&salt_bytes)?;
    let params = Params::default();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    memory.resize(params.block_count(), Block::default());
    argon.hash_password_into_with_memory(
        password.as_bytes(),
        &salt_bytes,
        &mut out,
        &mut memory[..],
    )?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: (&params).try_into()?,
        salt: Some(salt.as_salt()),
        hash: Some(argon2::password_hash::Output::new(&out)?),
    };
    Ok(hash.to_string())
}

/// Checks `password` against a stored argon2 PHC string, with `memory` as argon2's working
/// memory (grown when the hash asks for more, up to 256 MiB).
pub(crate) fn verify_password_with(
    password: &str,
    hash: &str,
    memory: &mut Vec<Block>,
) -> Result<bool, HashError> {
    let parsed = PasswordHash::new(hash)?;
    let algorithm = Algorithm::try_from(parsed.algorithm)?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()?
        .unwrap_or_default();
    let params = Params::try_from(&parsed)?;
    let salt = parsed
        .salt
        .ok_or_else(|| HashError::Format("no salt".into()))?;
    let expected = parsed
        .hash
        .ok_or_else(|| HashError::Format("no hash".into()))?;
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buf)?;
    let blocks = params.block_count();
    if blocks > MAX_HASH_BLOCKS {
        return Err(HashError::Format(format!(
            "{blocks} KiB of memory is too much"
        )));
    }
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password.as_bytes(),
        salt_bytes,
        &mut out,
        &mut memory[..],
    )?;
    Ok(super::users::constant_time_eq(&out, expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> LoginGuard {
        LoginGuard::new(LoginOptions::default())
    }

    #[test]
    fn free_attempts_counted_out_of_order_never_wait() {
        // Concurrent logins read the clock before the locks: one counted at a later instant
        // must not make an earlier-read one wait.
        let g = guard();
        let t0 = Instant::now();
        let later = t0 + Duration::from_millis(5);
        let source = Some("192.0.2.7".parse().unwrap());
        g.admit("alice", source, later).unwrap();
        for user in ["alice", "bob"] {
            g.admit(user, source, t0).unwrap();
        }
    }

    #[test]
    fn a_user_is_delayed_after_its_free_attempts_then_doubling() {
        let g = guard();
        let t0 = Instant::now();
        for _ in 0..5 {
            g.admit("alice", None, t0).unwrap();
        }
        // After the 5 free attempts, the next waits 1 s.
        match g.admit("alice", None, t0) {
            Err(ServiceError::RateLimited {
                retry_after_secs, ..
            }) => assert_eq!(retry_after_secs, 1),
            other => panic!("expected 429, got {other:?}"),
        }
        let t1 = t0 + Duration::from_secs(1);
        g.admit("alice", None, t1).unwrap();
        match g.admit("alice", None, t1 + Duration::from_millis(1500)) {
            Err(ServiceError::RateLimited {
                retry_after_secs, ..
            }) => assert_eq!(retry_after_secs, 1),
            other => panic!("expected 429, got {other:?}"),
        }
        // Another name is not affected; the count is forgotten after a while.
        g.admit("bob", None, t1).unwrap();
        g.admit("alice", None, t1 + FORGET_AFTER).unwrap();
    }

    #[test]
    fn a_success_forgets_the_user_and_refunds_the_source() {
        let g = guard();
        let t = Instant::now();
        let src = Some("192.0.2.7".parse().unwrap());
        for _ in 0..4 {
            g.admit("alice", src, t).unwrap();
        }
        let ok = g.admit("alice", src, t).unwrap();
        g.succeeded(ok);
        for _ in 0..5 {
            g.admit("alice", src, t).unwrap();
        }
        assert!(g.admit("alice", src, t).is_err());
    }

    #[test]
    fn a_source_is_counted_across_names_and_ipv6_by_its_64() {
        let g = guard();
        let t = Instant::now();
        for i in 0..20 {
            let src: IpAddr = format!("2001:db8:1:2::{:x}", i + 1).parse().unwrap();
            g.admit(&format!("user{i}"), Some(src), t).unwrap();
        }
        let next = g.admit("user21", Some("2001:db8:1:2:abcd::1".parse().unwrap()), t);
        assert!(matches!(next, Err(ServiceError::RateLimited { .. })));
        g.admit("user21", Some("2001:db8:1:3::1".parse().unwrap()), t)
            .unwrap();
    }

    #[test]
    fn tracked_names_are_bounded() {
        let g = guard();
        let t = Instant::now();
        for i in 0..(MAX_TRACKED + 100) {
            g.admit(&format!("n{i}"), None, t).unwrap();
        }
        assert_eq!(lock(&g.users).records.len(), MAX_TRACKED);
    }

    #[test]
    fn hashes_made_with_a_buffer_verify_with_and_without_it() {
        use argon2::password_hash::PasswordVerifier;
        let mut memory = Vec::new();
        let hash = hash_password_with("correct horse", &mut memory).unwrap();
        assert!(verify_password_with("correct horse", &hash, &mut memory).unwrap());
        assert!(!verify_password_with("wrong horse", &hash, &mut memory).unwrap());
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        // A hash made by the crate's own hasher verifies here too (stored users' hashes).
        let theirs = argon2::password_hash::PasswordHasher::hash_password(
            &Argon2::default(),
            b"pw123456",
            &SaltString::encode_b64(b"0123456789abcdef").unwrap(),
        )
        .unwrap()
        .to_string();
        assert!(verify_password_with("pw123456", &theirs, &mut memory).unwrap());
    }

    #[test]
    fn the_dummy_hash_is_verified_in_full() {
        // An unknown user's login spends a whole verification, never a quick parse error.
        let mut memory = Vec::new();
        assert!(
            !verify_password_with("anything", super::super::users::DUMMY_HASH, &mut memory)
                .unwrap()
        );
    }

    #[tokio::test]
    async fn a_full_queue_is_answered_busy_at_once() {
        let g = Arc::new(LoginGuard::new(LoginOptions {
            hash_slots: 1,
            hash_queue: 0,
            ..LoginOptions::default()
        }));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let held = {
            let g = g.clone();
            tokio::spawn(async move { g.hash(move |_| rx.recv().ok()).await })
        };
        while g.slots.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let second = g.hash(|_| ()).await;
        assert!(matches!(second, Err(ServiceError::Busy { .. })));
        tx.send(()).unwrap();
        held.await.unwrap().unwrap();
        g.hash(|_| ()).await.unwrap();
    }
}
