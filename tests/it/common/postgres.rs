//! Fresh PostgreSQL databases for tests, when `AGENTKEY_TEST_DATABASE_URL`
//! names a server: each test gets its own `CREATE DATABASE`, dropped when
//! the test ends (even if it panics), so tests run in parallel and leave
//! nothing behind. Without the variable, PostgreSQL tests say so and pass.

use std::io::Write;
use std::sync::Once;

use agentkey::token::new_id;
use sqlx::{Connection, Executor, PgConnection};

pub const PG_URL_VAR: &str = "AGENTKEY_TEST_DATABASE_URL";

/// A database that exists for as long as this value does.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl TestDatabase {
    /// A new empty database, or `None` (after saying why) without a server.
    pub async fn create() -> Option<TestDatabase> {
        let Some(admin_url) = std::env::var(PG_URL_VAR).ok().filter(|u| !u.is_empty()) else {
            // Built with the variable set, run without it: a PostgreSQL
            // test would pass having done nothing.
            if cfg!(postgres_tests) {
                panic!("{PG_URL_VAR} was set when the tests were built but is not set now");
            }
            announce_skipped();
            return None;
        };
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {PG_URL_VAR}: {e}"));
        let name = format!("agentkey_test_{}", new_id());
        create_database(&mut admin, &name).await;
        let _ = admin.close().await;
        let url = with_database(&admin_url, &name);
        Some(TestDatabase {
            admin_url,
            name,
            url,
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop cannot await: drop the database from a thread of its own.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let mut admin = PgConnection::connect(&admin_url).await?;
                admin
                    .execute(format!("DROP DATABASE \"{name}\" WITH (FORCE)").as_str())
                    .await?;
                admin.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) && !std::thread::panicking() {
            panic!("cannot drop the test database {}", self.name);
        }
    }
}

/// Runs `body` with the URL of a fresh database, dropped afterwards even if
/// `body` panics. Without a server, says so and does nothing.
pub async fn fresh_postgres<F, Fut>(body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let outcome = tokio::spawn(body(database.url.clone())).await;
    drop(database);
    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
}

/// Creates the database with a linguistic (ICU en-US) default collation
/// when the server can, so the sort tests prove that the schema itself
/// orders text by bytes, as SQLite does. Falls back to the server default.
async fn create_database(admin: &mut PgConnection, name: &str) {
    let linguistic = format!(
        "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C' \
         LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
    );
    if admin.execute(linguistic.as_str()).await.is_err() {
        admin
            .execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
            .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
    }
}

/// `url` with its database name replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_at(url.find('?').unwrap_or(url.len()));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority..].find('/') {
        Some(slash) => &base[..authority + slash],
        None => base,
    };
    format!("{base}/{database}{query}")
}

fn announce_skipped() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Written to the process's stderr directly: the test harness
        // captures `eprintln!`, and this line should be seen.
        let _ = writeln!(
            std::io::stderr(),
            "PostgreSQL runs skipped: {PG_URL_VAR} is not set \
             (e.g. {PG_URL_VAR}=postgres://postgres@127.0.0.1:5432/test); SQLite only"
        );
    });
}
