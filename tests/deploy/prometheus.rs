//! The Prometheus assets in `deploy/prometheus/`: `herd.rules.yml` (the
//! alerting rules), its unit tests `herd.rules.test.yml` and the example
//! `prometheus.yml`.
//!
//! - promtool accepts all three: `check rules` without a warning, `check
//!   config` (which loads the rules again, from beside the config), and
//!   `test rules`, whose tests all pass (skipped without promtool, except
//!   under CI);
//! - every alert of the rules is tested both firing and, later in the same
//!   test, cleared, and every alert the tests name is one of the rules;
//! - every Datadog monitor of `deploy/datadog-monitors.json` has its alert,
//!   on the same figure under its Prometheus name;
//! - every `herd_*` name in the rules and their tests is a family that
//!   `/metrics` serves, and every label they match on one it sets (the
//!   rules' values, such as `class="name_conflict"`, ones the code has), so
//!   renaming a metric breaks this test rather than an alert.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use crate::common::{may_run, report_line};
use crate::harness::{read, root, text};

const RULES: &str = "deploy/prometheus/herd.rules.yml";
const TESTS: &str = "deploy/prometheus/herd.rules.test.yml";
const CONFIG: &str = "deploy/prometheus/prometheus.yml";
const FAMILIES: &str = "src/agent/status/prometheus.rs";

/// Each Datadog monitor's metric (as its query names it), the alert that
/// stands for it, and what that alert's expression must select: the same
/// figure under its Prometheus name. One row per monitor.
const MONITORS: [(&str, &str, &str); 10] = [
    ("herd.throttle.under_voltage", "HerdUnderVoltage", r#"herd_throttle{flag="under_voltage"}"#),
    ("herd.throttle.throttled", "HerdThrottled", r#"herd_throttle{flag="throttled"}"#),
    ("herd.cpu.temperature", "HerdCpuHot", "herd_cpu_temperature_celsius"),
    ("herd.members", "HerdFewerMembers", "herd_members"),
    ("herd.gossip.rejected", "HerdNameConflict", r#"herd_rejected_total{class="name_conflict"}"#),
    ("baton", "HerdBatonStalled", "herd_baton_value"),
    ("herd.link.loss_pct", "HerdLinkLoss", "herd_link_loss_ratio"),
    ("herd.fs.root_readonly", "HerdRootReadOnly", "herd_fs_root_readonly"),
    ("herd.clock.synced", "HerdClockNotSynchronised", "herd_clock_synced"),
    ("herd.clock.offset_ms", "HerdClockOffset", "herd_clock_offset_seconds"),
];

/// A line without its YAML comment (` #` onwards; none of the lines read
/// here has a `#` inside a value).
fn uncommented(line: &str) -> &str {
    line.split(" #").next().unwrap_or(line).trim_end()
}

/// The alerts of the rules file, each with its text (from its `- alert:`
/// line to the next rule).
fn alerts() -> BTreeMap<String, String> {
    let mut alerts = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in read(RULES).lines() {
        let item = line.trim_start();
        if item.starts_with("- alert:") || item.starts_with("- record:") {
            alerts.extend(current.take());
            if let Some(name) = item.strip_prefix("- alert:") {
                current = Some((uncommented(name).trim().to_owned(), String::new()));
            }
        }
        if let Some((_, block)) = &mut current {
            block.push_str(line);
            block.push('\n');
        }
    }
    alerts.extend(current);
    assert!(alerts.len() >= 10, "{RULES}: only {} alerts found: {:?}", alerts.len(), alerts.keys());
    alerts
}

/// One `alert_rule_test` case: when, which alert, whether any is expected.
#[derive(Debug)]
struct Case {
    test: usize,
    minutes: f64,
    alert: String,
    fires: bool,
}

/// A duration as promtool writes one (`90s`, `12m`, `1h30m`), in minutes.
fn minutes(d: &str) -> f64 {
    let (mut total, mut number) = (0.0, String::new());
    for c in d.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let n: f64 = number.parse().unwrap_or_else(|_| panic!("{TESTS}: duration {d:?}"));
        total += n * match c {
            's' => 1.0 / 60.0,
            'm' => 1.0,
            'h' => 60.0,
            _ => panic!("{TESTS}: duration {d:?}"),
        };
        number.clear();
    }
    assert!(number.is_empty(), "{TESTS}: duration {d:?} lacks a unit");
    total
}

/// Every case of the unit tests, read line by line: a test starts at each
/// `  - ` item of `tests:`; in it, `eval_time:`, then `alertname:`, then
/// `exp_alerts:`, which is `[]` (none expected), a list on the lines below,
/// or a YAML anchor (`&name`) or alias (`*name`) of either.
fn cases() -> Vec<Case> {
    let text = read(TESTS);
    let lines: Vec<&str> = text.lines().collect();
    let (mut cases, mut anchors) = (Vec::new(), BTreeMap::<String, bool>::new());
    let (mut test, mut in_tests) = (0, false);
    let (mut at, mut alert) = (None, None);
    for (i, line) in lines.iter().enumerate() {
        let line = uncommented(line);
        if line == "tests:" {
            in_tests = true;
        } else if in_tests && line.starts_with("  - ") {
            test += 1;
        }
        let item = line.trim_start().trim_start_matches("- ");
        if let Some(t) = item.strip_prefix("eval_time:") {
            at = Some(minutes(t.trim()));
        } else if let Some(name) = item.strip_prefix("alertname:") {
            alert = Some(name.trim().to_owned());
        } else if let Some(value) = item.strip_prefix("exp_alerts:") {
            let mut value = value.trim();
            let mut anchor = None;
            if let Some(rest) = value.strip_prefix('&') {
                let (name, rest) = rest.split_once(' ').unwrap_or((rest, ""));
                anchor = Some(name.to_owned());
                value = rest.trim();
            }
            let fires = match value {
                "[]" => false,
                "" => lines[i + 1..]
                    .iter()
                    .map(|l| uncommented(l).trim())
                    .find(|l| !l.is_empty())
                    .is_some_and(|l| l.starts_with("- ")),
                alias if alias.starts_with('*') => *anchors
                    .get(&alias[1..])
                    .unwrap_or_else(|| panic!("{TESTS}:{}: alias {alias} before its anchor", i + 1)),
                other => panic!("{TESTS}:{}: exp_alerts: {other:?} is not read by this test", i + 1),
            };
            if let Some(name) = anchor {
                anchors.insert(name, fires);
            }
            let (Some(minutes), Some(alert)) = (at.take(), alert.take()) else {
                panic!("{TESTS}:{}: exp_alerts without its eval_time and alertname", i + 1)
            };
            cases.push(Case { test, minutes, alert, fires });
        }
    }
    assert!(cases.len() >= 20, "{TESTS}: only {} cases read: {cases:?}", cases.len());
    cases
}

/// promtool, or why there is none.
fn promtool() -> bool {
    let ok = Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success());
    let missing = (!ok).then(|| "promtool (Debian package prometheus)".to_owned());
    may_run("the promtool checks of deploy/prometheus", missing)
}

/// Runs `promtool ARGS` at the top of the repository: whether it succeeded,
/// and what it said (stdout and stderr).
fn run_promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool").args(args).current_dir(root()).output().expect("run promtool");
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    (out.status.success(), said)
}

