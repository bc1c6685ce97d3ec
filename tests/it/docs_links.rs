//! Every relative link and image in README.md and docs/*.md resolves: the
//! file exists, and a `#anchor` names a heading of it (GitHub's slugs).

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

/// A link or image target found in a Markdown file, with its line number.
struct Link {
    line: usize,
    target: String,
}

/// The lines of a Markdown file outside fenced code blocks, numbered from 1.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut lines = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(open), Some(m))
                if open == m && trimmed.trim_end().trim_start_matches(m).is_empty() =>
            {
                fence = None
            }
            (None, None) => lines.push((index + 1, line)),
            _ => {}
        }
    }
    lines
}

/// A line with its inline code spans (`...`, ``...``) removed.
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let ticks = rest[start..].chars().take_while(|&c| c == '`').count();
        let after = &rest[start + ticks..];
        let closing = "`".repeat(ticks);
        match after.find(&closing) {
            Some(end) => rest = &after[end + ticks..],
            None => {
                // An unclosed run of backticks is literal text.
                out.push_str(&rest[start..start + ticks]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Inline links and images `[text](target "title")` and reference
/// definitions `[label]: target`.
fn links(text: &str) -> Vec<Link> {
    let mut found = Vec::new();
    for (line_no, line) in prose_lines(text) {
        let line = without_code_spans(line);
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            if let Some(close) = trimmed.find("]:") {
                let target = trimmed[close + 2..].split_whitespace().next();
                if let Some(target) = target {
                    found.push(Link {
                        line: line_no,
                        target: target.trim_matches(['<', '>']).to_string(),
                    });
                }
                continue;
            }
        }
        let mut rest = line.as_str();
        while let Some(open) = rest.find("](") {
            let after = &rest[open + 2..];
            let Some(close) = after.find(')') else { break };
            let inside = after[..close].trim();
            let target = inside.split_whitespace().next().unwrap_or("");
            found.push(Link {
                line: line_no,
                target: target.trim_matches(['<', '>']).to_string(),
            });
            rest = &after[close..];
        }
    }
    found
}

/// GitHub's anchor for a heading: lower case, inline markup and punctuation
/// other than `-` and `_` dropped, spaces turned into `-`.
fn slug(heading: &str) -> String {
    // `[text](url)` reads as `text`.
    let mut text = String::new();
    let mut rest = heading;
    while let Some(open) = rest.find('[') {
        text.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find("](") {
            Some(mid) if after[mid + 2..].contains(')') => {
                text.push_str(&after[..mid]);
                let tail = &after[mid + 2..];
                rest = &tail[tail.find(')').unwrap() + 1..];
            }
            _ => {
                text.push('[');
                rest = after;
            }
        }
    }
    text.push_str(rest);
    text.trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown file's ATX headings, numbered as GitHub
/// numbers repeats (`name`, `name-1`, `name-2`).
fn anchors(text: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = Vec::new();
    for (_, line) in prose_lines(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let heading = line[hashes..].trim().trim_end_matches('#').trim();
        let base = slug(heading);
        let count = seen.entry(base.clone()).or_insert(0);
        anchors.push(if *count == 0 {
            base.clone()
        } else {
            format!("{base}-{count}")
        });
        *count += 1;
    }
    anchors
}

/// `a/b/../c` as `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The broken links of a set of Markdown files (paths relative to the
/// repository root, with their text); `exists` says whether another file is
/// there. Each entry reads `file:line: target: why`.
fn broken_links(files: &BTreeMap<PathBuf, String>, exists: impl Fn(&Path) -> bool) -> Vec<String> {
    let mut broken = Vec::new();
    for (file, text) in files {
        let dir = file.parent().unwrap_or(Path::new(""));
        for link in links(text) {
            let target = link.target.as_str();
            let is_absolute_url = target.contains("://") || target.starts_with("mailto:");
            if is_absolute_url {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target, None),
            };
            let where_ = format!("{}:{}: {target}", file.display(), link.line);
            if path.is_empty() && anchor.is_none() {
                broken.push(format!("{where_}: empty link"));
                continue;
            }
            let resolved = if path.is_empty() {
                file.clone()
            } else if path.starts_with('/') {
                normalize(Path::new(path.trim_start_matches('/')))
            } else {
                normalize(&dir.join(path))
            };
            let text = files.get(&resolved);
            if text.is_none() && !exists(&resolved) {
                broken.push(format!("{where_}: no file {}", resolved.display()));
                continue;
            }
            if let Some(anchor) = anchor {
                match text {
                    Some(text) if anchors(text).iter().any(|a| a == anchor) => {}
                    Some(_) => broken.push(format!(
                        "{where_}: no heading with anchor #{anchor} in {}",
                        resolved.display()
                    )),
                    None => broken.push(format!(
                        "{where_}: #{anchor} points into {}, which is not a checked Markdown file",
                        resolved.display()
                    )),
                }
            }
        }
    }
    broken
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every docs/*.md, keyed by their path from the root.
fn docs() -> BTreeMap<PathBuf, String> {
    let root = root();
    let mut names = vec![PathBuf::from("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).expect("docs/ is readable") {
        let name = entry.expect("docs/ entry").file_name();
        if Path::new(&name).extension().is_some_and(|e| e == "md") {
            names.push(Path::new("docs").join(name));
        }
    }
    names
        .into_iter()
        .map(|name| {
            let text = std::fs::read_to_string(root.join(&name))
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", name.display()));
            (name, text)
        })
        .collect()
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let files = docs();
    assert!(files.len() > 1, "found no docs/*.md");
    let root = root();
    let broken = broken_links(&files, |path| root.join(path).exists());
    assert!(
        broken.is_empty(),
        "{} broken link(s):\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn the_docs_have_links_to_check() {
    // Guards the parser: if it stopped finding links, the test above would
    // pass on anything.
    let files = docs();
    let readme = &files[Path::new("README.md")];
    let targets: Vec<String> = links(readme).into_iter().map(|l| l.target).collect();
    for page in ["docs/tutorial.md", "docs/api.md", "docs/console.png"] {
        assert!(
            targets.iter().any(|t| t == page),
            "README.md has no link to {page}; found {targets:?}"
        );
    }
}

#[test]
fn broken_files_and_anchors_are_reported() {
    let files: BTreeMap<PathBuf, String> = [
        (
            "README.md",
            "# Agent key\n\
             See [the API](docs/api.md#http-api), [gone](docs/gone.md), \
             [bad anchor](docs/api.md#nope), ![shot](docs/shot.png), \
             [here](#agent-key), [not here](#nowhere), [web](https://example.com/x#y), \
             `[in code](docs/none.md)`.\n\
             ```\n[in a fence](docs/fenced.md)\n# Not a heading\n```\n\
             [ref]: docs/missing.md\n",
        ),
        (
            "docs/api.md",
            "# HTTP API\n## Verification: `GET /v1/authorize`\n## Notes\n## Notes\n\
             [up](../README.md#agent-key) [v](#verification-get-v1authorize) \
             [second](#notes-1) [third](#notes-2) [fenced](../README.md#not-a-heading)\n",
        ),
    ]
    .into_iter()
    .map(|(name, text)| (PathBuf::from(name), text.to_string()))
    .collect();
    let broken = broken_links(&files, |path| path == Path::new("docs/shot.png"));
    assert_eq!(
        broken,
        [
            "README.md:2: docs/gone.md: no file docs/gone.md",
            "README.md:2: docs/api.md#nope: no heading with anchor #nope in docs/api.md",
            "README.md:2: #nowhere: no heading with anchor #nowhere in README.md",
            "README.md:7: docs/missing.md: no file docs/missing.md",
            "docs/api.md:5: #notes-2: no heading with anchor #notes-2 in docs/api.md",
            "docs/api.md:5: ../README.md#not-a-heading: no heading with anchor #not-a-heading in README.md",
        ]
    );
}

#[test]
fn slugs_follow_github() {
    assert_eq!(
        slug("First start: the root credential"),
        "first-start-the-root-credential"
    );
    assert_eq!(
        slug("The verification cache and `lastUsedAt`"),
        "the-verification-cache-and-lastusedat"
    );
    assert_eq!(
        slug("Rotation: `POST .../agent-tokens/{id}/rotate`"),
        "rotation-post-agent-tokensidrotate"
    );
    assert_eq!(
        slug("Backups (SQLite and PostgreSQL)"),
        "backups-sqlite-and-postgresql"
    );
    assert_eq!(
        slug("snake_case and [a link](x.md)"),
        "snake_case-and-a-link"
    );
}
