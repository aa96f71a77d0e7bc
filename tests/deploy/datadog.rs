//! The Datadog assets in `deploy/`: `datadog-dashboard.json` is dashboard
//! JSON with every panel, and `datadog-monitors.json` alerts per host on what
//! takes Pis down; every query of both uses only metrics herd emits (the
//! names in docs/metrics.md's StatsD table, with its `.freq_capped` /
//! `*_occurred` shorthands expanded, and DogStatsD's aggregates of each
//! histogram); and both load into Datadog's own API client models
//! (`datadog_models.py` beside this file; skipped without the client, except
//! under CI).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use crate::common::may_run;
use crate::harness::{read, root, text};

/// Every metric herd emits, from docs/metrics.md's StatsD table: the backticked
/// names of the first column (`.freq_capped` continues the name before it),
/// `<name>_occurred` where the row mentions `*_occurred`, and DogStatsD's
/// aggregates of each histogram (`h`).
fn emitted_metrics() -> BTreeSet<String> {
    let doc = read("docs/metrics.md");
    let section = doc.split("\n## StatsD").nth(1).expect("docs/metrics.md has a \"## StatsD\" section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut names = BTreeSet::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (first, kind, rest) = (cells[1], cells[2], cells[3..].join("|"));
        let mut parent = String::new();
        let mut row_names = Vec::new();
        for (i, piece) in first.split('`').enumerate() {
            if i % 2 == 0 {
                continue;
            }
            let name = match piece.strip_prefix('.') {
                Some(leaf) => format!("{parent}.{leaf}"),
                None => {
                    parent = piece.rsplit_once('.').map(|(p, _)| p.to_owned()).unwrap_or_default();
                    piece.to_owned()
                }
            };
            row_names.push(name);
        }
        if rest.contains("`*_occurred`") {
            let sticky: Vec<String> = row_names.iter().map(|n| format!("{n}_occurred")).collect();
            row_names.extend(sticky);
        }
        if kind == "h" {
            let aggregates: Vec<String> = row_names
                .iter()
                .flat_map(|n| ["avg", "max", "median", "95percentile", "count"].map(|s| format!("{n}.{s}")))
                .collect();
            row_names.extend(aggregates);
        }
        names.extend(row_names);
    }
    // Guard the parser against a change of the table's format.
    for known in [
        "baton",
        "herd.baton.passes",
        "herd.baton.hop_ms.95percentile",
        "herd.throttle.soft_temp_limit",
        "herd.throttle.freq_capped_occurred",
        "herd.member.down",
        "herd.link.heartbeat_loss_pct",
        "herd.net.wifi_signal_dbm",
    ] {
        assert!(names.contains(known), "docs/metrics.md's StatsD table no longer yields {known}: {names:?}");
    }
    names
}

/// The metric names in a Datadog query: what follows each `avg:`/`sum:`/
/// `min:`/`max:` up to the scope's `{`.
fn metrics_in_query(q: &str) -> Vec<String> {
    let mut found = Vec::new();
    for agg in ["avg:", "sum:", "min:", "max:"] {
        for (at, _) in q.match_indices(agg) {
            let after = &q[at + agg.len()..];
            let end = after.find('{').unwrap_or_else(|| panic!("query {q:?}: no scope after {agg}"));
            found.push(after[..end].to_owned());
        }
    }
    found
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read("deploy/datadog-dashboard.json"))
        .expect("deploy/datadog-dashboard.json is JSON")
}

/// Every widget definition, groups included, depth first.
fn definitions(widgets: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
    for w in widgets.as_array().expect("widgets is an array") {
        let d = &w["definition"];
        assert!(d.is_object(), "widget without a definition: {w}");
        out.push(d.clone());
        if d["type"] == "group" {
            definitions(&d["widgets"], out);
        }
    }
}

