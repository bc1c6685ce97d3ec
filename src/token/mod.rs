//! The token domain: secrets (generation, format, digest), identifiers and the
//! validated request types that the HTTP layer hands to the store.

pub mod grants;
pub mod id;
pub mod request;
pub mod secret;

pub use id::new_id;
pub use secret::{Digest, Secret, SecretKind};
