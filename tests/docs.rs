//! The documentation, checked against the repository and the code:
//!
//! - every relative link in a Markdown file of the repository (outside
//!   `target/`, `fuzz/target/`, `fuzz/corpus/`, `fuzz/artifacts/`, `dist/`)
//!   resolves to a file or directory inside the repository, and a
//!   `#anchor` into a Markdown file to one of its headings (GitHub's slugs);
//! - README.md is at most 300 lines;
//! - every config key (`herd::config::known_keys`) has its row in
//!   docs/configuration.md, under its section, and its line in
//!   config/herd.toml; the rows name no other key; and each row's reload
//!   column says what a reload does with a change of that key
//!   (`herd::config::reload::plan`, asked with one changed value per key);
//! - every metric name the code sends is in docs/metrics.md, found two ways:
//!   - from the code: the string constants of `src/` (outside test modules)
//!     that are the name argument of a StatsD sink call (`.gauge(`,
//!     `.gauge_tagged(`, `.count(`, `.count_tagged(`, `.histogram_ms(`) or
//!     a dotted name leading a tuple in a file that makes such calls (the
//!     tables of names the telemetry and the reporter loop over), prefixed
//!     with the default `[statsd] prefix`, plus the default `[baton] metric`;
//!     a constant with `{…}` (`throttle.{flag}`) is a template that some
//!     documented name must fit. Prometheus names are the constants shaped
//!     `herd_<name>`;
//!   - from real agents: three `herd run` processes on the Raspberry Pi
//!     sysfs fixtures (a Pi 4 on eth0, a Pi 5 on Wi-Fi, a Pi Zero W with
//!     `peer_metrics = "summary"`) report to a StatsD listener while one
//!     garbage datagram is refused; every name and tag key that arrives,
//!     every family and label of psa's `/metrics` and every field of its
//!     `/status` must be documented, and every name that arrives must be
//!     one the code scan found (so the scan cannot silently miss a kind of
//!     call);
//! - no file of the repository mentions the product notes or style guide
//!   that lived outside it, or the directory beside it that held them (two
//!   tests: files outside `src/`, and `src/`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use common::{Agent, Cluster, Statsd, free_tcp_port, send_garbage, toml_str, wait_until};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// Directories that hold build output, generated inputs or tool state, not
/// the repository's own files.
const SKIPPED: &[&str] = &[".git", "target", "dist", "fuzz/target", "fuzz/corpus", "fuzz/artifacts"];

/// Every file of the repository (paths relative to its root), minus
/// [`SKIPPED`].
fn repo_files() -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(root.join(dir)).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.expect("directory entry");
            let rel = dir.join(entry.file_name());
            if SKIPPED.iter().any(|s| rel == Path::new(s)) {
                continue;
            }
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                walk(root, &rel, out);
            } else if kind.is_file() {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root(), Path::new(""), &mut out);
    out.sort();
    out
}

fn markdown_files() -> Vec<PathBuf> {
    repo_files().into_iter().filter(|p| p.extension().is_some_and(|e| e == "md")).collect()
}

// ------------------------------------------------------------------ Markdown

/// The lines of `text` outside fenced code blocks, with inline code spans
/// removed, each with its 1-based line number.
fn prose_lines(text: &str) -> Vec<(usize, String)> {
    let mut fence: Option<&str> = None;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(open), Some(m)) if open == m => fence = None,
            (None, None) => out.push((i + 1, without_code_spans(line))),
            _ => {}
        }
    }
    out
}

