//! The root credential of a new installation, and the `migrate` and
//! `root-token` subcommands.
//!
//! With `AGENTKEY_ROOT_TOKEN` set, that string is the root credential and
//! nothing is stored. Without it, the first start generates one, stores its
//! digest and prints it once; `agentkey root-token --rotate` replaces it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use crate::clock::rfc3339;
use crate::model::{AuditAction, AuditEvent, RootCredential, Subject, SubjectType, TargetKind};
use crate::store::{self, redact_url, Store};
use crate::token::{new_id, Secret, SecretKind};

/// Generates and stores a root credential if the database has none. Answers
/// the new secret, to be shown once, or `None` if one existed already (or
/// another replica stored one first). The secret is shown only after it is
/// stored: for tests and tools; `serve` uses [`generate_root`].
pub async fn ensure_generated_root(store: &dyn Store, now: i64) -> store::Result<Option<Secret>> {
    match generate_root(store, now, |_| Ok::<(), store::StoreError>(())).await? {
        Generated::Stored(secret) => Ok(Some(secret)),
        Generated::Existing | Generated::Lost(_) => Ok(None),
    }
}

/// What [`generate_root`] did.
pub enum Generated {
    /// A root credential was stored before; nothing was generated.
    Existing,
    /// The delivered secret is now the root credential.
    Stored(Secret),
    /// Another process stored its own first; the delivered one is void.
    Lost(Secret),
}

/// Generates a root credential if the database has none, hands the secret
/// to `deliver` (which shows or writes it), and only then stores its
/// digest. A process killed in between leaves no root credential, and the
/// next start generates one; a stored credential has always been shown.
/// If `deliver` fails, nothing is stored.
pub async fn generate_root<E: From<store::StoreError>>(
    store: &dyn Store,
    now: i64,
    deliver: impl FnOnce(&Secret) -> Result<(), E>,
) -> Result<Generated, E> {
    if store.root_credential().await?.is_some() {
        return Ok(Generated::Existing);
    }
    let secret = Secret::generate(SecretKind::Root);
    let credential = RootCredential {
        id: new_id(),
        secret_digest: secret.digest(),
        created_at: now,
    };
    deliver(&secret)?;
    test_exit_point("root-delivered");
    let audit = root_event(&credential, AuditAction::RootCredentialCreate);
    let stored = store
        .insert_root_credential_if_absent(&credential, &audit)
        .await?;
    test_exit_point("root-stored");
    Ok(if stored {
        Generated::Stored(secret)
    } else {
        Generated::Lost(secret)
    })
}

/// For tests only: with `AGENTKEY_TEST_EXIT_AT` set to `point`, the process
/// exits here at once (code 86, nothing flushed or closed), standing in for
/// a `kill -9` at that point. Points: `root-delivered` (the generated root
/// credential was shown, not yet stored), `root-stored` (it was stored).
fn test_exit_point(point: &str) {
    if std::env::var_os(TEST_EXIT_ENV).is_some_and(|value| value == point) {
        std::process::exit(86);
    }
}

pub const TEST_EXIT_ENV: &str = "AGENTKEY_TEST_EXIT_AT";

/// The audit event of a root credential change: outside any organization,
/// made by the credential itself (the process or operator holding it).
fn root_event(credential: &RootCredential, action: AuditAction) -> AuditEvent {
    AuditEvent {
        id: crate::token::id::new_ordered_id(),
        organization_id: None,
        occurred_at: credential.created_at,
        actor: Subject {
            id: credential.id.clone(),
            subject_type: SubjectType::ServiceKey,
            api_token_name: Some(crate::verify::ROOT_NAME.to_string()),
        },
        action: action.as_str().to_string(),
        target_type: TargetKind::RootCredential.as_str().to_string(),
        target_id: credential.id.clone(),
        request_id: None,
        source_ip: None,
    }
}

/// Prints a root secret to stderr, the one time it is shown.
pub fn announce_root_secret(secret: &Secret, what: &str) {
    eprintln!(
        "\n{what}:\n\n    {}\n\nStore it now: it will not be shown again. \
         `agentkey root-token --rotate` replaces it.\n",
        secret.expose()
    );
}

