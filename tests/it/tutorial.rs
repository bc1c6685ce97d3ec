//! docs/tutorial.md, run as written: every fenced `sh` block, in order, in
//! one `bash` (so the variables one step sets reach the next), against a
//! real `agentkey serve` on loopback started with the built binary. Each
//! block must succeed, and its output must match the output block printed
//! under it in the tutorial once the values that differ on every run (ids,
//! secrets, times, request ids, dates, lengths) are masked on both sides.
//! So the walk-through cannot drift from the server.
//!
//! The tutorial reads the server's address and the root credential from
//! `AK` and `ROOT`; a reader sets `ROOT` by hand, the test sets both.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::process::Server;

/// A fenced `sh` block and the output block right under it, if any.
struct Step {
    line: usize,
    script: String,
    expected: Option<String>,
}

/// The `sh` blocks of a Markdown text, each with the fenced block that
/// follows it directly (on the next line), which shows its output.
fn steps(markdown: &str) -> Vec<Step> {
    let lines: Vec<&str> = markdown.lines().collect();
    let fenced = |start: usize| -> (String, usize) {
        let mut end = start + 1;
        while end < lines.len() && lines[end].trim_end() != "```" {
            end += 1;
        }
        assert!(end < lines.len(), "unclosed block at line {}", start + 1);
        (lines[start + 1..end].join("\n"), end)
    };
    let mut steps = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_end() == "```sh" {
            let (script, end) = fenced(i);
            let mut step = Step {
                line: i + 1,
                script,
                expected: None,
            };
            i = end + 1;
            if i < lines.len() && lines[i].starts_with("```") && lines[i].trim_end() != "```sh" {
                let (expected, end) = fenced(i);
                step.expected = Some(expected);
                i = end + 1;
            }
            steps.push(step);
        } else {
            i += 1;
        }
    }
    steps
}

/// `text` with what differs from run to run replaced by a placeholder of
/// its kind: ids, secrets (and short tokens), RFC 3339 times, Unix times,
/// request ids, and the `date`, `content-length` and `x-request-id`
/// headers. Line ends and trailing blanks are dropped.
fn masked(text: &str) -> String {
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let line = line.trim_end();
            let lower = line.to_ascii_lowercase();
            for header in ["date:", "content-length:", "x-request-id:"] {
                if lower.starts_with(header) {
                    return format!("{header} <masked>");
                }
            }
            mask_words(line)
        })
        .collect();
    lines.join("\n").trim_end().to_string()
}

fn mask_words(line: &str) -> String {
    let is_word = |c: char| c.is_ascii_alphanumeric() || "_-:.".contains(c);
    let mut out = String::new();
    let mut word = String::new();
    for c in line.chars().chain(std::iter::once('\n')) {
        if is_word(c) {
            word.push(c);
            continue;
        }
        out.push_str(&mask_word(&word));
        word.clear();
        if c != '\n' {
            out.push(c);
        }
    }
    out
}

fn mask_word(word: &str) -> String {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let lower_alnum = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    };
    if agentkey::token::id::is_id(word) {
        return "<id>".into();
    }
    if ["akagt_", "akapi_", "akroot_"]
        .iter()
        .any(|p| word.starts_with(p))
    {
        return "<secret>".into();
    }
    let b = word.as_bytes();
    if b.len() == 20 && b[4] == b'-' && b[10] == b'T' && b[19] == b'Z' {
        return "<time>".into();
    }
    if word.len() >= 9 && digits(word) {
        return "<unix time>".into();
    }
    // A request id: a per-thread tag, a dash, a counter.
    if let Some((tag, n)) = word.split_once('-') {
        if tag.len() >= 15 && lower_alnum(tag) && lower_alnum(n) {
            return "<request id>".into();
        }
    }
    word.to_string()
}

