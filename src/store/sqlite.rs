//! The embedded SQLite store: one file, WAL journal, full fsync on commit.
//! Its statements are the shared ones (`sql.rs`, run by `backend.rs`); what
//! is SQLite's own is how the file is opened and migrated, and that it
//! needs no row lock and no notification (one process, one writer at a
//! time).

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{FromRow, QueryBuilder, Sqlite, SqliteConnection};

use super::backend::{Backend, SqlStore};
use super::revocations::Revocation;
use super::{Result, StoreError};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

impl Backend for Sqlite {
    /// A deferred transaction: in WAL mode its first read fixes the
    /// snapshot that every later statement in it sees.
    const READ_SNAPSHOT: &'static str = "BEGIN";

    /// No row lock: SQLite runs one writer at a time, so one claim at a
    /// time; a lease still keeps a row from a second claim.
    const CLAIM_DELIVERIES: &'static str = super::sql::claim_webhook_deliveries!("");

    /// No row lock: one writer at a time, so sweeps take turns.
    const PRUNE_WEBHOOKS: [&'static str; 3] = super::sql::prune_webhooks!("");

    /// No lock: SQLite runs one writer at a time, and the statements that
    /// follow check that the deployment exists.
    async fn lock_deployment(_: &mut SqliteConnection, _: &str, _: &str) -> Result<bool> {
        Ok(true)
    }

    /// SQLite has one writer at a time: the transaction's first insert
    /// waits for it, and the count in each insert sees every earlier one.
    async fn lock_organization(_: &mut SqliteConnection, _: &str) -> Result<()> {
        Ok(())
    }

    /// No one to tell: only this process uses the file.
    async fn announce(_: &mut SqliteConnection, _: Revocation) -> Result<()> {
        Ok(())
    }

    fn rows_affected(done: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        done.rows_affected()
    }

    async fn fetch_all<R>(
        conn: &mut SqliteConnection,
        mut query: QueryBuilder<'_, Sqlite>,
    ) -> Result<Vec<R>>
    where
        R: for<'r> FromRow<'r, SqliteRow> + Send + Unpin,
    {
        Ok(query.build_query_as::<R>().fetch_all(conn).await?)
    }
}

/// How often opening is tried when another process is creating or
/// migrating the same new file at the same moment.
const OPEN_ATTEMPTS: u32 = 20;

/// Whether a failed open is another process's concurrent set-up of the same
/// file (SQLite busy or locked, or a migration that collided), worth
/// another try. sqlx's migration lock does nothing on SQLite, and switching
/// a new file to WAL needs a lock that the busy timeout does not wait for.
fn collided(err: &StoreError) -> bool {
    let busy = |err: &sqlx::Error| match err {
        // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with any extended code.
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| matches!(code & 0xff, 5 | 6)),
        _ => false,
    };
    match err {
        StoreError::Database(err) => busy(err),
        // A table or column that another process created a moment ago is a
        // collision too; a checksum mismatch or bad SQL is not.
        StoreError::Migration(err) => {
            let text = err.to_string();
            [
                "already exists",
                "duplicate column",
                "database is locked",
                "(code: 5)",
                "(code: 6)",
            ]
            .iter()
            .any(|sign| text.contains(sign))
        }
        _ => false,
    }
}

/// Creates a missing database file empty and readable by its owner only.
/// SQLite would create it with the umask's mode (0644 as a rule), and gives
/// the `-wal` and `-shm` files the mode of the database file. Errors are
/// left to SQLite's own open, which reports them with the path.
fn create_private(path: &std::path::Path) {
    let name = path.to_string_lossy();
    if name.is_empty() || name == ":memory:" {
        return;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let _ = options.open(path);
}

/// Refuses a database that this process could open but not write to
/// (SQLite would open it read-only, and every write would fail later): a
/// missing directory, a path through a file, a directory it cannot create
/// files in (SQLite creates `-wal` and `-shm` there), a database file it
/// cannot open for writing. Each is tried with the process's own rights,
/// the kernel's answer, not computed from permission bits.
fn check_writable(path: &std::path::Path) -> Result<()> {
    let name = path.to_string_lossy();
    if name.is_empty() || name == ":memory:" {
        return Ok(());
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => std::path::Path::new("."),
    };
    match std::fs::metadata(dir) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::Open(format!(
                "the directory {} does not exist",
                dir.display()
            )))
        }
        Err(err) => {
            return Err(StoreError::Open(format!(
                "cannot use the directory {}: {err}",
                dir.display()
            )))
        }
        Ok(meta) if !meta.is_dir() => {
            return Err(StoreError::Open(format!(
                "{} is not a directory",
                dir.display()
            )))
        }
        Ok(_) => {}
    }
    if path.exists() {
        if let Err(err) = std::fs::OpenOptions::new().write(true).open(path) {
            return Err(StoreError::Open(read_only_file(path, &err)));
        }
    }
    // A file created and removed at once: can this process create files
    // (the database, its -wal and -shm) in the directory?
    let probe = dir.join(format!(
        ".{}.agentkey-probe-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(err) => Err(StoreError::Open(read_only_dir(dir, path, &err))),
    }
}

fn read_only_file(path: &std::path::Path, err: &std::io::Error) -> String {
    format!(
        "the database file {} cannot be opened for writing ({err}): this user needs read and \
         write permission on it",
        path.display()
    )
}

fn read_only_dir(dir: &std::path::Path, path: &std::path::Path, err: &std::io::Error) -> String {
    format!(
        "cannot create files in the directory {} ({err}): this user needs write permission \
         there for {} and its -wal and -shm files",
        dir.display(),
        path.display()
    )
}

/// The store on a SQLite file.
pub type SqliteStore = SqlStore<Sqlite>;

impl SqlStore<Sqlite> {
    /// Opens the database file (creating it if missing) and applies every
    /// pending migration.
    pub async fn open(url: &str) -> Result<SqliteStore> {
        let mut attempt = 1;
        loop {
            match SqliteStore::try_open(url).await {
                Err(err) if attempt < OPEN_ATTEMPTS && collided(&err) => {
                    tracing::debug!(error = %err, attempt, "opening collided; retrying");
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn try_open(url: &str) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)?;
        // Read-only and in-memory databases have no file to write.
        if !["mode=ro", ":memory:", "mode=memory"]
            .iter()
            .any(|sign| url.contains(sign))
        {
            check_writable(options.get_filename())?;
        }
        create_private(options.get_filename());
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        if let Err(err) = MIGRATOR.run(&pool).await {
            pool.close().await;
            return Err(err.into());
        }
        Ok(SqlStore { pool })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_messages_name_the_file_or_directory_and_the_permission() {
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let file = read_only_file(std::path::Path::new("/data/a.db"), &denied);
        assert!(file.contains("database file /data/a.db"), "{file}");
        assert!(file.contains("read and write permission"), "{file}");
        let dir = read_only_dir(
            std::path::Path::new("/data"),
            std::path::Path::new("/data/a.db"),
            &denied,
        );
        assert!(dir.contains("directory /data"), "{dir}");
        assert!(dir.contains("write permission"), "{dir}");
    }

    #[test]
    fn a_missing_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("missing").join("a.db");
        let err = check_writable(&db).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "the directory {} does not exist",
                db.parent().unwrap().display()
            )
        );
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = check_writable(&file.join("a.db")).unwrap_err().to_string();
        assert_eq!(err, format!("{} is not a directory", file.display()));
        // A writable directory leaves no probe behind.
        check_writable(&dir.path().join("a.db")).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