/// Where `serve` writes a generated root credential when stderr is not a
/// terminal: next to a SQLite file (`PATH.root-credential`), otherwise
/// `agentkey-root-credential` in the working directory.
pub fn root_file_path(url: &str) -> PathBuf {
    match sqlite_path(url) {
        Some(db) => PathBuf::from(format!("{db}{ROOT_FILE_SUFFIX}")),
        None => PathBuf::from("agentkey-root-credential"),
    }
}

pub const ROOT_FILE_SUFFIX: &str = ".root-credential";

/// Writes the secret (one line) to `path`, readable and writable by its
/// owner only (mode 0600, also when the file existed), and syncs it.
pub fn write_root_file(path: &Path, secret: &Secret) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    writeln!(file, "{}", secret.expose())?;
    file.sync_all()
}

/// Whether the file at `path` holds `secret` (as [`write_root_file`]
/// wrote it).
pub fn root_file_holds(path: &Path, secret: &Secret) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| text.trim() == secret.expose())
}

pub async fn open(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    store::open(url)
        .await
        .with_context(|| format!("cannot open the database {}", redact_url(url)))
}

/// `agentkey migrate`.
pub async fn migrate(url: &str) -> anyhow::Result<()> {
    let store = open(url).await?;
    store.close().await;
    eprintln!("agentkey: migrations applied to {}", redact_url(url));
    Ok(())
}

/// The file a `sqlite:` URL names, if it names one.
fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then_some(path)
}

/// On a terminal (stdin and stderr), asks whether to rotate; elsewhere
/// nothing is asked and the answer is yes.
fn confirm_rotation() -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Ok(true);
    }
    eprint!(
        "Replace the root credential? The current one stops working at once, \
         on every replica. [y/N] "
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// `agentkey root-token [--rotate [--yes]]`. Unlike `serve`, it never creates a
/// database: a mistyped path must not yield a credential for nothing.
/// `url_given_as` names where the URL came from (`--database-url` or
/// `AGENTKEY_DATABASE_URL`), for the error that says to check it.
pub async fn root_token_command(
    url: &str,
    url_given_as: &str,
    rotate: bool,
    yes: bool,
) -> anyhow::Result<()> {
    if let Some(path) = sqlite_path(url) {
        if !std::path::Path::new(path).exists() {
            anyhow::bail!(
                "no database at {path}; check {url_given_as} \
                 (`agentkey serve` creates the database on first start)"
            );
        }
    }
    if std::env::var_os(crate::config::ROOT_TOKEN_ENV).is_some_and(|v| !v.is_empty()) {
        eprintln!(
            "Note: AGENTKEY_ROOT_TOKEN is set here. While it is set for `agentkey serve`, \
             that value is the only root credential and the stored one is not accepted."
        );
    }
    if rotate && !yes && !confirm_rotation()? {
        anyhow::bail!("not rotated: the root credential is unchanged");
    }
    let store = open(url).await?;
    let result = if rotate {
        let secret = Secret::generate(SecretKind::Root);
        let credential = RootCredential {
            id: new_id(),
            secret_digest: secret.digest(),
            created_at: chrono::Utc::now().timestamp(),
        };
        store
            .replace_root_credential(
                &credential,
                &root_event(&credential, AuditAction::RootCredentialRotate),
            )
            .await?;
        // The secret alone on stdout, for `NEW=$(agentkey root-token --rotate)`;
        // the words around it on stderr.
        println!("{}", secret.expose());
        eprintln!(
            "agentkey: new root credential printed on stdout; the previous one no longer \
             works. It will not be shown again."
        );
        Ok(())
    } else {
        match store.root_credential().await? {
            Some(root) => {
                eprintln!(
                    "A generated root credential exists (id {}, created {}). Its secret cannot be \
                     shown again; run `agentkey root-token --rotate` to replace it.",
                    root.id,
                    rfc3339(root.created_at)
                );
                Ok(())
            }
            None => {
                eprintln!(
                    "No generated root credential is stored; `agentkey serve` creates one on \
                     first start unless AGENTKEY_ROOT_TOKEN is set."
                );
                Ok(())
            }
        }
    };
    store.close().await;
    result
}
