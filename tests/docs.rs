//! The documentation cannot drift from the repository: every relative link
//! in the README and `docs/` resolves (anchors included), every key of the
//! reference config is on the configuration page, every metric the gateway
//! renders is on the operations page, and the README stays short.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// README.md and every Markdown file in docs/.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md")];
    let docs = std::fs::read_dir(root().join("docs")).expect("docs/ exists");
    let mut in_docs: Vec<PathBuf> = docs
        .map(|entry| entry.expect("docs/ is readable").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    in_docs.sort();
    pages.extend(in_docs);
    pages
}

/// The text outside fenced code blocks, where links are links.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Targets of inline links and images: `[text](target)`, `![alt](target)`.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = rest[..end].split_whitespace().next().unwrap_or("");
        targets.push(target.to_owned());
        rest = &rest[end..];
    }
    targets
}

/// GitHub's anchor for a heading: lower case, punctuation dropped except
/// `-` and `_`, spaces to `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every heading's anchor in a Markdown page, with GitHub's `-1`, `-2`
/// suffixes for repeats.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for line in prose(text).lines() {
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let base = slug(heading.trim_start_matches('#'));
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

#[test]
fn every_relative_link_in_the_readme_and_docs_resolves() {
    let mut broken = Vec::new();
    for page in pages() {
        let text = read(&page);
        let dir = page.parent().expect("a page is in a directory");
        for target in link_targets(&prose(&text)) {
            if target.is_empty()
                || target.starts_with("http://")
                || target.starts_with("https://")
                || target.starts_with("mailto:")
            {
                continue;
            }
            let (file, anchor) = match target.split_once('#') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (target.as_str(), None),
            };
            let resolved = if file.is_empty() {
                page.clone()
            } else {
                dir.join(file)
            };
            let name = page.strip_prefix(root()).unwrap_or(&page).display();
            if !resolved.exists() {
                broken.push(format!("{name}: {target}: no such file"));
                continue;
            }
            let is_markdown = resolved.extension().is_some_and(|ext| ext == "md");
            if let (Some(anchor), true) = (anchor, is_markdown)
                && !anchors(&read(&resolved)).contains(anchor)
            {
                broken.push(format!("{name}: {target}: no such heading"));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// `table.key` for every key in the reference config, set or commented out
/// (`# key = value` right after `#`), under the table it belongs to.
fn reference_keys(config: &str) -> BTreeSet<(String, String)> {
    let mut keys = BTreeSet::new();
    let mut table = String::new();
    for line in config.lines() {
        let line = line.trim();
        let line = line.strip_prefix('#').map_or(line, str::trim_start);
        if let Some(header) = line.strip_prefix('[') {
            let name = header.trim_start_matches('[');
            if let Some(end) = name.find(']') {
                table = name[..end].trim().to_owned();
            }
            continue;
        }
        let Some((key, _)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            keys.insert((table.clone(), key.to_owned()));
        }
    }
    keys
}

/// The text under the heading that names `table` (`` `[table]` `` or
/// `` `[[table]]` ``), up to the next heading.
fn section<'d>(doc: &'d str, table: &str) -> Option<&'d str> {
    let names = [format!("`[{table}]`"), format!("`[[{table}]]`")];
    let mut start = None;
    let mut offset = 0;
    for line in doc.split_inclusive('\n') {
        let heading = line.starts_with('#');
        if heading && start.is_some() {
            return start.map(|s| &doc[s..offset]);
        }
        if heading && names.iter().any(|n| line.contains(n.as_str())) {
            start = Some(offset);
        }
        offset += line.len();
    }
    start.map(|s| &doc[s..])
}

#[test]
fn every_key_of_the_reference_config_is_in_the_configuration_page() {
    let config = read(&root().join("config/jwtgate.toml"));
    let doc = read(&root().join("docs/configuration.md"));
    let keys = reference_keys(&config);
    assert!(keys.len() > 50, "the parser found too few keys: {keys:?}");
    let mut missing = Vec::new();
    for (table, key) in &keys {
        match section(&doc, table) {
            None => missing.push(format!("[{table}]: no heading")),
            Some(text) if !text.contains(&format!("`{key}`")) => {
                missing.push(format!("[{table}] {key}"));
            }
            Some(_) => {}
        }
    }
    missing.dedup();
    assert!(
        missing.is_empty(),
        "docs/configuration.md lacks:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_key_parser_sees_set_and_commented_keys_under_their_table() {
    let keys = reference_keys(
        "[server]\nlisten = \"x\"\n# workers = 2   # a = b\n# [admin]\n# listen = \"y\"\n\
         # prose: not_a_key = 1\n[[jwt.keys]]\nalg = \"HS256\"\n",
    );
    let pairs: Vec<_> = keys.iter().map(|(t, k)| format!("{t}.{k}")).collect();
    assert_eq!(
        pairs,
        [
            "admin.listen",
            "jwt.keys.alg",
            "server.listen",
            "server.workers"
        ]
    );
}

/// Every metric family the library renders: `"jwtgate_…` string literals in
/// src/, histogram suffixes dropped.
fn rendered_metrics() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut dirs = vec![root().join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/ is readable") {
            let path = entry.expect("src/ is readable").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let text = read(&path);
            for (at, _) in text.match_indices("\"jwtgate_") {
                let name: String = text[at + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                let family = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .unwrap_or(&name);
                names.insert(family.to_owned());
            }
        }
    }
    names
}

#[test]
fn every_metric_and_failure_reason_is_in_the_operations_page() {
    let doc = read(&root().join("docs/operations.md"));
    let metrics = rendered_metrics();
    assert!(metrics.contains("jwtgate_requests_total"), "{metrics:?}");
    let mut missing: Vec<String> = metrics
        .iter()
        .filter(|name| !doc.contains(&format!("`{name}`")))
        .cloned()
        .collect();
    missing.extend(
        jwtgate::metrics::AUTH_FAILURE_REASONS
            .iter()
            .filter(|reason| !doc.contains(&format!("`{reason}`")))
            .map(|reason| format!("reason {reason}")),
    );
    assert!(
        missing.is_empty(),
        "docs/operations.md lacks:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_readme_stays_short() {
    let lines = read(&root().join("README.md")).lines().count();
    assert!(
        lines <= 150,
        "README.md has {lines} lines; move reference material into docs/"
    );
}
