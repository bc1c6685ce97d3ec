//! One typed configuration, built once from flags and environment. Secrets
//! are held as `SecretString`, which never prints its value.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::app::Settings;
use crate::token::Digest;

/// The shortest `AGENTKEY_ROOT_TOKEN` accepted.
pub const MIN_ROOT_TOKEN_CHARS: usize = 32;
pub const ROOT_TOKEN_ENV: &str = "AGENTKEY_ROOT_TOKEN";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `Debug` shows neither the root token nor the database password.
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    pub root_token: Option<SecretString>,
    pub settings: Settings,
    /// A separate, credential-free listener for `/metrics`.
    pub metrics_listen: Option<SocketAddr>,
    /// Connection limits and timeouts of both listeners.
    pub transport: crate::transport::Limits,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field(
                "database_url",
                &crate::store::redact_url(&self.database_url),
            )
            .field(
                "root_token",
                &self.root_token.as_ref().map(|_| "[REDACTED]"),
            )
            .field("settings", &self.settings)
            .field("metrics_listen", &self.metrics_listen)
            .field("transport", &self.transport)
            .finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "{ROOT_TOKEN_ENV} must be at least {MIN_ROOT_TOKEN_CHARS} characters long; it has {0}"
    )]
    RootTokenTooShort(usize),
    #[error("{ROOT_TOKEN_ENV} may contain only printable ASCII characters without spaces")]
    RootTokenCharacters,
    #[error("{0} must be at least 1")]
    /// The setting, named as it was given (flag or environment variable).
    NotPositive(String),
}

impl Config {
    pub fn new(
        listen: SocketAddr,
        database_url: String,
        root_token: Option<String>,
        settings: Settings,
    ) -> Result<Config, ConfigError> {
        let root_token = root_token
            .filter(|t| !t.is_empty())
            .map(check_root_token)
            .transpose()?;
        if settings.max_agent_tokens_per_deployment < 1 {
            return Err(ConfigError::NotPositive(
                "AGENTKEY_MAX_AGENT_TOKENS_PER_DEPLOYMENT".into(),
            ));
        }
        if settings.last_used_flush_interval < Duration::from_secs(1) {
            return Err(ConfigError::NotPositive(
                "AGENTKEY_LAST_USED_FLUSH_SECONDS".into(),
            ));
        }
        if settings.console.idle_timeout.is_zero() {
            return Err(ConfigError::NotPositive(
                "AGENTKEY_CONSOLE_IDLE_MINUTES".into(),
            ));
        }
        if settings.console.lifetime.is_zero() {
            return Err(ConfigError::NotPositive(
                "AGENTKEY_CONSOLE_SESSION_HOURS".into(),
            ));
        }
        if settings.cache.positive_ttl < 1 {
            return Err(ConfigError::NotPositive(
                "AGENTKEY_CACHE_TTL_SECONDS".into(),
            ));
        }
        for (value, name) in [
            (
                settings.auth_failures.burst as usize,
                "AGENTKEY_AUTH_FAILURE_BURST",
            ),
            (
                settings.auth_failures.per_minute as usize,
                "AGENTKEY_AUTH_FAILURES_PER_MINUTE",
            ),
            (
                settings.auth_failures.max_clients,
                "AGENTKEY_AUTH_FAILURE_MAX_CLIENTS",
            ),
            (settings.credential_reads, "AGENTKEY_CREDENTIAL_READS"),
            (
                settings.cache.negative_capacity,
                "AGENTKEY_NEGATIVE_CACHE_ENTRIES",
            ),
        ] {
            if value < 1 {
                return Err(ConfigError::NotPositive(name.into()));
            }
        }
        if settings.cache.negative_ttl < 1 {
            return Err(ConfigError::NotPositive(
                "AGENTKEY_NEGATIVE_CACHE_SECONDS".into(),
            ));
        }
        if settings.webhooks.retention < Duration::from_secs(86_400) {
            return Err(ConfigError::NotPositive(
                "AGENTKEY_WEBHOOK_RETENTION_DAYS".into(),
            ));
        }
        Ok(Config {
            listen,
            database_url,
            root_token,
            settings,
            metrics_listen: None,
            transport: crate::transport::Limits::default(),
        })
    }