#[test]
fn promtool_accepts_the_rules_and_the_config_and_the_rules_pass_their_tests() {
    if !promtool() {
        return;
    }
    let mut report = Vec::new();
    for (what, args) in [
        ("check rules", ["check", "rules", RULES]),
        ("check config", ["check", "config", CONFIG]),
        ("test rules", ["test", "rules", TESTS]),
    ] {
        let (ok, said) = run_promtool(&args);
        let summary: Vec<&str> = said
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("SUCCESS") || l.starts_with("FAILED"))
            .collect();
        report.push(format!("{what}: {}", summary.join(", ")));
        assert!(ok, "promtool {}:\n{said}", args.join(" "));
        assert!(!said.to_lowercase().contains("warn"), "promtool {} warns:\n{said}", args.join(" "));
        assert!(said.contains("SUCCESS"), "promtool {}:\n{said}", args.join(" "));
    }
    report_line(&format!("PROMTOOL | deploy/prometheus | {}", report.join(" | ")));

    // The check can fail: an alert whose test expects it at the wrong time.
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::copy(root().join(RULES), dir.path().join("herd.rules.yml")).expect("copy the rules");
    let late = read(TESTS).replacen("eval_time: 12m", "eval_time: 9m", 1);
    std::fs::write(dir.path().join("late.test.yml"), late).expect("write the tests");
    let out = Command::new("promtool")
        .args(["test", "rules", "late.test.yml"])
        .current_dir(dir.path())
        .output()
        .expect("run promtool");
    let said = text(&out.stdout) + &text(&out.stderr);
    assert!(!out.status.success() && said.contains("FAILED"), "{said}");
}

