//! The token domain: secrets (generation, format, digest) and identifiers.

pub mod id;
pub mod secret;

pub use id::new_id;
pub use secret::{Digest, Secret, SecretKind};