    /// Sets the connection limits, each of which must be positive.
    pub fn with_transport(
        self,
        transport: crate::transport::Limits,
    ) -> Result<Config, ConfigError> {
        for (value, name) in [
            (
                transport.header_read_timeout,
                "AGENTKEY_HEADER_READ_TIMEOUT_SECONDS",
            ),
            (transport.body_timeout, "AGENTKEY_BODY_TIMEOUT_SECONDS"),
            (transport.idle_timeout, "AGENTKEY_IDLE_TIMEOUT_SECONDS"),
        ] {
            if value.is_zero() {
                return Err(ConfigError::NotPositive(name.into()));
            }
        }
        if transport.max_connections < 1 {
            return Err(ConfigError::NotPositive("AGENTKEY_MAX_CONNECTIONS".into()));
        }
        Ok(Config { transport, ..self })
    }

    /// The digest under which the configured root token is recognised.
    pub fn root_token_digest(&self) -> Option<Digest> {
        self.root_token
            .as_ref()
            .map(|t| Digest::of(t.expose_secret()))
    }
}

fn check_root_token(token: String) -> Result<SecretString, ConfigError> {
    let chars = token.chars().count();
    if chars < MIN_ROOT_TOKEN_CHARS {
        return Err(ConfigError::RootTokenTooShort(chars));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::RootTokenCharacters);
    }
    Ok(SecretString::from(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(root: Option<&str>) -> Result<Config, ConfigError> {
        Config::new(
            "127.0.0.1:0".parse().unwrap(),
            "sqlite://x.db".into(),
            root.map(String::from),
            Settings::default(),
        )
    }

    #[test]
    fn root_token_rules() {
        assert_eq!(
            config(Some("short")).unwrap_err(),
            ConfigError::RootTokenTooShort(5)
        );
        assert_eq!(
            config(Some(&format!("{} x", "a".repeat(32)))).unwrap_err(),
            ConfigError::RootTokenCharacters
        );
        let ok = config(Some(&"a".repeat(32))).unwrap();
        assert!(ok.root_token_digest().is_some());
        assert!(
            config(Some("")).unwrap().root_token.is_none(),
            "empty means unset"
        );
    }

    #[test]
    fn debug_never_shows_the_root_token_or_the_database_password() {
        let secret = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t";
        let mut cfg = config(Some(secret)).unwrap();
        cfg.database_url = "postgres://u:hunter2@h/db".into();
        let shown = format!("{cfg:?}");
        assert!(
            !shown.contains(secret) && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn limits_must_be_positive() {
        let with = |settings: Settings| {
            Config::new(
                "127.0.0.1:0".parse().unwrap(),
                "sqlite://x".into(),
                None,
                settings,
            )
        };
        assert!(with(Settings {
            max_agent_tokens_per_deployment: 0,
            ..Settings::default()
        })
        .is_err());
        assert!(with(Settings {
            last_used_flush_interval: Duration::ZERO,
            ..Settings::default()
        })
        .is_err());
        let mut zero_ttl = Settings::default();
        zero_ttl.cache.positive_ttl = 0;
        assert!(with(zero_ttl).is_err());
        let mut zero = Settings::default();
        zero.auth_failures.burst = 0;
        assert_eq!(
            with(zero).unwrap_err(),
            ConfigError::NotPositive("AGENTKEY_AUTH_FAILURE_BURST".into())
        );
        let zero = Settings {
            credential_reads: 0,
            ..Settings::default()
        };
        assert_eq!(
            with(zero).unwrap_err(),
            ConfigError::NotPositive("AGENTKEY_CREDENTIAL_READS".into())
        );
        let mut zero = Settings::default();
        zero.cache.negative_ttl = 0;
        assert!(with(zero).is_err());
        let mut zero = Settings::default();
        zero.webhooks.retention = Duration::ZERO;
        assert_eq!(
            with(zero).unwrap_err(),
            ConfigError::NotPositive("AGENTKEY_WEBHOOK_RETENTION_DAYS".into())
        );
        assert!(with(Settings::default()).is_ok());
        let limits = |f: fn(&mut crate::transport::Limits)| {
            let mut limits = crate::transport::Limits::default();
            f(&mut limits);
            with(Settings::default()).unwrap().with_transport(limits)
        };
        assert!(limits(|l| l.idle_timeout = Duration::ZERO).is_err());
        assert!(limits(|l| l.header_read_timeout = Duration::ZERO).is_err());
        assert!(limits(|l| l.body_timeout = Duration::ZERO).is_err());
        assert!(limits(|l| l.max_connections = 0).is_err());
        assert!(limits(|_| {}).is_ok());
    }
}