/// Whether the tutorial's tools are here; under `CI=true` they must be.
fn tools_available() -> bool {
    let missing: Vec<&str> = ["bash", "curl", "jq"]
        .into_iter()
        .filter(|tool| {
            Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_err()
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "tutorial test SKIPPED: {} not installed (apt-get install curl jq)",
        missing.join(" and ")
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{why}; under CI=true the tutorial must run"
    );
    eprintln!("{why}");
    false
}

const DONE: &str = "@@tutorial-step-done@@";

#[test]
fn the_tutorial_runs_as_written() {
    if !tools_available() {
        return;
    }
    let markdown =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/tutorial.md"))
            .expect("read docs/tutorial.md");
    let steps = steps(&markdown);
    assert!(steps.len() >= 10, "the tutorial's steps were found");

    let dir = tempfile::tempdir().unwrap();
    // lastUsedAt is written every second instead of every five, so the
    // step that shows it waits less (it waits for the state, see below).
    let server = Server::start(
        &dir.path().join("agentkey.db"),
        &[("AGENTKEY_LAST_USED_FLUSH_SECONDS", "1")],
    );
    let root = server.printed_root().expect("a generated root credential");
    let errors = dir.path().join("stderr");
    let mut bash = Command::new("bash")
        .args(["--noprofile", "--norc"])
        .env("AK", &server.base)
        .env("ROOT", &root)
        // `mktemp -d` in the tutorial makes its directory in ours.
        .env("TMPDIR", dir.path())
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&errors).unwrap())
        .spawn()
        .expect("start bash");
    let mut input = bash.stdin.take().unwrap();
    let mut output = BufReader::new(bash.stdout.take().unwrap());
    writeln!(input, "set -euo pipefail").unwrap();

    for step in &steps {
        let expected = step.expected.as_deref().unwrap_or_default();
        if expected.contains("\"lastUsedAt\"") {
            // The use of step 5 reaches the list once it is flushed: wait
            // until it has (the same list, until it shows lastUsedAt).
            writeln!(
                input,
                r#"for _ in $(seq 400); do
                     curl -s "$AK/v1/organizations/$ORG/deployments/$DEP/agent-tokens" \
                       -H "Authorization: Bearer $ROOT" \
                       | jq -e '.tokens[0].lastUsedAt' >/dev/null && break
                     sleep 0.05
                   done"#
            )
            .unwrap();
        }
        writeln!(input, "{}\nprintf '\\n{DONE}\\n'", step.script).unwrap();
        input.flush().unwrap();
        let mut got = String::new();
        loop {
            let mut line = String::new();
            let read = output.read_line(&mut line).unwrap();
            assert!(
                read > 0,
                "the step at docs/tutorial.md:{} failed:\n{}\n--- its output:\n{got}\n--- stderr:\n{}",
                step.line,
                step.script,
                std::fs::read_to_string(&errors).unwrap_or_default()
            );
            if line.trim_end() == DONE {
                break;
            }
            got.push_str(&line);
        }
        let got = got.replace('\r', "");
        match &step.expected {
            Some(expected) => assert_eq!(
                masked(&got),
                masked(expected),
                "the output of the step at docs/tutorial.md:{} differs from the one shown",
                step.line
            ),
            // A step without a shown output must still not be refused.
            None => assert!(
                !got.contains("\"statusCode\""),
                "the step at docs/tutorial.md:{} got an error: {got}",
                step.line
            ),
        }
    }
    drop(input);
    let status = bash.wait().unwrap();
    assert!(status.success(), "bash ended with {status}");
    server.stop();
}

#[test]
fn masking_keeps_the_shape_and_hides_what_changes() {
    let a = r#"{"id": "c0mwt7opsjia2pd1gey7ekyur", "token": "akagt_Q7ctJJ7f", "at": "2026-11-23T11:57:54Z", "exp": 1803211074, "requestId":"fqxqzfo3iuk3b5o-6", "name": "worker-1"}"#;
    let b = r#"{"id": "c0mzzzzzzzzzzzzzzzzzzzzzz", "token": "akagt_other", "at": "2027-01-01T00:00:00Z", "exp": 1900000000, "requestId":"abcdefghij01234-1f", "name": "worker-1"}"#;
    assert_eq!(masked(a), masked(b));
    let renamed = b.replace("worker-1", "worker-2");
    assert_ne!(masked(a), masked(&renamed), "other values still count");
    let extra = b.replace('}', r#", "type": "DEPLOYMENT"}"#);
    assert_ne!(masked(a), masked(&extra), "a new field counts");
    assert_eq!(
        masked("HTTP/1.1 200 OK\r\ndate: Mon, 23 Nov 2026 11:57:54 GMT\r\ncontent-length: 197\r\n"),
        "HTTP/1.1 200 OK\ndate: <masked>\ncontent-length: <masked>"
    );
}

#[test]
fn steps_pair_each_sh_block_with_the_output_under_it() {
    let md = "text\n```sh\necho a\n```\n```json\n{}\n```\n\n```sh\necho b\n```\n\n```\nnot its output\n```\n";
    let steps = steps(md);
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0].script, "echo a");
    assert_eq!(steps[0].expected.as_deref(), Some("{}"));
    assert_eq!(steps[1].script, "echo b");
    assert_eq!(
        steps[1].expected, None,
        "a blank line apart is not its output"
    );
}
