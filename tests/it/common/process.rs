//! A real `agentkey serve` process for end-to-end tests: started on a free
//! loopback port with JSON logs, its stderr collected, stopped with SIGTERM
//! (or killed when dropped).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_agentkey");

pub struct Server {
    pub child: Child,
    pub base: String,
    pub log: Arc<Mutex<Vec<String>>>,
    /// The root credential this start generated, taken from the file it
    /// wrote (stderr is a pipe here, so it is never printed).
    root: Option<String>,
    /// The thread copying stderr into `log`; it ends when the process does.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Starts `agentkey serve` on a free port and waits until it listens.
    pub fn start(db: &Path, env: &[(&str, &str)]) -> Server {
        Server::start_with(db, env, |_| {})
    }

    /// The same, with a last change to the command before it is spawned.
    pub fn start_with(
        db: &Path,
        env: &[(&str, &str)],
        configure: impl FnOnce(&mut Command),
    ) -> Server {
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .env("AGENTKEY_LISTEN", "127.0.0.1:0")
            .env(
                "AGENTKEY_DATABASE_URL",
                format!("sqlite://{}", db.display()),
            )
            .env_remove("AGENTKEY_ROOT_TOKEN")
            .env_remove("AGENTKEY_LOG")
            .env("AGENTKEY_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // With a PostgreSQL URL the root credential file goes to the
        // working directory: the test's own, not the repository.
        if let Some(dir) = db.parent() {
            command.current_dir(dir);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        configure(&mut command);
        let mut child = command.spawn().expect("spawn agentkey");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let addr = log.lock().unwrap().iter().find_map(|line| {
                let event: Value = serde_json::from_str(line).ok()?;
                (event["message"] == "listening")
                    .then(|| event["addr"].as_str().unwrap().to_string())
            });
            if let Some(addr) = addr {
                return Server {
                    child,
                    base: format!("http://{addr}"),
                    log,
                    root: take_root_file(db),
                    reader: Some(reader),
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("agentkey exited with {status}: {:?}", log.lock().unwrap());
            }
            assert!(
                Instant::now() < deadline,
                "agentkey did not start: {:?}",
                log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The root credential generated at this start, if any: read from the
    /// owner-only file `serve` writes next to the database when stderr is
    /// not a terminal (the file is deleted once read, as an operator
    /// would). It never appears in the log.
    pub fn printed_root(&self) -> Option<String> {
        if let Some(root) = &self.root {
            assert!(
                !self.log_text().contains(root.as_str()),
                "the root credential is not in the log"
            );
        }
        self.root.clone()
    }

    pub fn signal_term(&self) {
        // `kill` as the shell's builtin: no procps needed.
        let status = Command::new("sh")
            .args(["-c", &format!("kill -TERM {}", self.child.id())])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> String {
        self.signal_term();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "clean exit after SIGTERM: {status}");
                break;
            }
            assert!(Instant::now() < deadline, "agentkey did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The pipe is at its end once the process is gone: every line the
        // process wrote is in `log` when the reader returns.
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the stderr reader");
        }
        self.log_text()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

pub fn root_in(text: &str) -> Option<String> {
    let start = text.find("akroot_")?;
    Some(
        text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect(),
    )
}

/// The file `serve` writes a generated root credential to, next to `db`.
pub fn root_file(db: &Path) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(agentkey::bootstrap::ROOT_FILE_SUFFIX);
    name.into()
}

/// Reads and deletes the root credential file next to `db`, if there is
/// one; it must be readable by its owner only.
pub fn take_root_file(db: &Path) -> Option<String> {
    // Next to a SQLite file, or in the working directory (the database's
    // directory, see `start_with`) for PostgreSQL.
    let path = [root_file(db), db.with_file_name("agentkey-root-credential")]
        .into_iter()
        .find(|path| path.exists())?;
    let text = std::fs::read_to_string(&path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{} has mode {mode:o}", path.display());
    }
    std::fs::remove_file(&path).unwrap();
    let root = text.trim().to_string();
    assert_eq!(root_in(&root).as_deref(), Some(root.as_str()), "{text:?}");
    Some(root)
}
