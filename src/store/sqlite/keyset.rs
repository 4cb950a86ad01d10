//! The accepted ids of the dedup window in memory: the [`seen_key`](super::seen_key)s, exact, in 65,536
//! sorted buckets chosen by a key's top bits. Keys are SHA-256 bits, so the buckets fill evenly; each grows
//! by an eighth when full, so five million keys take about 45 MB and no growth ever copies more than one
//! small bucket (a single hash table would double, briefly holding both tables).

/// Bits of a key that choose its bucket (keys have 63 bits).
const BUCKET_BITS: u32 = 16;

/// A set of dedup keys.
pub struct KeySet {
    buckets: Vec<Vec<i64>>,
    len: usize,
}

impl Default for KeySet {
    fn default() -> Self {
        Self {
            buckets: (0..1 << BUCKET_BITS).map(|_| Vec::new()).collect(),
            len: 0,
        }
    }
}

impl KeySet {
    fn bucket(key: i64) -> usize {
        (key as u64 >> (63 - BUCKET_BITS)) as usize & ((1 << BUCKET_BITS) - 1)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub fn contains(&self, key: i64) -> bool {
        self.buckets[Self::bucket(key)].binary_search(&key).is_ok()
    }

    /// Adds `key`; false when it was there already.
    pub fn insert(&mut self, key: i64) -> bool {
        let bucket = &mut self.buckets[Self::bucket(key)];
        match bucket.binary_search(&key) {
            Ok(_) => false,
            Err(at) => {
                grow(bucket);
                bucket.insert(at, key);
                self.len += 1;
                true
            }
        }
    }

    /// Removes `key`; false when it was not there.
    pub fn remove(&mut self, key: i64) -> bool {
        let bucket = &mut self.buckets[Self::bucket(key)];
        match bucket.binary_search(&key) {
            Ok(at) => {
                bucket.remove(at);
                self.len -= 1;
                true
            }
            Err(_) => false,
        }
    }

    /// The set of `keys` (loading the store), given about how many there are: each bucket is made about
    /// the size it will have, filled, then sorted once, so loading never holds more than the set.
    pub fn load(expected: usize, keys: impl IntoIterator<Item = i64>) -> Self {
        let each = expected / (1 << BUCKET_BITS) + expected / (1 << (BUCKET_BITS + 3)) + 4;
        let mut set = Self {
            buckets: (0..1 << BUCKET_BITS)
                .map(|_| Vec::with_capacity(each))
                .collect(),
            len: 0,
        };
        for key in keys {
            let bucket = &mut set.buckets[Self::bucket(key)];
            grow(bucket);
            bucket.push(key);
        }
        for bucket in &mut set.buckets {
            bucket.sort_unstable();
            bucket.dedup();
            set.len += bucket.len();
        }
        set
    }
}

/// Room for one more key in a full bucket: an eighth more, so a bucket never holds twice what it needs.
fn grow(bucket: &mut Vec<i64>) {
    if bucket.len() == bucket.capacity() {
        bucket.reserve_exact(bucket.len() / 8 + 4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_in_the_set_from_its_insert_to_its_removal() {
        let mut set = KeySet::default();
        let keys = [
            0,
            1,
            i64::MAX,
            i64::MAX - 1,
            1 << 47,
            (1 << 47) - 1,
            12_345_678_901,
        ];
        for key in keys {
            assert!(!set.contains(key));
            assert!(set.insert(key));
            assert!(!set.insert(key), "twice");
        }
        assert_eq!(set.len(), keys.len());
        assert!(keys.iter().all(|&k| set.contains(k)));
        assert!(set.remove(1 << 47));
        assert!(!set.remove(1 << 47), "twice");
        assert!(!set.contains(1 << 47));
        assert!(set.contains((1 << 47) - 1), "its neighbour stays");
        assert_eq!(set.len(), keys.len() - 1);
    }

    #[test]
    fn keys_loaded_at_once_are_the_same_set_as_keys_inserted_one_by_one() {
        let keys: Vec<i64> = (0..20_000_i64)
            .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as i64) as u64 >> 1) as i64)
            .collect();
        let loaded = KeySet::load(
            1_000,
            keys.iter().copied().chain(keys[..10].iter().copied()),
        );
        let mut inserted = KeySet::default();
        keys.iter().for_each(|&k| {
            inserted.insert(k);
        });

        assert_eq!(loaded.len(), keys.len(), "a key loaded twice counts once");
        assert_eq!(loaded.buckets, inserted.buckets);
        assert!(keys.iter().all(|&k| loaded.contains(k)));
        assert!(!loaded.contains(keys[0] ^ 1) || keys.contains(&(keys[0] ^ 1)));
    }
}
