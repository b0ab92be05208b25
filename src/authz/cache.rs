//! Answers of the Cloud Controller, kept per (user, question) for `[authorization]
//! cache_seconds` and never past the token's `exp`: positive and negative answers alike,
//! failures never. Bounded (`cache_size`; a list of visible spaces weighs one entry per 100
//! spaces), and concurrent misses of one key make one call (moka's `or_try_insert_with`),
//! so a burst of identical creates asks the Cloud Controller once. A new configuration
//! (a reload) starts an empty cache.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use moka::future::Cache;
use moka::Expiry;

use crate::service::{
    FeatureFlag, Question, SpaceFacts, Undecided, VisibleOrganizations, VisibleSpaces,
};

/// What was asked, with its argument.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Asked {
    Space(String),
    Role(String),
    FeatureFlag,
    Organization(String),
    VisibleSpaces,
    VisibleOrganizations,
}

impl Asked {
    pub(super) fn question(&self) -> Question {
        match self {
            Asked::Space(_) => Question::Space,
            Asked::Role(_) => Question::Role,
            Asked::FeatureFlag => Question::FeatureFlag,
            Asked::Organization(_) => Question::Organization,
            Asked::VisibleSpaces => Question::VisibleSpaces,
            Asked::VisibleOrganizations => Question::VisibleOrganizations,
        }
    }
}

/// Whose answer it is: the user, and the Cloud Controller scopes of the token asked with (an
/// admin token and a plain one of the same user see different spaces, and a token without
/// `cloud_controller.read` is refused what the user's full token is shown).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Key {
    pub user_id: String,
    pub scopes: ScopeClass,
    pub asked: Asked,
}

/// The `cloud_controller.*` scopes a token holds, one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct ScopeClass(u8);

impl ScopeClass {
    const SCOPES: [&'static str; 5] = [
        "cloud_controller.read",
        "cloud_controller.write",
        "cloud_controller.admin",
        "cloud_controller.admin_read_only",
        "cloud_controller.global_auditor",
    ];

