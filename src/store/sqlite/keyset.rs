//! The accepted ids of the dedup window in memory: the [`seen_key`](super::seen_key)s, exact, in 65,536
//! sorted buckets chosen by a key's top bits, each key in 6 bytes (the bucket holds the rest). Keys are
//! SHA-256 bits, so the buckets fill evenly; each grows by an eighth when full, so five million keys take
//! about 34 MB and no growth ever copies more than one small bucket (a single hash table would double,
//! briefly holding both tables). [`KeyRows`] keeps row ids by such keys in the same buckets, 6 bytes an
//! entry; all of one chat's rows share a bucket, so a chat with a backlog of many thousands pays a copy of
//! them at each delete (the oldest go first): 100,000 pending in one chat, about 600 KB a delete.

/// Bits of a key that choose its bucket (keys have 63 bits).
const BUCKET_BITS: u32 = 16;

/// What a bucket holds of a key: its 47 bits below the bucket's and its sign bit, in 6 big-endian bytes (the
/// bucket holds the other 16), so a key takes 6 bytes, not 8.
type Rest = [u8; 6];

fn rest(key: i64) -> Rest {
    let bits = key as u64;
    let rest = bits & ((1 << (63 - BUCKET_BITS)) - 1) | (bits >> 63) << (63 - BUCKET_BITS);
    let b = rest.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// Keys whose buckets [`KeySet::remove_all`] reads before it removes them.
const AHEAD: usize = 16;
/// Bytes of a cache line on the machines autoseen runs on (x86-64, and most ARM cores).
const CACHE_LINE: usize = 64;

/// A set of dedup keys.
pub struct KeySet {
    buckets: Vec<Vec<Rest>>,
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
        self.buckets[Self::bucket(key)]
            .binary_search(&rest(key))
            .is_ok()
    }

    /// Adds `key`; false when it was there already.
    pub fn insert(&mut self, key: i64) -> bool {
        let bucket = &mut self.buckets[Self::bucket(key)];
        match bucket.binary_search(&rest(key)) {
            Ok(_) => false,
            Err(at) => {
                grow(bucket);
                bucket.insert(at, rest(key));
                self.len += 1;
                true
            }
        }
    }

    /// Removes `key`; false when it was not there.
    pub fn remove(&mut self, key: i64) -> bool {
        let bucket = &mut self.buckets[Self::bucket(key)];
        match bucket.binary_search(&rest(key)) {
            Ok(at) => {
                bucket.remove(at);
                self.len -= 1;
                true
            }
            Err(_) => false,
        }
    }

    /// Removes those of `keys` that are there, passing each to `removed`, reading the buckets of [`AHEAD`]
    /// keys at a time first ([`read_ahead`]). On a set of six million keys that took a million removals from
    /// 480-600 to about 210 ns each (docs/performance.md).
    pub fn remove_all(&mut self, keys: &[i64], mut removed: impl FnMut(i64)) {
        for few in keys.chunks(AHEAD) {
            self.read_ahead(few.iter().copied());
            for &key in few {
                if self.remove(key) {
                    removed(key);
                }
            }
        }
    }

    /// Brings the buckets of `keys` into the cache, all at once, so that the searches that follow find them
    /// there (see [`read_ahead`]).
    pub fn read_ahead(&self, keys: impl IntoIterator<Item = i64>) {
        read_ahead(&self.buckets, keys);
    }

    /// The set of `keys` (loading the store), given about how many there are: each bucket is made about
    /// the size it will have, filled, then sorted once, so loading never holds more than the set.
    pub fn load(expected: usize, keys: impl IntoIterator<Item = i64>) -> Self {
        let mut set = Self {
            buckets: buckets_for(expected),
            len: 0,
        };
        for key in keys {
            let bucket = &mut set.buckets[Self::bucket(key)];
            grow(bucket);
            bucket.push(rest(key));
        }
        for bucket in &mut set.buckets {
            bucket.sort_unstable();
            bucket.dedup();
            set.len += bucket.len();
        }
        set
    }
}

/// Reads a byte of every cache line of the buckets of `keys` (a [`KeySet`]'s or a [`KeyRows`]'s). Keys are
/// random, so each bucket is a cache miss, and a search in it more, each waiting on the one before; read
/// first, one after the other, the misses of all the keys overlap.
fn read_ahead(buckets: &[Vec<[u8; 6]>], keys: impl IntoIterator<Item = i64>) {
    let mut sum = 0;
    for key in keys {
        let Some(bucket) = buckets.get(KeySet::bucket(key)) else {
            continue;
        };
        for entry in bucket.iter().step_by(CACHE_LINE / size_of::<[u8; 6]>()) {
            sum ^= entry[0];
        }
    }
    std::hint::black_box(sum);
}

