//! A first start through the real binary: the generated root credential is
//! never lost to a crash (the process stopped where a `kill -9` could hit
//! it), and the SQLite files are readable by their owner only.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::process::{root_file, root_in, take_root_file, Server, BIN};

/// Runs `agentkey serve` on `db` with the test-only exit point set, and
/// answers the root credential it wrote to its file (stderr is a pipe); the
/// process must stop there (code 86) within 30 s, or it is killed and the
/// test fails.
fn serve_until_exit_point(db: &std::path::Path, point: &str) -> String {
    let mut child = Command::new(BIN)
        .arg("serve")
        .env("AGENTKEY_LISTEN", "127.0.0.1:0")
        .env(
            "AGENTKEY_DATABASE_URL",
            format!("sqlite://{}", db.display()),
        )
        .env_remove("AGENTKEY_ROOT_TOKEN")
        .env("AGENTKEY_LOG_FORMAT", "json")
        .env(agentkey::bootstrap::TEST_EXIT_ENV, point)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run agentkey");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("agentkey did not stop at {point}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(86), "stopped at {point}: {stderr}");
    assert_eq!(
        root_in(&stderr),
        None,
        "never printed into a pipe: {stderr}"
    );
    take_root_file(db).expect("the credential was written before it was stored")
}

/// The status of `GET /v1/organizations` with `credential`.
fn status_with(server: &Server, credential: &str) -> u16 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        reqwest::Client::new()
            .get(format!("{}/v1/organizations", server.base))
            .bearer_auth(credential)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    })
}

#[test]
fn a_crash_right_after_the_root_credential_is_stored_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let root = serve_until_exit_point(&db, "root-stored");

    let server = Server::start(&db, &[]);
    assert_eq!(server.printed_root(), None, "the stored one is kept");
    assert_eq!(status_with(&server, &root), 200);
    server.stop();
}

#[test]
fn a_crash_before_the_root_credential_is_stored_gets_a_new_one_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let shown = serve_until_exit_point(&db, "root-delivered");

    let server = Server::start(&db, &[]);
    let root = server
        .printed_root()
        .expect("no root credential was stored, so a new one is made and shown");
    assert_ne!(root, shown);
    assert_eq!(status_with(&server, &root), 200);
    assert_eq!(
        status_with(&server, &shown),
        401,
        "the one never stored is nothing"
    );
    server.stop();
}

/// With stderr not a terminal (here a pipe, as under systemd or a log
/// collector), the generated root credential goes to an owner-only file next
/// to the database; the log names the file and says how to read and delete
/// it, and never holds the secret.
#[test]
fn without_a_terminal_the_root_credential_goes_to_a_file_not_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let server = Server::start(&db, &[]);
    // `printed_root` took the file (mode 0600, checked) and deleted it.
    let root = server.printed_root().expect("written to the file");
    assert!(!root_file(&db).exists());
    assert_eq!(status_with(&server, &root), 200);
    let log = server.stop();
    assert!(!log.contains("akroot_"), "no secret in the log: {log}");
    let path = root_file(&db).display().to_string();
    let line = log
        .lines()
        .find(|line| line.contains("wrote it to this file"))
        .unwrap_or_else(|| panic!("the file is logged: {log}"));
    let event: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(event["path"], path.as_str());
    let message = event["message"].as_str().unwrap();
    assert!(message.contains(&format!("cat {path}")), "{message}");
    assert!(message.contains(&format!("rm {path}")), "{message}");

    // The next start finds the stored credential: no new file.
    let again = Server::start(&db, &[]);
    assert_eq!(again.printed_root(), None);
    assert!(!root_file(&db).exists());
    again.stop();
}

#[cfg(unix)]
#[test]
fn the_database_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    // A umask that would leave new files world-readable (0644).
    let server = Server::start_with(&db, &[], |command| {
        use std::os::unix::process::CommandExt;
        // SAFETY: umask is async-signal-safe; nothing else runs here.
        unsafe {
            command.pre_exec(|| {
                set_umask(0o022);
                Ok(())
            });
        }
    });
    let root = server.printed_root().unwrap();
    assert_eq!(status_with(&server, &root), 200);
    for suffix in ["", "-wal", "-shm"] {
        let path = dir.path().join(format!("a.db{suffix}"));
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "{} has mode {:o}",
            path.display(),
            mode
        );
    }
    server.stop();
}

