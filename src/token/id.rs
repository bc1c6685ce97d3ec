//! Resource identifiers in Astro's cuid shape: `c` followed by 24 characters
//! of `[0-9a-z]`. The first 9 encode the creation time in milliseconds (so ids
//! sort roughly by age), the remaining 15 come from the OS CSPRNG.

use std::time::{SystemTime, UNIX_EPOCH};

const BASE36: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
pub const ID_LEN: usize = 25;

/// A new random identifier.
pub fn new_id() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut id = String::with_capacity(ID_LEN);
    id.push('c');
    let mut time = [0u8; 9];
    let mut n = millis;
    for slot in time.iter_mut().rev() {
        *slot = BASE36[(n % 36) as usize];
        n /= 36;
    }
    id.extend(time.iter().map(|&b| b as char));
    let mut random = [0u8; 15];
    getrandom::fill(&mut random).expect("the operating system's random source failed");
    // 252 = 36 * 7: a byte below it maps onto base36 without bias; the rare
    // byte above it is redrawn.
    for byte in random.iter_mut() {
        while *byte >= 252 {
            let mut one = [0u8; 1];
            getrandom::fill(&mut one).expect("the operating system's random source failed");
            *byte = one[0];
        }
        id.push(BASE36[(*byte % 36) as usize] as char);
    }
    id
}

/// A new identifier that also sorts in creation order among those this
/// process makes: the time in milliseconds, then a per-process counter,
/// then randomness. For the audit trail, whose order is its point.
pub fn new_ordered_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let random = new_id();
    let mut n = COUNTER.fetch_add(1, Ordering::Relaxed) % 36u64.pow(6);
    let mut counter = [b'0'; 6];
    for slot in counter.iter_mut().rev() {
        *slot = BASE36[(n % 36) as usize];
        n /= 36;
    }
    // `c`, the 9 time characters, the counter, 9 random characters.
    let mut id = String::with_capacity(ID_LEN);
    id.push_str(&random[..10]);
    id.extend(counter.iter().map(|&b| b as char));
    id.push_str(&random[16..]);
    id
}

/// Whether `s` has the shape of an id this service issues. Ids in paths are
/// checked with this first, so junk never reaches the database.
pub fn is_id(s: &str) -> bool {
    s.len() == ID_LEN
        && s.starts_with('c')
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_cuid_shaped_and_unique() {
        let a = new_id();
        let b = new_id();
        assert!(is_id(&a), "{a}");
        assert_ne!(a, b);
        assert!(!is_id("C0000000000000000000000000"));
        assert!(!is_id("c00000000000000000000000"));
        assert!(!is_id("c0000000000000000000000A0"));
    }

    #[test]
    fn ordered_ids_sort_in_creation_order() {
        let ids: Vec<String> = (0..1000).map(|_| new_ordered_id()).collect();
        assert!(ids.iter().all(|id| is_id(id)));
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }
}