#[test]
fn every_alert_is_tested_firing_and_then_clearing() {
    let alerts = alerts();
    let cases = cases();
    let unknown: BTreeSet<&str> =
        cases.iter().map(|c| c.alert.as_str()).filter(|a| !alerts.contains_key(*a)).collect();
    assert!(unknown.is_empty(), "{TESTS} tests alerts {RULES} does not have: {unknown:?}");
    for alert in alerts.keys() {
        let mine: Vec<&Case> = cases.iter().filter(|c| &c.alert == alert).collect();
        let clears = mine.iter().any(|fired| {
            fired.fires
                && mine
                    .iter()
                    .any(|after| after.test == fired.test && !after.fires && after.minutes > fired.minutes)
        });
        assert!(
            clears,
            "{TESTS} has no test in which {alert} fires and, at a later eval_time, is expected no more \
             (exp_alerts: []): {mine:#?}"
        );
    }
}

#[test]
fn every_datadog_monitor_has_its_alert_on_the_same_figure() {
    let alerts = alerts();
    let monitors: serde_json::Value = serde_json::from_str(&read("deploy/datadog-monitors.json"))
        .expect("deploy/datadog-monitors.json is JSON");
    let monitors = monitors.as_array().expect("a JSON array of monitors");
    let mut matched = BTreeSet::new();
    for m in monitors {
        let query = m["query"].as_str().expect("a query");
        // The metric: what precedes the scope's `{`, after the last `:`.
        let before = &query[..query.find('{').unwrap_or_else(|| panic!("no scope in {query:?}"))];
        let metric = before.rsplit(':').next().unwrap_or(before);
        let Some(&(_, alert, selects)) = MONITORS.iter().find(|(dd, ..)| *dd == metric) else {
            panic!(
                "the Datadog monitor {:?} (metric {metric}) has no Prometheus alert: add one to {RULES}, \
                 its tests to {TESTS}, and a row to MONITORS",
                m["name"].as_str().unwrap_or("(no name)")
            )
        };
        assert!(matched.insert(metric), "two Datadog monitors on {metric}: give each its own row");
        let block =
            alerts.get(alert).unwrap_or_else(|| panic!("{RULES} has no alert {alert} (for {metric})"));
        assert!(block.contains(selects), "{alert} does not select {selects} (for {metric}):\n{block}");
    }
    assert_eq!(matched.len(), MONITORS.len(), "rows of MONITORS without their Datadog monitor");
    // Beyond the monitors: the Pi that Prometheus cannot scrape.
    assert!(alerts.get("HerdNodeDown").is_some_and(|b| b.contains(r#"up{job="herd"} == 0"#)), "{alerts:#?}");
}

/// The names of `text` that start with `herd_` (not part of a longer word).
fn herd_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("herd_") {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '/') {
            continue;
        }
        let name: String =
            text[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        names.insert(name);
    }
    names
}

/// Every Rust source file under `src/`, concatenated.
fn all_source() -> String {
    fn walk(dir: &std::path::Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&path).expect("read a source file"));
            }
        }
    }
    let mut out = String::new();
    walk(&root().join("src"), &mut out);
    out
}

#[test]
fn the_rules_and_their_tests_use_only_families_and_labels_herd_serves() {
    let code = read(FAMILIES);
    // The families: the string literals `"herd_..."` of prometheus.rs.
    let families: BTreeSet<String> =
        herd_names(&code).into_iter().filter(|n| code.contains(&format!("\"{n}\""))).collect();
    for known in ["herd_members", "herd_throttle", "herd_link_loss_ratio", "herd_rejected_total"] {
        assert!(families.contains(known), "{FAMILIES} no longer yields {known}: {families:?}");
    }
    let source = all_source();
    for file in [RULES, TESTS] {
        let text = read(file);
        let used = herd_names(&text);
        let unknown: Vec<&String> = used.difference(&families).collect();
        assert!(unknown.is_empty(), "{file} names families /metrics does not serve: {unknown:?}");
        assert!(used.len() >= 10, "{file}: only {used:?}");
        // Label matchers of those families: `herd_x{key="value", ...}`.
        for (at, _) in text.match_indices("herd_") {
            let rest = &text[at..];
            let name_end =
                rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            let Some(inner) = rest[name_end..].strip_prefix('{') else { continue };
            let inner = &inner[..inner.find('}').expect("a closing brace")];
            for matcher in inner.split(',') {
                let Some((key, value)) = matcher.split_once('=') else { continue };
                let (key, value) = (key.trim().trim_end_matches(['!', '~']), value.trim().trim_matches('"'));
                if ["job", "instance"].contains(&key) {
                    continue;
                }
                assert!(
                    code.contains(&format!("(\"{key}\",")),
                    "{file}: {} matches on label {key}, which /metrics does not set",
                    &rest[..name_end]
                );
                // The values the rules match on (the tests' are made up).
                assert!(
                    file != RULES || source.contains(&format!("\"{value}\"")),
                    "{file}: {}{{{key}=\"{value}\"}}: no such value in src/",
                    &rest[..name_end]
                );
            }
        }
    }
}