/// Empty buckets, each made the size it will have once `expected` entries are spread over them, and an
/// eighth more.
fn buckets_for<T>(expected: usize) -> Vec<Vec<T>> {
    let each = expected >> BUCKET_BITS;
    let each = each + each / 8 + 4;
    (0..1 << BUCKET_BITS)
        .map(|_| Vec::with_capacity(each))
        .collect()
}

/// Room for one more key in a full bucket: an eighth more, so a bucket never holds twice what it needs.
fn grow<T>(bucket: &mut Vec<T>) {
    if bucket.len() == bucket.capacity() {
        bucket.reserve_exact(bucket.len() / 8 + 4);
    }
}

/// Bits of a row id that an entry of [`KeyRows`] holds; the key's bits below its bucket fill the rest.
const ROW_BITS: u32 = 40;
/// Bits of a key that an entry holds beside its bucket's.
const PRINT_BITS: u32 = 48 - ROW_BITS;

/// An entry of [`KeyRows`]: [`PRINT_BITS`] of a key over a row id, 48 bits in 6 big-endian bytes, so that
/// entries sort as their numbers do.
type Entry = [u8; 6];

fn pack(value: u64) -> Entry {
    let b = value.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

fn unpack(e: &Entry) -> u64 {
    u64::from_be_bytes([0, 0, e[0], e[1], e[2], e[3], e[4], e[5]])
}

/// Row ids by key, many to many: the pending receipts' rows by chat, by bare message id ([`super::rows`]).
/// Same buckets as [`KeySet`]; an entry is 6 bytes, the next 8 bits of the key over a 40-bit row id, sorted,
/// so the rows of a key are a range. Two keys that share those 24 bits share the range (a million rows put
/// one extra in 6% of lookups): what a lookup gives is a superset, which the queries check against the row
/// itself. A row id past 40 bits (a trillion receipts) is kept whole in `wide`, looked through entry by
/// entry.
#[derive(Default)]
pub struct KeyRows {
    buckets: Vec<Vec<Entry>>,
    wide: Vec<(i64, i64)>,
    len: usize,
}

impl KeyRows {
    /// The bucket of `key` and its entry for `row`, unless `row` is past [`ROW_BITS`].
    fn entry(key: i64, row: i64) -> (usize, Option<u64>) {
        let print = (key as u64 >> (63 - BUCKET_BITS - PRINT_BITS)) & ((1 << PRINT_BITS) - 1);
        let fits = (0..1 << ROW_BITS).contains(&row);
        (
            KeySet::bucket(key),
            fits.then_some(print << ROW_BITS | row as u64),
        )
    }

    fn bucket_mut(&mut self, at: usize) -> &mut Vec<Entry> {
        if self.buckets.is_empty() {
            self.buckets = (0..1 << BUCKET_BITS).map(|_| Vec::new()).collect();
        }
        &mut self.buckets[at]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Adds `row` under `key` (once more if it was there).
    pub fn insert(&mut self, key: i64, row: i64) {
        self.len += 1;
        match Self::entry(key, row) {
            (at, Some(entry)) => {
                let bucket = self.bucket_mut(at);
                let i = bucket.partition_point(|e| unpack(e) < entry);
                grow(bucket);
                bucket.insert(i, pack(entry));
            }
            (_, None) => self.wide.push((key, row)),
        }
    }

    /// Brings the buckets of `keys` into the cache, all at once (see [`read_ahead`]).
    pub fn read_ahead(&self, keys: impl IntoIterator<Item = i64>) {
        read_ahead(&self.buckets, keys);
    }

    /// Removes `row` from under `key` once; false when it was not there.
    pub fn remove(&mut self, key: i64, row: i64) -> bool {
        let found = match Self::entry(key, row) {
            (at, Some(entry)) => {
                let bucket = self.bucket_mut(at);
                let found = bucket.binary_search(&pack(entry)).map(|i| bucket.remove(i));
                found.is_ok()
            }
            (_, None) => {
                let found = self.wide.iter().position(|&e| e == (key, row));
                found.map(|i| self.wide.swap_remove(i)).is_some()
            }
        };
        self.len -= usize::from(found);
        found
    }

    /// The rows under `key`, in id order, and perhaps some of another key (see [`KeyRows`]).
    pub fn rows(&self, key: i64) -> Vec<i64> {
        let (at, Some(first)) = Self::entry(key, 0) else {
            unreachable!("row 0 fits")
        };
        let mut rows: Vec<i64> = match self.buckets.get(at) {
            Some(bucket) => {
                let from = bucket.partition_point(|e| unpack(e) < first);
                let to = bucket.partition_point(|e| unpack(e) < first + (1 << ROW_BITS));
                let row = |e: &Entry| (unpack(e) & ((1 << ROW_BITS) - 1)) as i64;
                bucket[from..to].iter().map(row).collect()
            }
            None => Vec::new(),
        };
        rows.extend(self.wide.iter().filter(|e| e.0 == key).map(|e| e.1));
        rows
    }

    /// Empty, with each bucket made about the size it will have once `expected` rows are [`KeyRows::push`]ed.
    pub fn with_room(expected: usize) -> Self {
        Self {
            buckets: buckets_for(expected),
            ..Self::default()
        }
    }

    /// Adds `row` under `key` out of order (loading the store): [`KeyRows::sort`] before any lookup.
    pub fn push(&mut self, key: i64, row: i64) {
        self.len += 1;
        match Self::entry(key, row) {
            (at, Some(entry)) => {
                let bucket = self.bucket_mut(at);
                grow(bucket);
                bucket.push(pack(entry));
            }
            (_, None) => self.wide.push((key, row)),
        }
    }

    /// Puts what [`KeyRows::push`] added in order.
    pub fn sort(&mut self) {
        self.buckets.iter_mut().for_each(|b| b.sort_unstable());
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
            -1,
            i64::MIN,
            i64::MAX ^ (1 << 46),
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
    fn removing_many_keys_removes_exactly_those_there_and_names_each_once() {
        let keys: Vec<i64> = (0..1_000_i64)
            .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as i64) as u64 >> 1) as i64)
            .collect();
        let mut set = KeySet::load(keys.len(), keys.iter().copied());
        // Every third key, one that was never there, and one named twice (more than one read-ahead's worth).
        let mut gone: Vec<i64> = keys.iter().copied().step_by(3).collect();
        gone.extend([keys[0] ^ 1, keys[3]]);
        let mut removed = Vec::new();
        set.remove_all(&gone, |key| removed.push(key));

        let expected: Vec<i64> = keys.iter().copied().step_by(3).collect();
        assert_eq!(
            removed, expected,
            "each key there, once, in the order given"
        );
        assert_eq!(set.len(), keys.len() - expected.len());
        assert!(expected.iter().all(|&k| !set.contains(k)));
        assert!(keys.iter().skip(1).step_by(3).all(|&k| set.contains(k)));
    }

    #[test]
    fn rows_are_found_under_their_key_from_insert_to_removal_and_a_wide_row_id_too() {
        let chat = 0x1234_5678_9ABC_DEF0;
        let other = chat ^ 1; // the same 24 top bits: found with it, as the queries expect
        let far = chat ^ (1 << 40);
        let mut map = KeyRows::default();
        for (key, row) in [(chat, 7), (chat, 3), (other, 5), (far, 4), (chat, 1 << 41)] {
            map.insert(key, row);
        }
        map.insert(chat, 3);
        assert_eq!(map.len(), 6);
        assert_eq!(map.rows(chat), vec![3, 3, 5, 7, 1 << 41]);
        assert_eq!(map.rows(far), vec![4]);
        assert!(map.remove(chat, 3));
        assert!(map.remove(chat, 1 << 41));
        assert!(!map.remove(chat, 1 << 41), "twice");
        assert!(!map.remove(far, 7), "under another key");
        assert_eq!(map.rows(chat), vec![3, 5, 7]);
        assert_eq!(map.len(), 4);
        map.read_ahead([chat, far, chat ^ (1 << 62)]);
        assert_eq!(
            map.rows(chat),
            vec![3, 5, 7],
            "reading ahead changes nothing"
        );
        let empty = KeyRows::default();
        empty.read_ahead([chat]);
        assert!(empty.rows(chat).is_empty());
    }

    #[test]
    fn rows_loaded_at_once_are_found_as_rows_inserted_one_by_one() {
        let pairs: Vec<(i64, i64)> = (0..5_000_i64)
            .map(|i| {
                (
                    ((i % 700).wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as i64) as u64 >> 1) as i64,
                    i,
                )
            })
            .collect();
        let mut loaded = KeyRows::with_room(100);
        pairs.iter().for_each(|&(k, r)| loaded.push(k, r));
        loaded.sort();
        let mut inserted = KeyRows::default();
        pairs.iter().for_each(|&(k, r)| inserted.insert(k, r));
        assert_eq!(loaded.len(), pairs.len());
        assert_eq!(loaded.buckets, inserted.buckets);
        for &(key, row) in &pairs {
            assert!(loaded.rows(key).contains(&row));
        }
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