#[test]
fn dashboard_queries_use_only_metrics_herd_emits() {
    let emitted = emitted_metrics();
    let dash = dashboard();
    let mut defs = Vec::new();
    definitions(&dash["widgets"], &mut defs);
    let mut used = BTreeSet::new();
    let mut unknown = Vec::new();
    for d in &defs {
        for r in d["requests"].as_array().into_iter().flatten() {
            let q = r["q"]
                .as_str()
                .unwrap_or_else(|| panic!("request without a \"q\" query in {:?}", d["title"]));
            assert!(q.contains("{$host}"), "query {q:?} ignores the $host template variable");
            let names = metrics_in_query(q);
            assert!(!names.is_empty(), "query {q:?} names no metric");
            for name in names {
                if !emitted.contains(&name) {
                    unknown.push(format!("{name} (in {q:?})"));
                }
                used.insert(name);
            }
        }
    }
    assert!(unknown.is_empty(), "the dashboard queries metrics herd does not emit:\n{}", unknown.join("\n"));
    assert!(used.len() >= 20, "only {} metrics used: {used:?}", used.len());
}

#[test]
fn dashboard_is_importable_and_has_every_panel() {
    let dash = dashboard();
    assert!(dash["title"].as_str().is_some_and(|t| !t.is_empty()), "title");
    assert_eq!(dash["layout_type"], "ordered");
    let vars = dash["template_variables"].as_array().expect("template_variables");
    assert!(
        vars.iter().any(|v| v["name"] == "host" && v["prefix"] == "host"),
        "no $host template variable: {vars:?}"
    );

    let mut defs = Vec::new();
    definitions(&dash["widgets"], &mut defs);
    for d in &defs {
        let kind = d["type"].as_str().expect("widget type");
        assert!(
            ["group", "timeseries", "query_value", "note"].contains(&kind),
            "unexpected widget type {kind}"
        );
        if kind == "timeseries" {
            for r in d["requests"].as_array().expect("timeseries requests") {
                assert!(
                    ["line", "bars", "area"].contains(&r["display_type"].as_str().unwrap_or("")),
                    "display_type: {r}"
                );
            }
        }
    }
    let titles: Vec<String> =
        defs.iter().filter_map(|d| d["title"].as_str()).map(str::to_lowercase).collect();
    for topic in [
        "baton counter",
        "passes/s",
        "hop",
        "regenerated",
        "members",
        "temperature",
        "throttle",
        "link rtt",
        "link loss",
        "heartbeat loss",
        "wi-fi",
        "net up",
        "suspect",
        "rejected",
        "fan",
        "read-only",
        "clock synchronised",
        "clock offset",
        "link speed",
        "carrier changes",
    ] {
        assert!(titles.iter().any(|t| t.contains(topic)), "no panel about {topic:?} among {titles:#?}");
    }
    // Per host, and per host and peer where herd tags a peer.
    let queries: Vec<&str> = defs
        .iter()
        .flat_map(|d| d["requests"].as_array().into_iter().flatten())
        .filter_map(|r| r["q"].as_str())
        .collect();
    let query = |metric: &str| queries.iter().find(|q| q.contains(&format!(":{metric}{{"))).copied();
    assert!(query("baton").is_some_and(|q| q.ends_with("by {host}")));
    assert!(query("herd.baton.passes").is_some_and(|q| q.contains(".as_rate()")));
    assert!(query("herd.cpu.temperature").is_some_and(|q| q.contains("by {host,sensor}")));
    for metric in ["herd.link.rtt_ms", "herd.link.loss_pct", "herd.link.heartbeat_loss_pct"] {
        assert!(query(metric).is_some_and(|q| q.contains("by {host,peer}")), "{metric} per host and peer");
    }
    assert!(query("herd.baton.hop_ms.avg").is_some() && query("herd.baton.hop_ms.95percentile").is_some());
}

fn monitors() -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&read("deploy/datadog-monitors.json"))
        .expect("deploy/datadog-monitors.json is JSON");
    v.as_array().expect("a JSON array of monitors").clone()
}