/// Sets the process's umask (libc's `umask`, declared here: the test needs
/// nothing else from libc).
fn set_umask(mask: u32) {
    extern "C" {
        fn umask(mask: u32) -> u32;
    }
    // SAFETY: umask cannot fail and touches only the process's mask.
    unsafe {
        umask(mask);
    }
}

/// A database this process could open but not write is refused at start,
/// naming the file or directory and the permission, rather than reported
/// ready with every write failing. Root passes every permission check, so
/// when the tests run as root the binary runs as `nobody` (uid 65534), for
/// whom the root-owned file and directory below really are read-only.
#[cfg(unix)]
#[test]
fn serve_refuses_a_database_it_cannot_write() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let migrate = Command::new(BIN)
        .args([
            "migrate",
            "--database-url",
            &format!("sqlite://{}", db.display()),
        ])
        .output()
        .unwrap();
    assert!(migrate.status.success(), "{migrate:?}");

    // A read-only database file in a writable directory.
    mode(dir.path(), 0o777);
    mode(&db, 0o444);
    let stderr = serve_refused(&db);
    assert!(
        stderr.contains(&format!(
            "the database file {} cannot be opened for writing",
            db.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert!(stderr.contains("read and write permission"), "{stderr}");

    // A writable file in a directory where no file can be created (SQLite
    // needs its -wal and -shm there).
    mode(&db, 0o666);
    mode(dir.path(), 0o555);
    let stderr = serve_refused(&db);
    assert!(
        stderr.contains(&format!(
            "cannot create files in the directory {}",
            dir.path().display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("Permission denied"), "{stderr}");
    mode(dir.path(), 0o755);

    // A directory that does not exist.
    let nowhere = dir.path().join("missing").join("a.db");
    let stderr = serve_refused(&nowhere);
    assert!(
        stderr.contains(&format!(
            "the directory {} does not exist",
            nowhere.parent().unwrap().display()
        )),
        "{stderr}"
    );
}

/// Runs `agentkey serve` on `db` (as `nobody` when this process is root),
/// which must fail within 30 s; answers its stderr.
#[cfg(unix)]
fn serve_refused(db: &std::path::Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // `nobody` must be able to run the binary, wherever the checkout is
    // (a clone under a 0700 directory is not): a copy in a 0755 directory.
    let runnable = tempfile::tempdir().unwrap();
    let bin = runnable.path().join("agentkey");
    std::fs::copy(BIN, &bin).expect("copy the binary");
    for (path, mode) in [(runnable.path(), 0o755), (bin.as_path(), 0o755)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let mut command = Command::new(&bin);
    command
        .arg("serve")
        .env("AGENTKEY_LISTEN", "127.0.0.1:0")
        .env(
            "AGENTKEY_DATABASE_URL",
            format!("sqlite://{}", db.display()),
        )
        .env_remove("AGENTKEY_ROOT_TOKEN")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if is_root() {
        // SAFETY: setgroups, setgid and setuid are async-signal-safe.
        unsafe {
            command.pre_exec(become_nobody);
        }
    }
    // The copy was just written: a child that another test forked in the
    // meantime holds the copy's write descriptor until it execs, and exec
    // fails with "Text file busy" (ETXTBSY) until then. Wait for that.
    let started = Instant::now();
    let mut child = loop {
        match command.spawn() {
            Err(e)
                if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                    && started.elapsed() < Duration::from_secs(10) =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            spawned => break spawned.expect("run agentkey"),
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "agentkey started on {} instead of refusing it",
                db.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert_eq!(root_in(&stderr), None, "{stderr}");
    stderr
}

#[cfg(unix)]
extern "C" {
    fn geteuid() -> u32;
    fn setgroups(size: usize, list: *const u32) -> i32;
    fn setgid(gid: u32) -> i32;
    fn setuid(uid: u32) -> i32;
}

#[cfg(unix)]
fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { geteuid() == 0 }
}

/// Drops root for `nobody` (uid and gid 65534, no supplementary groups).
#[cfg(unix)]
fn become_nobody() -> std::io::Result<()> {
    // SAFETY: plain system calls on this (child) process's credentials.
    let failed =
        unsafe { setgroups(0, std::ptr::null()) != 0 || setgid(65534) != 0 || setuid(65534) != 0 };
    if failed {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
