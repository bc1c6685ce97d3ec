//! Bearer secrets: 256 bits from the OS CSPRNG, base62-encoded behind a
//! recognisable prefix, with a CRC32 checksum so that a truncated or mistyped
//! secret is refused before any database read.
//!
//! Layout: `<prefix><43 base62 chars of entropy><6 base62 chars of CRC32>`.
//! The checksum covers the prefix and the entropy, so a secret pasted under
//! the wrong prefix is refused too. Only the SHA-256 [`Digest`] of the whole
//! string is ever stored.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// 62^43 > 2^256, so 43 characters hold 32 bytes exactly.
const BODY_LEN: usize = 43;
/// 62^6 > 2^32, so 6 characters hold a CRC32.
const CHECKSUM_LEN: usize = 6;
/// How many characters of the body a `shortToken` shows.
const SHORT_LEN: usize = 4;

/// The kinds of bearer secret agentkey issues, each with its own prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// An Airflow agent token, presented to a deployment's gateway.
    Agent,
    /// The root credential, with every permission.
    Root,
    /// An organization API token: a management credential with roles.
    Api,
}

impl SecretKind {
    pub const ALL: [SecretKind; 3] = [SecretKind::Agent, SecretKind::Root, SecretKind::Api];

    pub fn prefix(self) -> &'static str {
        match self {
            SecretKind::Agent => "akagt_",
            SecretKind::Root => "akroot_",
            SecretKind::Api => "akapi_",
        }
    }
}

/// A freshly generated secret. Its plaintext leaves the process exactly once
/// (in the response that created it); `Debug` never shows it.
pub struct Secret {
    kind: SecretKind,
    plaintext: SecretString,
}

impl Secret {
    /// Draws 256 bits from the operating system's CSPRNG.
    pub fn generate(kind: SecretKind) -> Secret {
        let mut entropy = [0u8; 32];
        getrandom::fill(&mut entropy).expect("the operating system's random source failed");
        let mut text = String::with_capacity(kind.prefix().len() + BODY_LEN + CHECKSUM_LEN);
        text.push_str(kind.prefix());
        text.push_str(&base62(&entropy, BODY_LEN));
        let checksum = crc32fast::hash(text.as_bytes());
        text.push_str(&base62(&checksum.to_be_bytes(), CHECKSUM_LEN));
        Secret {
            kind,
            plaintext: SecretString::from(text),
        }
    }

    pub fn digest(&self) -> Digest {
        Digest::of(self.plaintext.expose_secret())
    }

    /// A non-secret fragment (prefix and the first characters) that lets a
    /// person recognise the secret in a list.
    pub fn short_token(&self) -> String {
        let text = self.plaintext.expose_secret();
        text[..self.kind.prefix().len() + SHORT_LEN].to_string()
    }

    /// The plaintext, for the single response that reveals it.
    pub fn expose(&self) -> &str {
        self.plaintext.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({:?}, [REDACTED])", self.kind)
    }
}

/// Checks the shape of a presented secret: known prefix, exact length,
/// base62 body and a matching checksum. Costs no allocation and no I/O.
pub fn parse_kind(presented: &str) -> Option<SecretKind> {
    shape_kind(presented).filter(|_| checksum_matches(presented))
}

/// The kind whose form a presented secret has (known prefix, exact length,
/// base62 characters), its checksum not yet checked: for the verification
/// path, which checks the checksum only before a store read (a digest found
/// in the cache is an issued secret's, whose checksum matched).
pub fn shape_kind(presented: &str) -> Option<SecretKind> {
    let kind = SecretKind::ALL
        .into_iter()
        .find(|k| presented.starts_with(k.prefix()))?;
    let rest = &presented[kind.prefix().len()..];
    (rest.len() == BODY_LEN + CHECKSUM_LEN && rest.bytes().all(|b| IS_BASE62[usize::from(b)]))
        .then_some(kind)
}

/// Whether a byte is one of [`ALPHABET`]'s: one load per byte, on the path
/// of every verification.
static IS_BASE62: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = true;
        i += 1;
    }
    table
};

/// Whether the last characters of a secret of the right shape are the
/// checksum of the rest.
pub fn checksum_matches(presented: &str) -> bool {
    let Some(split) = presented.len().checked_sub(CHECKSUM_LEN) else {
        return false;
    };
    let (Some(signed), Some(checksum)) = (presented.get(..split), presented.get(split..)) else {
        return false;
    };
    // Decoding the six digits, rather than encoding the expected ones,
    // keeps this free of allocations: a fixed-width base62 numeral has one
    // value and each value one numeral, so the comparison is the same.
    let crc = u64::from(crc32fast::hash(signed.as_bytes()));
    base62_value(checksum) == Some(crc)
}

/// The value of a base62 numeral in [`ALPHABET`]'s digits, if it fits.
fn base62_value(numeral: &str) -> Option<u64> {
    numeral.bytes().try_fold(0u64, |value, byte| {
        let digit = match byte {
            b'0'..=b'9' => byte - b'0',
            b'A'..=b'Z' => byte - b'A' + 10,
            b'a'..=b'z' => byte - b'a' + 36,
            _ => return None,
        };
        value.checked_mul(62)?.checked_add(u64::from(digit))
    })
}

/// The SHA-256 of a secret: the only form in which a secret is stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest([u8; 32]);

impl Digest {
    pub fn of(secret: &str) -> Digest {
        Digest(Sha256::digest(secret.as_bytes()).into())
    }

    pub fn from_hex(hex: &str) -> Option<Digest> {
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Digest(out))
    }

    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Constant-time equality, for comparing against a configured secret.
    pub fn ct_eq(&self, other: &Digest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A digest is not secret, but there is no reason to spread it around.
        write!(f, "Digest({}…)", &self.to_hex()[..8])
    }
}