/// `line` without its `` `code` `` spans (their text could look like links).
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let ticks = rest[start..].chars().take_while(|&c| c == '`').count();
        let after = &rest[start + ticks..];
        match after.find(&"`".repeat(ticks)) {
            Some(end) => rest = &after[end + ticks..],
            None => {
                rest = after;
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The link targets of one line of prose: inline links and images
/// `[text](target "title")`, reference definitions `[label]: target`, and
/// HTML `href="…"` / `src="…"`.
fn link_targets(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let mut depth = 0usize;
        let end = after
            .char_indices()
            .find(|&(_, c)| match c {
                '(' => {
                    depth += 1;
                    false
                }
                ')' if depth == 0 => true,
                ')' => {
                    depth -= 1;
                    false
                }
                _ => false,
            })
            .map_or(after.len(), |(i, _)| i);
        let inside = after[..end].trim();
        let target = inside
            .strip_prefix('<')
            .and_then(|t| t.split_once('>'))
            .map_or_else(|| inside.split_whitespace().next().unwrap_or("").to_owned(), |(t, _)| t.to_owned());
        found.push(target);
        rest = &after[end..];
    }
    let trimmed = line.trim_start();
    if trimmed.starts_with('[')
        && let Some((label, target)) = trimmed.split_once("]:")
        && !label.contains(']')
    {
        found.extend(target.split_whitespace().next().map(str::to_owned));
    }
    for attr in ["href=\"", "src=\""] {
        for (at, _) in line.match_indices(attr) {
            let after = &line[at + attr.len()..];
            found.extend(after.split_once('"').map(|(t, _)| t.to_owned()));
        }
    }
    found
}

/// GitHub's anchor of a heading: its text as rendered (no backticks, link
/// text without the target), lower case, without punctuation but `-` and
/// `_`, spaces as `-`.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading.replace('`', "");
    while let Some(open) = rest.find('[') {
        let Some(mid) = rest[open..].find("](").map(|m| open + m) else { break };
        let Some(close) = rest[mid..].find(')').map(|c| mid + c) else { break };
        text.push_str(&rest[..open]);
        text.push_str(&rest[open + 1..mid]);
        rest = rest[close + 1..].to_owned();
    }
    text.push_str(&rest);
    text.to_lowercase()
        .chars()
        .filter(|&c| c.is_alphanumeric() || c == '-' || c == '_' || c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings, with GitHub's `-1`, `-2`
/// suffixes for repeated ones.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    let mut fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") || line.trim_start().starts_with("~~~") {
            fence = !fence;
            continue;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if fence || !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(line[hashes..].trim().trim_end_matches('#').trim());
        let n = seen.entry(base.clone()).or_insert(0);
        out.insert(if *n == 0 { base.clone() } else { format!("{base}-{n}") });
        *n += 1;
    }
    out
}

