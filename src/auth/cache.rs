//! Tokens already verified, so a client that sends the same token again skips the signature
//! (tens of microseconds for RS256). Keyed by the token's SHA-256 (a forged token cannot
//! collide with a cached one), bounded (oldest entries go first), and each entry is valid only
//! before the token's `exp` and only for the key set it was verified with.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};

use super::Identity;

/// SHA-256 of a token.
pub(crate) type Digest = [u8; 32];

pub(crate) fn digest(token: &str) -> Digest {
    Sha256::digest(token.as_bytes()).into()
}

/// Shards keep two worker threads off one lock.
const MAX_SHARDS: usize = 16;

pub(crate) struct TokenCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    /// The newest key-set generation seen; entries of older ones are dropped.
    epoch: AtomicU64,
}

#[derive(Default)]
struct Shard {
    map: HashMap<Digest, Entry>,
    /// Insertion order, for eviction; holds exactly the keys of `map`.
    order: VecDeque<Digest>,
}

struct Entry {
    identity: Identity,
    /// The token's `exp`: the entry is valid while `now < expires_at`.
    expires_at: i64,
    epoch: u64,
}

impl TokenCache {
    /// A cache of at most `capacity` entries; `None` when `capacity` is 0 (caching off).
    pub(crate) fn new(capacity: usize) -> Option<TokenCache> {
        if capacity == 0 {
            return None;
        }
        let shards = capacity.min(MAX_SHARDS);
        Some(TokenCache {
            shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: capacity / shards,
            epoch: AtomicU64::new(0),
        })
    }

    /// The caller of a token verified under key-set generation `epoch`, if cached and valid.
    pub(crate) fn get(&self, key: &Digest, epoch: u64, now: i64) -> Option<Identity> {
        if !self.observe(epoch) {
            return None;
        }
        let shard = self.shard(key).lock().ok()?;
        let entry = shard.map.get(key)?;
        (entry.epoch == epoch && now < entry.expires_at).then(|| entry.identity.clone())
    }

    pub(crate) fn insert(
        &self,
        key: Digest,
        identity: Identity,
        expires_at: i64,
        epoch: u64,
        now: i64,
    ) {
        if now >= expires_at || !self.observe(epoch) {
            return;
        }
        let Ok(mut shard) = self.shard(&key).lock() else {
            return;
        };
        let entry = Entry {
            identity,
            expires_at,
            epoch,
        };
        if let Some(old) = shard.map.get_mut(&key) {
            *old = entry;
            return;
        }
        while shard.map.len() >= self.per_shard {
            let Some(oldest) = shard.order.pop_front() else {
                break;
            };
            shard.map.remove(&oldest);
        }
        shard.map.insert(key, entry);
        shard.order.push_back(key);
    }

    /// Moves to a newer generation (dropping every entry) and says whether `epoch` is current;
    /// a caller still holding an older key set neither reads nor writes.
    fn observe(&self, epoch: u64) -> bool {
        let mut current = self.epoch.load(Ordering::Acquire);
        while epoch > current {
            match self
                .epoch
                .compare_exchange(current, epoch, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    self.clear();
                    return true;
                }
                Err(now_current) => current = now_current,
            }
        }
        epoch == current
    }

    fn clear(&self) {
        for shard in self.shards.iter() {
            if let Ok(mut s) = shard.lock() {
                s.map.clear();
                s.order.clear();
            }
        }
    }

    fn shard(&self, key: &Digest) -> &Mutex<Shard> {
        &self.shards[usize::from(key[0]) % self.shards.len()]
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|s| s.map.len()).unwrap_or(0))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: usize) -> Identity {
        Identity::new(&format!("u{n}"), None, vec!["cloud_controller.read".into()])
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn zero_capacity_is_no_cache() {
        assert!(TokenCache::new(0).is_none());
    }

    #[test]
    fn hit_returns_the_identity() {
        let c = TokenCache::new(10).unwrap();
        let k = digest("token-a");
        assert_eq!(c.get(&k, 0, NOW), None);
        c.insert(k, id(1), NOW + 60, 0, NOW);
        assert_eq!(c.get(&k, 0, NOW), Some(id(1)));
        assert_eq!(c.get(&digest("token-b"), 0, NOW), None);
    }

    #[test]
    fn size_is_bounded_and_the_oldest_go_first() {
        for capacity in [1, 5, 16, 100, 1000] {
            let c = TokenCache::new(capacity).unwrap();
            for n in 0..capacity * 3 {
                c.insert(digest(&format!("t{n}")), id(n), NOW + 60, 0, NOW);
                assert!(c.len() <= capacity, "capacity {capacity}: {}", c.len());
            }
            // The newest entry is always kept.
            let last = capacity * 3 - 1;
            assert_eq!(c.get(&digest(&format!("t{last}")), 0, NOW), Some(id(last)));
        }
        let c = TokenCache::new(16).unwrap();
        for n in 0..2000 {
            c.insert(digest(&format!("t{n}")), id(n), NOW + 60, 0, NOW);
        }
        assert!(
            c.get(&digest("t0"), 0, NOW).is_none(),
            "the oldest was evicted"
        );
    }

    #[test]
    fn reinserting_a_key_does_not_grow_the_cache() {
        let c = TokenCache::new(4).unwrap();
        for _ in 0..10 {
            c.insert(digest("same"), id(1), NOW + 60, 0, NOW);
        }
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn entries_expire_at_the_token_exp() {
        let c = TokenCache::new(10).unwrap();
        let k = digest("t");
        c.insert(k, id(1), NOW + 2, 0, NOW);
        assert!(c.get(&k, 0, NOW + 1).is_some());
        assert!(c.get(&k, 0, NOW + 2).is_none(), "exp itself is expired");
        assert!(c.get(&k, 0, NOW + 3).is_none());
        // An already expired token is not stored at all.
        c.insert(digest("old"), id(2), NOW, 0, NOW);
        assert!(c.get(&digest("old"), 0, NOW - 1).is_none());
    }

    #[test]
    fn a_new_key_set_drops_every_entry() {
        // Room to spare: shards fill unevenly.
        let c = TokenCache::new(10_000).unwrap();
        for n in 0..50 {
            c.insert(digest(&format!("t{n}")), id(n), NOW + 60, 3, NOW);
        }
        assert_eq!(c.len(), 50);
        // Generation 4 appears: everything verified under 3 is gone.
        assert!(c.get(&digest("t1"), 4, NOW).is_none());
        assert_eq!(c.len(), 0);
        // A caller still on generation 3 can neither read nor store.
        c.insert(digest("late"), id(9), NOW + 60, 3, NOW);
        assert!(c.get(&digest("late"), 3, NOW).is_none());
        assert!(c.get(&digest("late"), 4, NOW).is_none());
        assert_eq!(c.len(), 0);
        c.insert(digest("fresh"), id(7), NOW + 60, 4, NOW);
        assert_eq!(c.get(&digest("fresh"), 4, NOW), Some(id(7)));
    }
}