    pub(super) fn of(scopes: &[String]) -> ScopeClass {
        let bits = Self::SCOPES
            .iter()
            .enumerate()
            .filter(|(_, name)| scopes.iter().any(|s| s == *name))
            .fold(0u8, |bits, (i, _)| bits | (1 << i));
        ScopeClass(bits)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answer {
    Space(Option<SpaceFacts>),
    Yes(bool),
    Flag(FeatureFlag),
    Spaces(Arc<VisibleSpaces>),
    Organizations(Arc<VisibleOrganizations>),
}

#[derive(Clone)]
struct Cached {
    answer: Answer,
    ttl: Duration,
}

/// Each entry lives as long as it was given.
struct PerEntry;

impl Expiry<Key, Cached> for PerEntry {
    fn expire_after_create(&self, _: &Key, value: &Cached, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Spaces a list counts as one entry's weight.
const SPACES_PER_UNIT: usize = 100;

fn weight(_: &Key, value: &Cached) -> u32 {
    match &value.answer {
        Answer::Spaces(spaces) => match spaces.as_ref() {
            VisibleSpaces::All => 1,
            VisibleSpaces::Only(list) => list_weight(list.len()),
        },
        Answer::Organizations(orgs) => match orgs.as_ref() {
            VisibleOrganizations::All => 1,
            VisibleOrganizations::Only(list) => list_weight(list.len()),
        },
        _ => 1,
    }
}

fn list_weight(len: usize) -> u32 {
    u32::try_from(1 + len / SPACES_PER_UNIT).unwrap_or(u32::MAX)
}

struct Generation {
    /// The configuration generation this cache was made for.
    generation: u64,
    cache: Cache<Key, Cached>,
}

pub(super) struct AnswerCache {
    current: ArcSwap<Generation>,
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// This call asked the Cloud Controller.
    Asked,
    /// The cache had it, or another call was already asking.
    Cache,
}

impl AnswerCache {
    pub(super) fn new() -> AnswerCache {
        AnswerCache {
            current: ArcSwap::from_pointee(Generation::new(0, 1)),
        }
    }

    /// The answer to `key`: cached, or from `ask` (then kept `ttl`; zero: not kept, and not
    /// shared with concurrent callers either). `generation` and `capacity` are the request's
    /// configuration's.
    pub(super) async fn get_or_ask<F>(
        &self,
        generation: u64,
        capacity: u64,
        key: Key,
        ttl: Duration,
        ask: F,
    ) -> (Result<Answer, Undecided>, Source)
    where
        F: Future<Output = Result<Answer, Undecided>>,
    {
        if ttl.is_zero() {
            return (ask.await, Source::Asked);
        }
        let cache = self.for_generation(generation, capacity);
        let init = async { ask.await.map(|answer| Cached { answer, ttl }) };
        match cache.entry(key).or_try_insert_with(init).await {
            Ok(entry) => {
                let source = if entry.is_fresh() {
                    Source::Asked
                } else {
                    Source::Cache
                };
                (Ok(entry.into_value().answer), source)
            }
            // Every caller that joined the failed call gets its error; nothing is kept.
            Err(e) => (Err(e.as_ref().clone()), Source::Asked),
        }
    }

    /// The cache of configuration `generation`, made (empty) when it is newer than the one in
    /// use; a request still holding an older configuration uses the newer cache.
    fn for_generation(&self, generation: u64, capacity: u64) -> Cache<Key, Cached> {
        let current = self.current.load();
        if generation <= current.generation {
            return current.cache.clone();
        }
        let fresh = Arc::new(Generation::new(generation, capacity));
        let previous = self.current.compare_and_swap(&current, fresh.clone());
        if Arc::ptr_eq(&previous, &current) {
            fresh.cache.clone()
        } else {
            // Another request swapped first: use whatever is there now.
            self.current.load().cache.clone()
        }
    }
}

impl Generation {
    fn new(generation: u64, capacity: u64) -> Generation {
        Generation {
            generation,
            cache: Cache::builder()
                .max_capacity(capacity)
                .weigher(weight)
                .expire_after(PerEntry)
                .build(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn key(user: &str) -> Key {
        Key {
            user_id: user.into(),
            scopes: ScopeClass::of(&[]),
            asked: Asked::Role("s".into()),
        }
    }

    async fn ask(
        cache: &AnswerCache,
        generation: u64,
        user: &str,
        ttl: Duration,
        calls: &AtomicUsize,
        result: Result<bool, &str>,
    ) -> (Result<Answer, Undecided>, Source) {
        cache
            .get_or_ask(generation, 100, key(user), ttl, async {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                result.map(Answer::Yes).map_err(|reason| Undecided {
                    question: Question::Role,
                    reason: reason.into(),
                })
            })
            .await
    }

    #[test]
    fn tokens_of_one_user_with_other_scopes_are_other_keys() {
        let read = ScopeClass::of(&["cloud_controller.read".into(), "openid".into()]);
        let read_write = ScopeClass::of(&[
            "cloud_controller.write".into(),
            "cloud_controller.read".into(),
        ]);
        assert_ne!(read, read_write);
        assert_eq!(read, ScopeClass::of(&["cloud_controller.read".into()]));
    }

    #[tokio::test]
    async fn answers_are_kept_per_user_and_failures_are_not() {
        let cache = AnswerCache::new();
        let calls = AtomicUsize::new(0);
        let ttl = Duration::from_secs(60);
        let first = ask(&cache, 1, "u", ttl, &calls, Ok(false)).await;
        assert_eq!(first, (Ok(Answer::Yes(false)), Source::Asked));
        let again = ask(&cache, 1, "u", ttl, &calls, Ok(true)).await;
        assert_eq!(again, (Ok(Answer::Yes(false)), Source::Cache));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Another user asks for themselves.
        let _ = ask(&cache, 1, "v", ttl, &calls, Ok(true)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // A failure is not kept: the next caller asks again.
        let failed = ask(&cache, 1, "w", ttl, &calls, Err("down")).await;
        assert!(failed.0.is_err());
        let retried = ask(&cache, 1, "w", ttl, &calls, Ok(true)).await;
        assert_eq!(retried, (Ok(Answer::Yes(true)), Source::Asked));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_make_one_call() {
        let cache = Arc::new(AnswerCache::new());
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let (cache, calls) = (cache.clone(), calls.clone());
            tasks.spawn(async move {
                ask(&cache, 1, "u", Duration::from_secs(60), &calls, Ok(true)).await
            });
        }
        let results = tasks.join_all().await;
        assert!(results.iter().all(|(r, _)| *r == Ok(Answer::Yes(true))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let asked = results.iter().filter(|(_, s)| *s == Source::Asked).count();
        assert_eq!(asked, 1);
    }

    #[tokio::test]
    async fn entries_expire_and_a_new_generation_starts_empty() {
        let cache = AnswerCache::new();
        let calls = AtomicUsize::new(0);
        let _ = ask(&cache, 1, "u", Duration::from_millis(100), &calls, Ok(true)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (_, source) = ask(&cache, 1, "u", Duration::from_secs(60), &calls, Ok(true)).await;
        assert_eq!(source, Source::Asked);
        // A newer configuration: emptied.
        let (_, source) = ask(&cache, 2, "u", Duration::from_secs(60), &calls, Ok(true)).await;
        assert_eq!(source, Source::Asked);
        // An older one still in flight uses the newer cache.
        let (_, source) = ask(&cache, 1, "u", Duration::from_secs(60), &calls, Ok(true)).await;
        assert_eq!(source, Source::Cache);
        // Zero: never kept.
        let (_, source) = ask(&cache, 2, "z", Duration::ZERO, &calls, Ok(true)).await;
        assert_eq!(source, Source::Asked);
        let (_, source) = ask(&cache, 2, "z", Duration::ZERO, &calls, Ok(true)).await;
        assert_eq!(source, Source::Asked);
    }
}
