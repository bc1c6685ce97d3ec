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
}