#[test]
fn monitors_alert_per_host_on_what_takes_pis_down_using_only_metrics_herd_emits() {
    let emitted = emitted_metrics();
    let monitors = monitors();
    let mut queries = Vec::new();
    for m in &monitors {
        let name = m["name"].as_str().expect("a name");
        assert_eq!(m["type"], "query alert", "{name}: type");
        assert!(m["message"].as_str().is_some_and(|t| t.len() > 40), "{name}: a message saying what to do");
        let q = m["query"].as_str().unwrap_or_else(|| panic!("{name}: no query"));
        for metric in metrics_in_query(q) {
            assert!(emitted.contains(&metric), "{name}: {metric} is not a metric herd emits (query {q:?})");
        }
        // Datadog refuses a monitor whose critical threshold differs from
        // the query's.
        let (_, threshold) = q.rsplit_once(' ').expect("query ends with its threshold");
        let threshold: f64 = threshold.parse().unwrap_or_else(|_| panic!("{name}: threshold of {q:?}"));
        assert_eq!(m["options"]["thresholds"]["critical"].as_f64(), Some(threshold), "{name}: critical");
        // Multi-alert: one alert per Pi (and per peer where the metric has
        // one), except the baton, which is the cluster's.
        if !q.contains(":baton{") {
            assert!(q.contains(" by {host"), "{name}: not per host: {q:?}");
        }
        queries.push(q.to_owned());
    }
    let has = |needle: &str| queries.iter().any(|q| q.contains(needle));
    for (what, needle) in [
        ("under-voltage", "herd.throttle.under_voltage{*} by {host} >= 1"),
        ("throttled", "herd.throttle.throttled{*} by {host} >= 1"),
        ("temperature above 80 °C", "herd.cpu.temperature{*} by {host} > 80"),
        ("the cluster smaller than expected", "herd.members{*} by {host} <"),
        ("two nodes sharing a name", "herd.gossip.rejected{reason:name_conflict} by {host}.as_count() > 0"),
        ("the baton stalled for 2 minutes", "change(max(last_2m),last_2m):max:baton{*} <= 0"),
        ("link loss above 5 %", "herd.link.loss_pct{*} by {host,peer} > 5"),
        ("root read-only", "herd.fs.root_readonly{*} by {host} >= 1"),
        ("clock unsynced", "herd.clock.synced{*} by {host} < 1"),
    ] {
        assert!(has(needle), "no monitor for {what} ({needle:?}) among {queries:#?}");
    }
    // A Pi that stops reporting is a member down too: the members monitor
    // alerts on no data.
    let members =
        monitors.iter().find(|m| m["query"].as_str().unwrap_or("").contains("herd.members")).unwrap();
    assert_eq!(members["options"]["notify_no_data"], true);
}

/// A Python with PyPI's datadog-api-client: `$HERD_PYTHON`, else the
/// virtualenv `.ci/run` makes (target/py-tools).
fn datadog_python() -> Option<PathBuf> {
    let python = std::env::var_os("HERD_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/py-tools/bin/python"));
    let ok = Command::new(&python)
        .args(["-c", "import datadog_api_client"])
        .output()
        .is_ok_and(|o| o.status.success());
    let missing = (!ok).then(|| {
        format!(
            "no Python with datadog-api-client at {} (python3 -m venv target/py-tools && \
             target/py-tools/bin/pip install datadog-api-client)",
            python.display()
        )
    });
    may_run("the Datadog model test", missing).then_some(python)
}

#[test]
fn dashboard_and_monitors_load_into_datadogs_own_api_models() {
    let Some(python) = datadog_python() else { return };
    let out = Command::new(&python)
        .arg(root().join("tests/deploy/datadog_models.py"))
        .arg(root().join("deploy/datadog-dashboard.json"))
        .arg(root().join("deploy/datadog-monitors.json"))
        .output()
        .expect("run tests/deploy/datadog_models.py");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "the Datadog client refused them:\n{}{stdout}", text(&out.stderr));
    assert_eq!(stdout.lines().filter(|l| l.starts_with("Monitor ")).count(), monitors().len(), "{stdout}");
    assert!(stdout.starts_with("Dashboard 'herd: Raspberry Pi cluster'"), "{stdout}");

    // The check can fail: a monitor type the client does not know, and a
    // threshold of the wrong type, are both refused.
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut bad = monitors();
    bad[0]["type"] = "metric allert".into();
    bad[1]["options"]["thresholds"]["critical"] = "hot".into();
    let file = dir.path().join("bad.json");
    std::fs::write(&file, serde_json::to_string(&bad).unwrap()).unwrap();
    let out = Command::new(&python)
        .arg(root().join("tests/deploy/datadog_models.py"))
        .arg(root().join("deploy/datadog-dashboard.json"))
        .arg(&file)
        .output()
        .expect("run tests/deploy/datadog_models.py");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("monitor[0].type: not a value the Monitor model knows"), "{err}");
    assert!(err.contains("monitor[1]: ApiTypeError"), "{err}");
}