/// Encodes `bytes` as a big-endian number in base62, left-padded to `width`.
fn base62(bytes: &[u8], width: usize) -> String {
    let mut number = bytes.to_vec();
    let mut digits = Vec::with_capacity(width);
    while digits.len() < width {
        // Long division of `number` by 62; the remainder is the next digit.
        let mut remainder = 0u32;
        for byte in number.iter_mut() {
            let acc = (remainder << 8) | u32::from(*byte);
            *byte = (acc / 62) as u8;
            remainder = acc % 62;
        }
        digits.push(ALPHABET[remainder as usize]);
    }
    debug_assert!(number.iter().all(|&b| b == 0), "width too small for input");
    digits.reverse();
    String::from_utf8(digits).expect("alphabet is ASCII")
}

/// Lower-case hexadecimal of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        text.push(DIGITS[usize::from(b >> 4)] as char);
        text.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_parse_and_differ() {
        let a = Secret::generate(SecretKind::Agent);
        let b = Secret::generate(SecretKind::Agent);
        assert_ne!(a.expose(), b.expose());
        assert_eq!(parse_kind(a.expose()), Some(SecretKind::Agent));
        assert_eq!(a.expose().len(), "akagt_".len() + BODY_LEN + CHECKSUM_LEN);
        let root = Secret::generate(SecretKind::Root);
        assert_eq!(parse_kind(root.expose()), Some(SecretKind::Root));
        let api = Secret::generate(SecretKind::Api);
        assert_eq!(parse_kind(api.expose()), Some(SecretKind::Api));
        let swapped = api.expose().replacen("akapi_", "akagt_", 1);
        assert_eq!(parse_kind(&swapped), None, "the checksum covers the prefix");
    }

    #[test]
    fn malformed_secrets_are_refused() {
        let good = Secret::generate(SecretKind::Agent);
        let text = good.expose();
        assert_eq!(parse_kind(&text[..text.len() - 1]), None, "truncated");
        assert_eq!(parse_kind(&format!("{text}x")), None, "too long");
        // Change one body character: the checksum no longer matches.
        let mut typo = text.as_bytes().to_vec();
        let i = "akagt_".len() + 5;
        typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
        assert_eq!(
            parse_kind(std::str::from_utf8(&typo).unwrap()),
            None,
            "typo"
        );
        // Same body under another prefix: the checksum covers the prefix.
        let swapped = text.replacen("akagt_", "akroot_", 1);
        assert_eq!(parse_kind(&swapped), None, "prefix swap");
        assert_eq!(parse_kind(""), None);
        assert_eq!(parse_kind("akagt_"), None);
        assert_eq!(parse_kind("ghp_abc"), None);
    }

    #[test]
    fn base62_is_a_fixed_width_big_endian_number() {
        assert_eq!(base62(&[0], 3), "000");
        assert_eq!(base62(&[61], 2), "0z");
        assert_eq!(base62(&[62], 2), "10");
        assert_eq!(base62(&[0xff; 32], BODY_LEN).len(), BODY_LEN);
        assert_eq!(base62(&u32::MAX.to_be_bytes(), CHECKSUM_LEN), "4gfFC3");
    }

    #[test]
    fn shape_and_checksum_are_checked_apart() {
        let good = Secret::generate(SecretKind::Agent);
        let good = good.expose();
        assert_eq!(shape_kind(good), Some(SecretKind::Agent));
        assert!(checksum_matches(good));
        // Right shape, wrong checksum: the shape passes, the checksum not.
        let last = if good.ends_with('A') { "B" } else { "A" };
        let bad = format!("{}{last}", &good[..good.len() - 1]);
        assert_eq!(shape_kind(&bad), Some(SecretKind::Agent));
        assert!(!checksum_matches(&bad));
        assert_eq!(parse_kind(&bad), None);
        assert!(!checksum_matches("abc"), "shorter than a checksum");
        assert!(!checksum_matches("é12345"), "not at a character boundary");
        assert_eq!(shape_kind("akagt_short"), None);
        for byte in 0..=255u8 {
            assert_eq!(
                IS_BASE62[usize::from(byte)],
                byte.is_ascii_alphanumeric(),
                "{byte}"
            );
        }
    }

    #[test]
    fn base62_value_reads_what_base62_writes() {
        for n in [0u32, 1, 61, 62, 3_843, 0x1234_5678, u32::MAX] {
            let numeral = base62(&n.to_be_bytes(), CHECKSUM_LEN);
            assert_eq!(base62_value(&numeral), Some(u64::from(n)), "{numeral}");
        }
        assert_eq!(base62_value("zzzzzz"), Some(62u64.pow(6) - 1));
        assert_eq!(base62_value("00-000"), None);
        assert_eq!(base62_value(&"z".repeat(20)), None, "too large for u64");
    }

    #[test]
    fn digest_round_trips_hex_and_compares() {
        let d = Digest::of("x");
        assert_eq!(Digest::from_hex(&d.to_hex()), Some(d));
        assert!(d.ct_eq(&Digest::of("x")));
        assert!(!d.ct_eq(&Digest::of("y")));
        assert_eq!(Digest::from_hex("zz"), None);
    }

    #[test]
    fn debug_never_shows_plaintext() {
        let s = Secret::generate(SecretKind::Agent);
        assert!(!format!("{s:?}").contains(s.expose()));
        assert!(!format!("{s:?}").contains(&s.expose()[6..20]));
    }

    #[test]
    fn short_token_is_a_prefix_fragment() {
        let s = Secret::generate(SecretKind::Agent);
        assert_eq!(s.short_token().len(), "akagt_".len() + SHORT_LEN);
        assert!(s.expose().starts_with(&s.short_token()));
    }
}