/// `path` with `.` and `..` applied, without touching the file system; `None`
/// if it climbs above its start.
fn normalise(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[test]
fn every_relative_link_resolves_inside_the_repository() {
    let root = root();
    let mut broken = Vec::new();
    let files = markdown_files();
    assert!(files.iter().any(|f| f == Path::new("README.md")), "no README.md among {files:?}");
    for file in &files {
        let text = std::fs::read_to_string(root.join(file)).expect("read Markdown");
        for (n, line) in prose_lines(&text) {
            for target in link_targets(&line) {
                let at = format!("{}:{n}: {target}", file.display());
                if target.is_empty() {
                    broken.push(format!("{at}: an empty link"));
                    continue;
                }
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (path, anchor) =
                    target.split_once('#').map_or((target.as_str(), None), |(p, a)| (p, Some(a)));
                let resolved = if path.is_empty() {
                    Some(file.clone())
                } else {
                    normalise(&file.parent().unwrap_or(Path::new("")).join(path))
                };
                let Some(resolved) = resolved else {
                    broken.push(format!("{at}: points outside the repository"));
                    continue;
                };
                if SKIPPED.iter().any(|s| resolved.starts_with(s)) || !root.join(&resolved).exists() {
                    broken.push(format!("{at}: no such file in the repository ({})", resolved.display()));
                    continue;
                }
                if let Some(anchor) = anchor
                    && resolved.extension().is_some_and(|e| e == "md")
                {
                    let target_text = std::fs::read_to_string(root.join(&resolved)).expect("read Markdown");
                    if !anchors(&target_text).contains(anchor) {
                        broken.push(format!("{at}: no heading #{anchor} in {}", resolved.display()));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_slugs_are_githubs() {
    assert_eq!(slug("A stalled Pi, and wall-clock steps"), "a-stalled-pi-and-wall-clock-steps");
    assert_eq!(slug("`[node]`"), "node");
    assert_eq!(slug("Installing with `deploy/install.sh`"), "installing-with-deployinstallsh");
    assert_eq!(slug("See [the lab](tests/lab/README.md) now"), "see-the-lab-now");
    assert_eq!(link_targets("a [b](c.md#d \"t\") and ![e](f.png) `[g](h)`"), ["c.md#d", "f.png", "h"]);
    assert_eq!(link_targets(&without_code_spans("a `[g](h)` [i](j)")), ["j"]);
}

#[test]
fn the_readme_fits_in_300_lines() {
    let lines = read("README.md").lines().count();
    assert!(lines <= 300, "README.md has {lines} lines; at most 300 (move the rest to docs/)");
}

// -------------------------------------------------------------------- config

/// docs/configuration.md's rows: section → key → its reload column. A
/// section is a `## `[name]`` heading; a row is `| `key` | … | reload |`.
fn documented_keys() -> BTreeMap<String, BTreeMap<String, String>> {
    let doc = read("docs/configuration.md");
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section: Option<String> = None;
    for line in doc.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            section = h.trim().strip_prefix("`[").and_then(|s| s.strip_suffix("]`")).map(str::to_owned);
            continue;
        }
        let (Some(section), Some(row)) = (&section, line.strip_prefix("| `")) else { continue };
        let key = row.split('`').next().unwrap_or_default().to_owned();
        let reload = line.trim_end().trim_end_matches('|').rsplit('|').next().unwrap_or_default().trim();
        out.entry(section.clone()).or_default().insert(key, reload.to_owned());
    }
    out
}

#[test]
fn every_config_key_is_in_the_docs_and_the_shipped_config() {
    let documented = documented_keys();
    let shipped: toml::Table = read("config/herd.toml").parse().expect("config/herd.toml is TOML");
    let mut problems = Vec::new();
    let known = herd::config::known_keys();
    for (section, keys) in &known {
        for key in keys {
            match documented.get(*section).and_then(|s| s.get(*key)) {
                None => problems.push(format!("docs/configuration.md has no row for {section}.{key}")),
                Some(r) if r != "live" && r != "restart" => problems.push(format!(
                    "docs/configuration.md: {section}.{key}'s reload column is {r:?}, not live or restart"
                )),
                Some(_) => {}
            }
            if !shipped.get(*section).and_then(|s| s.as_table()).is_some_and(|s| s.contains_key(*key)) {
                problems.push(format!("config/herd.toml has no {section}.{key}"));
            }
        }
    }
    for (section, keys) in &documented {
        for key in keys.keys() {
            if !known.iter().any(|(s, ks)| s == section && ks.contains(&key.as_str())) {
                problems.push(format!(
                    "docs/configuration.md documents {section}.{key}, which herd does not know"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Values to try for a key whose default is a string, in order; the first
/// that differs from the default and passes `herd check` on its own is the
/// changed value. A key none of these suits needs one added here.
const STRING_CANDIDATES: &[&str] = &[
    "psx",
    "/var/lib/psx",
    "127.0.0.2",
    "230.1.1.252",
    "127.0.0.1:8126",
    "statsd",
    "summary",
    "debug",
    "dns",
];

#[test]
fn the_reload_column_says_what_a_reload_does() {
    use herd::config::{Config, reload};
    // The base: the defaults, with what `static` and `dns` need set, so that
    // changing the strategy alone is a valid file.
    let mut base: toml::Table = Config::from_toml_str("", "defaults.toml")
        .expect("the defaults are valid")
        .to_toml()
        .parse()
        .expect("herd check's output is TOML");
    let gossip = base.get_mut("gossip").and_then(|g| g.as_table_mut()).expect("[gossip]");
    gossip.insert("hosts".into(), toml::Value::Array(vec!["10.0.0.11:45892".into()]));
    gossip.insert("dns_name".into(), "herd.local".into());
    // `herd check` prints the secret redacted; the base has none.
    gossip.insert("secret".into(), "".into());
    let dir = tempfile::tempdir().expect("temporary directory");
    let keyring = dir.path().join("secret");
    std::fs::write(&keyring, "a-key-for-the-docs-test\n").expect("write a keyring");
    let parse = |t: &toml::Table| Config::from_toml_str(&toml::to_string(t).expect("TOML"), "docs-test.toml");
    let running = parse(&base).unwrap_or_else(|e| panic!("the base config is invalid: {e}"));

    let documented = documented_keys();
    let mut wrong = Vec::new();
    for (section, keys) in herd::config::known_keys() {
        for key in keys {
            let was = base[section][key].clone();
            let candidates: Vec<toml::Value> = match &was {
                toml::Value::Boolean(b) => vec![(!b).into()],
                toml::Value::Integer(n) => vec![(n + 1).into(), (n - 1).into(), (n + 2).into()],
                toml::Value::Array(_) => vec![toml::Value::Array(vec!["10.0.0.12:45892".into()])],
                toml::Value::String(s) if s.ends_with('s') && s.starts_with(|c: char| c.is_ascii_digit()) => {
                    ["2s", "500ms", "4s"].map(Into::into).to_vec()
                }
                _ => STRING_CANDIDATES
                    .iter()
                    .map(|s| (*s).into())
                    .chain([keyring.display().to_string().into()])
                    .collect(),
            };
            let changed = candidates.into_iter().filter(|v| *v != was).find_map(|v| {
                let mut t = base.clone();
                t.get_mut(section)
                    .and_then(|s| s.as_table_mut())
                    .expect("a section")
                    .insert(key.to_owned(), v);
                parse(&t).ok()
            });
            let Some(wanted) = changed else {
                wrong.push(format!(
                    "{section}.{key}: no candidate value passes herd check (add one to the test)"
                ));
                continue;
            };
            let (_, held) = reload::plan(&running, wanted);
            let path = format!("{section}.{key}");
            let does = if held.iter().any(|h| h.path == path) { "restart" } else { "live" };
            let says = documented.get(section).and_then(|s| s.get(key)).map_or("(no row)", String::as_str);
            if says != does {
                wrong.push(format!("{path}: docs/configuration.md says {says}, a reload does {does}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// ------------------------------------------------------------------- metrics

/// A section of docs/metrics.md: from its `## <title>` line to the next
/// `## ` heading.
fn metrics_section(title: &str) -> String {
    let doc = read("docs/metrics.md");
    let start =
        doc.find(&format!("\n## {title}\n")).unwrap_or_else(|| panic!("docs/metrics.md: no ## {title}"));
    let body = &doc[start + title.len() + 5..];
    body.split("\n## ").next().unwrap_or(body).to_owned()
}

/// The table rows of a section, split into trimmed cells.
fn rows(section: &str) -> Vec<Vec<String>> {
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| l.trim().trim_matches('|').split('|').map(|c| c.trim().to_owned()).collect())
        .collect()
}

/// The backticked words of a table cell.
fn ticked(cell: &str) -> Vec<String> {
    cell.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// The StatsD names of docs/metrics.md's table, and its StatsD section
/// (where a tag key is documented as `` `key:…` ``).
fn documented_statsd() -> (BTreeSet<String>, String) {
    let section = metrics_section("StatsD");
    let names = rows(&section).iter().flat_map(|r| ticked(&r[0])).collect();
    (names, section)
}

/// docs/metrics.md's Prometheus families: name → (type, label names).
fn documented_prometheus() -> BTreeMap<String, (String, BTreeSet<String>)> {
    rows(&metrics_section("Prometheus metrics"))
        .into_iter()
        .map(|r| (ticked(&r[0]).concat(), (r[1].clone(), ticked(&r[2]).into_iter().collect())))
        .collect()
}

/// docs/metrics.md's `/status` fields, as paths (`baton.holder`,
/// `members[].rtt_ms`, `links[from][to].rtt_ms`).
fn documented_status_fields() -> BTreeSet<String> {
    rows(&metrics_section("The status JSON")).iter().flat_map(|r| ticked(&r[0])).collect()
}

/// The string literals of Rust source `text`: where each starts and ends
/// (the byte after it), and its text.
fn string_literals(text: &str) -> Vec<(usize, usize, String)> {
    let b = text.as_bytes();
    let (mut i, mut out) = (0, Vec::new());
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                i = text[i..].find('\n').map_or(b.len(), |n| i + n);
            }
            b'\'' => {
                // A char literal ('x', '\n', '"') or a lifetime ('a).
                if b.get(i + 1) == Some(&b'\\') {
                    i = text[i + 2..].find('\'').map_or(b.len(), |n| i + 3 + n);
                } else if b.get(i + 2) == Some(&b'\'') {
                    i += 3;
                } else {
                    i += 1;
                }
            }
            b'r' if b.get(i + 1).is_some_and(|&c| c == b'"' || c == b'#')
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                let open = i + 1 + hashes;
                if b.get(open) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close = format!("\"{}", "#".repeat(hashes));
                let end = text[open + 1..].find(&close).map_or(b.len(), |n| open + 1 + n);
                i = (end + close.len()).min(b.len());
                out.push((open - hashes - 1, i, text[open + 1..end].to_owned()));
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                let end = (j + 1).min(b.len());
                out.push((i, end, text[i + 1..j.min(b.len())].to_owned()));
                i = end;
            }
            _ => i += 1,
        }
    }
    out
}

/// What the code names, from its string constants (see the module doc):
/// StatsD names (prefixed), templates among them, and Prometheus names.
struct CodeNames {
    statsd: BTreeSet<String>,
    templates: BTreeSet<String>,
    prometheus: BTreeSet<String>,
}

const SINK_CALLS: &[&str] = &[".gauge(", ".gauge_tagged(", ".count(", ".count_tagged(", ".histogram_ms("];

fn names_in_code() -> CodeNames {
    let defaults = herd::config::Config::from_toml_str("", "defaults.toml").expect("the defaults are valid");
    let prefix = defaults.statsd.prefix.clone();
    let mut names =
        CodeNames { statsd: BTreeSet::new(), templates: BTreeSet::new(), prometheus: BTreeSet::new() };
    names.statsd.insert(defaults.baton.metric.clone());
    let statsd_shape = |s: &str| {
        s.split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "_{}".contains(c)))
            && s.starts_with(|c: char| c.is_ascii_lowercase())
    };
    let prometheus_shape = |s: &str| {
        s.strip_prefix("herd_").is_some_and(|r| {
            !r.is_empty() && r.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
    };
    for file in
        repo_files().into_iter().filter(|p| p.starts_with("src") && p.extension().is_some_and(|e| e == "rs"))
    {
        if file.file_name().is_some_and(|n| n == "tests.rs") || file.starts_with("src/demo") {
            // Tests, and the demo, which reads metrics rather than sends them.
            continue;
        }
        let text = read(&file.to_string_lossy());
        let code = text.split("#[cfg(test)]\nmod ").next().unwrap_or(&text);
        // `.count(` alone would take every iterator's `count()` for a sink.
        let sends = SINK_CALLS.iter().filter(|c| **c != ".count(").any(|c| code.contains(c));
        for (at, end, s) in string_literals(code) {
            if prometheus_shape(&s) {
                names.prometheus.insert(s);
                continue;
            }
            let before = code[..at].trim_end();
            // A name made by `format!`, as in `m.gauge(&format!("throttle.{flag}"), …)`.
            let before = before.strip_suffix("&format!(").map_or(before, str::trim_end);
            let after = code[end..].trim_start();
            let call_arg = SINK_CALLS.iter().any(|c| before.ends_with(c));
            let tuple_head = sends && before.ends_with('(') && after.starts_with(',') && s.contains('.');
            if (call_arg || tuple_head) && statsd_shape(&s) {
                let name = if prefix.is_empty() { s } else { format!("{prefix}.{s}") };
                if name.contains('{') {
                    names.templates.insert(name);
                } else {
                    names.statsd.insert(name);
                }
            }
        }
    }
    names
}

/// Whether `name` fits `template` (`herd.throttle.{flag}`): the text around
/// its one `{…}`, with something in between.
fn fits(template: &str, name: &str) -> bool {
    let (head, rest) = template.split_once('{').expect("a template");
    let tail = rest.split_once('}').map_or("", |(_, t)| t);
    name.len() > head.len() + tail.len() && name.starts_with(head) && name.ends_with(tail)
}

#[test]
fn every_metric_name_in_the_code_is_in_docs_metrics() {
    let code = names_in_code();
    // Guard the scan against a change of the code's shape.
    for known in
        ["baton", "herd.members", "herd.baton.hop_ms", "herd.gossip.rejected", "herd.link.worst_rtt_ms"]
    {
        assert!(code.statsd.contains(known), "the code scan no longer finds {known}: {:?}", code.statsd);
    }
    assert!(code.prometheus.contains("herd_baton_value"), "the code scan finds no Prometheus names");
    let (statsd, _) = documented_statsd();
    let prometheus = documented_prometheus();
    let mut missing: Vec<String> = code.statsd.iter().filter(|n| !statsd.contains(*n)).cloned().collect();
    missing.extend(
        code.templates
            .iter()
            .filter(|t| !statsd.iter().any(|n| fits(t, n)))
            .map(|t| format!("{t} (a template)")),
    );
    missing.extend(code.prometheus.iter().filter(|n| !prometheus.contains_key(*n)).cloned());
    assert!(missing.is_empty(), "metrics the code sends that docs/metrics.md does not list: {missing:?}");
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}/sys", env!("CARGO_MANIFEST_DIR"))
}

/// The body of `GET path` from the status endpoint at `addr`.
fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect to the status endpoint");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("read timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").expect("send the request");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("read the reply");
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or_else(|| panic!("not HTTP: {reply}"));
    assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    body.to_owned()
}

/// The paths of a `/status` answer's values, in docs/metrics.md's notation:
/// `a.b` for an object's field, `a[].b` for the fields of an array's
/// objects, `links[from][to].b` for the link matrix; maps keyed by data
/// (sensor labels, fans, flags, rejection classes), arrays of plain values
/// and empty arrays end at their own path.
fn status_paths(v: &serde_json::Value, at: &str, out: &mut BTreeSet<String>) {
    const DATA_MAPS: &[&str] = &["sensors.temperatures", "sensors.fans", "sensors.throttle", "rejected"];
    match v {
        serde_json::Value::Object(fields) if at == "links" => {
            for row in fields.values().filter_map(|r| r.as_object()) {
                for cell in row.values() {
                    status_paths(cell, "links[from][to]", out);
                }
            }
        }
        serde_json::Value::Object(fields) if !DATA_MAPS.contains(&at) => {
            for (k, f) in fields {
                status_paths(f, &if at.is_empty() { k.clone() } else { format!("{at}.{k}") }, out);
            }
        }
        serde_json::Value::Array(items) if items.iter().any(|i| i.is_object()) => {
            for item in items {
                status_paths(item, &format!("{at}[]"), out);
            }
        }
        _ => {
            out.insert(at.to_owned());
        }
    }
}

#[test]
fn every_metric_agents_send_is_in_docs_metrics() {
    let statsd = Statsd::start();
    let cluster = Cluster::new("docs");
    let status: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().expect("an address");
    let spec = |name: &str, tree: &str, interface: &str| {
        cluster
            .node(name)
            .secret("docs")
            .set("baton", "hold", &toml_str("50ms"))
            .set("statsd", "address", &statsd.address())
            .set("statsd", "flush_interval", &toml_str("100ms"))
            .set("telemetry", "interval", &toml_str("300ms"))
            .set("telemetry", "sysfs_root", &toml_str(&fixture(tree)))
            .set("telemetry", "interface", &toml_str(interface))
    };
    let _agents = [
        Agent::start(&spec("psa", "pi4", "eth0").set("status", "listen", &toml_str(&status.to_string()))),
        Agent::start(&spec("psb", "pi5", "wlan0")),
        Agent::start(&spec("psc", "pizero-w", "wlan0").set("links", "peer_metrics", &toml_str("summary"))),
    ];
    let name_of = |line: &str| line.split(':').next().unwrap_or_default().to_owned();
    let sent = || statsd.lines().into_iter().map(|(_, l)| l).collect::<Vec<_>>();
    // What a cluster of these three sends before long: every kind of line.
    let expected = [
        "baton",
        "herd.baton.hop_ms",
        "herd.members",
        "herd.member.up",
        "herd.gossip.rejected",
        "herd.fan.rpm",
        "herd.net.wifi_signal_dbm",
        "herd.net.speed_mbps",
        "herd.throttle.soft_temp_limit_occurred",
        "herd.link.rtt_ms",
        "herd.link.worst_rtt_ms",
        "herd.clock.offset_ms",
    ];
    let arrived = wait_until(Duration::from_secs(30), || {
        send_garbage(cluster.port, &[b"not a herd datagram".to_vec()]);
        let names: BTreeSet<String> = sent().iter().map(|l| name_of(l)).collect();
        expected.iter().all(|n| names.contains(*n))
    });
    let lines = sent();
    let names: BTreeSet<String> = lines.iter().map(|l| name_of(l)).collect();
    let late: Vec<&str> = expected.into_iter().filter(|n| !names.contains(*n)).collect();
    assert!(arrived, "not every kind of metric arrived: {late:?} missing");

    let code = names_in_code();
    let (documented, statsd_section) = documented_statsd();
    let mut wrong = Vec::new();
    for name in &names {
        if !documented.contains(name) {
            wrong.push(format!("StatsD {name}: not in docs/metrics.md"));
        }
        if !code.statsd.contains(name) && !code.templates.iter().any(|t| fits(t, name)) {
            wrong
                .push(format!("StatsD {name}: sent, but the code scan does not find it (fix names_in_code)"));
        }
    }
    let tags: BTreeSet<String> = lines
        .iter()
        .filter_map(|l| l.split_once("|#"))
        .flat_map(|(_, t)| {
            t.split(',').filter_map(|t| t.split_once(':')).map(|(k, _)| k.to_owned()).collect::<Vec<_>>()
        })
        .collect();
    for t in tags.iter().filter(|t| !statsd_section.contains(&format!("`{t}:"))) {
        wrong.push(format!("StatsD tag {t}: not in docs/metrics.md"));
    }

    let metrics = http_get(status, "/metrics");
    let prometheus = documented_prometheus();
    let mut families: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
            families.entry(name.to_owned()).or_default().0 = kind.to_owned();
        } else if !line.starts_with('#') && !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            let labels = line.split_once('{').and_then(|(_, l)| l.split_once('}')).map_or("", |(l, _)| l);
            let family = families.entry(name.to_owned()).or_default();
            family.1.extend(labels.split(',').filter_map(|kv| kv.split_once('=')).map(|(k, _)| k.to_owned()));
        }
    }
    assert!(families.contains_key("herd_link_rtt_seconds"), "psa's /metrics has no link yet:\n{metrics}");
    for (name, (kind, labels)) in &families {
        match prometheus.get(name) {
            None => wrong.push(format!("Prometheus {name}: not in docs/metrics.md")),
            Some((doc_kind, doc_labels)) => {
                if doc_kind != kind {
                    wrong.push(format!("Prometheus {name}: a {kind}, docs/metrics.md says {doc_kind}"));
                }
                for l in labels.difference(doc_labels) {
                    wrong.push(format!("Prometheus {name}: label {l} not in docs/metrics.md"));
                }
            }
        }
        if !code.prometheus.contains(name) {
            wrong.push(format!("Prometheus {name}: served, but the code scan does not find it"));
        }
    }

    let json: serde_json::Value =
        serde_json::from_str(&http_get(status, "/status")).expect("/status is JSON");
    let mut paths = BTreeSet::new();
    status_paths(&json, "", &mut paths);
    assert!(paths.contains("health[].temp_c") && paths.contains("links[from][to].rtt_ms"), "{paths:?}");
    wrong.extend(
        paths.difference(&documented_status_fields()).map(|p| format!("/status {p}: not in docs/metrics.md")),
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// ------------------------------------------------------- standing alone

/// What a file must not mention: the product notes and style guide kept
/// outside the repository, and the directory they lived in. Built from
/// pieces, so this file does not mention them itself.
fn outside_refs() -> [String; 3] {
    [["PRODUCT", ".md"].concat(), ["STYLE", ".md"].concat(), ["../", "shared"].concat()]
}

/// The files whose text mentions one of [`outside_refs`], with the line.
fn mentions_outside(files: impl Iterator<Item = PathBuf>) -> Vec<String> {
    let needles = outside_refs();
    let mut found = Vec::new();
    for file in files {
        let Ok(bytes) = std::fs::read(root().join(&file)) else { continue };
        let text = String::from_utf8_lossy(&bytes);
        for (n, line) in text.lines().enumerate() {
            if needles.iter().any(|needle| line.contains(needle.as_str())) {
                found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn no_file_outside_src_refers_to_files_outside_the_repository() {
    let found = mentions_outside(repo_files().into_iter().filter(|p| !p.starts_with("src")));
    assert!(found.is_empty(), "say what the contract is instead (docs/):\n{}", found.join("\n"));
}

#[test]
fn no_file_in_src_refers_to_files_outside_the_repository() {
    let found = mentions_outside(repo_files().into_iter().filter(|p| p.starts_with("src")));
    assert!(found.is_empty(), "say what the contract is instead (docs/):\n{}", found.join("\n"));
}
