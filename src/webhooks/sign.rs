//! Signing secrets and signatures. An endpoint's secret is never stored:
//! it is derived when needed from the server's webhook key (the
//! `AGENTKEY_WEBHOOK_KEY` setting) and the endpoint's id and generation, so
//! the database holds nothing that can sign, and a rotation (generation + 1)
//! makes a new secret. Each request is signed Stripe's way:
//! `X-Agentkey-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`,
//! keyed with the secret's text.

use crate::token::secret::hex;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// What every endpoint secret starts with, so a leaked one is recognisable.
pub const SECRET_PREFIX: &str = "whsec_";
/// The shortest webhook key accepted.
pub const MIN_KEY_CHARS: usize = 32;
pub const SIGNATURE_HEADER: &str = "X-Agentkey-Signature";
pub const EVENT_ID_HEADER: &str = "X-Agentkey-Event-Id";
pub const DELIVERY_ID_HEADER: &str = "X-Agentkey-Delivery-Id";

/// The server's webhook key: the root of every endpoint's secret.
#[derive(Clone)]
pub struct WebhookKey(SecretString);

impl std::fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookKey([REDACTED])")
    }
}

impl WebhookKey {
    /// The key from its configured text: at least [`MIN_KEY_CHARS`]
    /// printable ASCII characters.
    pub fn parse(text: &str) -> Result<WebhookKey, String> {
        let chars = text.chars().count();
        if chars < MIN_KEY_CHARS {
            return Err(format!(
                "AGENTKEY_WEBHOOK_KEY must be at least {MIN_KEY_CHARS} characters long; it has {chars}"
            ));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "AGENTKEY_WEBHOOK_KEY may contain only printable ASCII characters without spaces"
                    .into(),
            );
        }
        Ok(WebhookKey(SecretString::from(text.to_string())))
    }

    /// The signing secret of generation `generation` of endpoint `id`.
    pub fn endpoint_secret(&self, id: &str, generation: i64) -> SecretString {
        let mut mac = HmacSha256::new_from_slice(self.0.expose_secret().as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(b"agentkey webhook secret v1\0");
        mac.update(id.as_bytes());
        mac.update(b"\0");
        mac.update(generation.to_string().as_bytes());
        let digest = mac.finalize().into_bytes();
        SecretString::from(format!("{SECRET_PREFIX}{}", hex(&digest)))
    }
}

/// The hex HMAC-SHA256 of `"{t}.{body}"` keyed with `secret`.
pub fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

/// The `X-Agentkey-Signature` value for `body` sent at `t`.
pub fn header(secret: &str, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", signature(secret, t, body))
}

/// What a receiver does: whether `header` signs `body` with `secret`, at a
/// `t` no more than `tolerance` seconds from `now` (replays are refused).
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64, tolerance: i64) -> bool {
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.push(value),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if now.abs_diff(t) > tolerance.unsigned_abs() {
        return false;
    }
    let expected = signature(secret, t, body);
    signatures
        .iter()
        .any(|s| bool::from(s.as_bytes().ct_eq(expected.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector of docs/events.md.
    #[test]
    fn the_documented_test_vector() {
        let secret = "whsec_test_2f5c0c0b6a3f4d0e9b8a7c6d5e4f3a2b";
        let body = br#"{"id":"cevt","type":"agent_token.created"}"#;
        assert_eq!(
            header(secret, 1_700_000_000, body),
            "t=1700000000,v1=80a66b1d96ae385824549534fc09416167bb8d403f45b0c081c807dede5700be"
        );
    }

    #[test]
    fn verify_accepts_its_own_and_refuses_tampering_and_replays() {
        let secret = "whsec_abc";
        let body = b"{\"a\":1}";
        let h = header(secret, 1_000, body);
        assert!(verify(secret, &h, body, 1_100, 300));
        assert!(!verify(secret, &h, b"{\"a\":2}", 1_100, 300));
        assert!(!verify("whsec_abd", &h, body, 1_100, 300));
        assert!(!verify(secret, &h, body, 2_000, 300), "too old");
        assert!(!verify(secret, "v1=00", body, 1_000, 300), "no t");
        // Extreme times are refused, never an overflow.
        let h = format!("t={},v1=00", i64::MIN);
        assert!(!verify(secret, &h, body, i64::MAX, 300));
    }

    #[test]
    fn secrets_derive_per_endpoint_and_generation() {
        let key = WebhookKey::parse(&"k".repeat(32)).unwrap();
        let a1 = key.endpoint_secret("a", 1);
        let a2 = key.endpoint_secret("a", 2);
        let b1 = key.endpoint_secret("b", 1);
        assert_eq!(
            a1.expose_secret(),
            key.endpoint_secret("a", 1).expose_secret()
        );
        assert_ne!(a1.expose_secret(), a2.expose_secret());
        assert_ne!(a1.expose_secret(), b1.expose_secret());
        assert!(a1.expose_secret().starts_with(SECRET_PREFIX));
        assert_eq!(a1.expose_secret().len(), SECRET_PREFIX.len() + 64);
        assert!(WebhookKey::parse("short").is_err());
        assert!(WebhookKey::parse(&format!("{} x", "k".repeat(32))).is_err());
        assert!(!format!("{key:?}").contains("kkkk"));
    }
}
