//! The status page in a real browser: headless Chromium (Debian's `chromium`
//! package) loads `/` from psa of a running 3-node cluster and dumps the DOM
//! after its script has run; the DOM must list all three nodes, as rendered
//! by the script from `fetch('/status')` (the page marks that with
//! `data-source="live"`; the server-rendered page says `"server"`).
//!
//! Without Chromium the test is skipped with a message, except under CI
//! (`CI=true`), where it fails: `.ci/run` installs the package.

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{Agent, Cluster, Statsd, StatusTrio, expect_mesh, free_tcp_port, may_run, toml_str};

/// The whole Chromium run, start-up included (virtual time makes the page
/// itself take well under a second).
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

/// `/usr/bin/chromium`, else `chromium` or `chromium-browser` in `PATH`.
fn chromium() -> Option<PathBuf> {
    let fixed = PathBuf::from("/usr/bin/chromium");
    if fixed.is_file() {
        return Some(fixed);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|p| p.is_file())
}

/// Chromium for `test`, or `None` when the test is to be skipped (it is not
/// installed and this is not CI: see `common::may_run`).
fn chromium_for(test: &str) -> Option<PathBuf> {
    let browser = chromium();
    let missing =
        browser.is_none().then(|| "chromium is not installed (apt-get install chromium)".to_owned());
    if may_run(test, missing) { browser } else { None }
}

/// Runs Chromium headless on `url` and returns the DOM it dumps.
fn dump_dom(browser: &PathBuf, url: &str) -> String {
    chromium_run(browser, url, &["--dump-dom"])
}

/// Runs Chromium headless on `url` with `what` (`--dump-dom`, or
/// `--screenshot=...`) and returns what it printed on stdout.
fn chromium_run(browser: &PathBuf, url: &str, what: &[&str]) -> String {
    let profile = tempfile::tempdir().expect("profile directory");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--virtual-time-budget=3000")
        .args(what)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", browser.display()));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {BROWSER_TIMEOUT:?}:\n{}", err.join().unwrap());
        }
        thread::sleep(Duration::from_millis(50));
    };
    let (dom, log) = (out.join().unwrap(), err.join().unwrap());
    let dumping = what.contains(&"--dump-dom");
    assert!(status.success() && (!dom.is_empty() || !dumping), "chromium failed ({status}):\n{log}");
    dom
}

#[test]
fn chromium_renders_the_status_page_with_every_node() {
    let Some(browser) = chromium_for("chromium_renders_the_status_page_with_every_node") else { return };
    let trio = StatusTrio::start("browser", |_, spec| spec);

    let dom = dump_dom(&browser, &format!("http://{}/", trio.addr));
    let excerpt = dom.find("<table id=\"members\"").map_or(dom.as_str(), |at| &dom[at..]);
    let excerpt = &excerpt[..excerpt.find("</table>").map_or(excerpt.len(), |end| end + 8)];
    println!("members table as rendered by chromium:\n{excerpt}");
    assert!(dom.contains("data-source=\"live\""), "the page's script did not refresh from /status:\n{dom}");
    for (name, state) in [("psa", "self"), ("psb", "alive"), ("psc", "alive")] {
        let row = format!("<tr data-member=\"{name}\"><td>{name}</td><td class=\"state alive\">{state}</td>");
        assert!(excerpt.contains(&row), "{name} is not listed as {state}:\n{dom}");
    }
    for section in
        ["<dl id=\"baton\"><dt>epoch</dt>", "<dt>holder</dt>", "<dt>passes</dt>", "<h2>Sensors</h2>"]
    {
        assert!(dom.contains(section), "no {section:?} in\n{dom}");
    }
}

/// The cluster view (each node's gossiped health): 4 agents, each on its own
/// Pi's sysfs fixture (a Pi 4, a Pi 3, a Pi 5 and a Pi Zero W), psa serving
/// the page. Once every node's health and links have been gossiped and the
/// charts have two samples, the page as Chromium runs it must hold 4 cards,
/// each with its own fixture's temperature, a 4×4 link matrix with a
/// measurement in every cell off the diagonal, and the three charts with a
/// temperature line per node. It also writes a phone-sized screenshot to
/// `target/cluster-view.png` (docs/operating.md shows a copy).
#[test]
fn chromium_shows_the_whole_cluster_from_one_node() {
    let Some(browser) = chromium_for("chromium_shows_the_whole_cluster_from_one_node") else { return };
    let fixtures =
        [("psa", "pi4", "48.3"), ("psb", "pi3", "57.5"), ("psc", "pi5", "52.7"), ("psd", "pizero-w", "61.2")];
    let cluster = Cluster::new("browser-cluster");
    let statsd = Statsd::start();
    let addr = format!("127.0.0.1:{}", free_tcp_port());
    let agents: Vec<Agent> = fixtures
        .iter()
        .map(|(name, pi, _)| {
            let root = format!("{}/tests/fixtures/{pi}/sys", env!("CARGO_MANIFEST_DIR"));
            let mut spec = cluster
                .node(name)
                .secret("browser-tests")
                .set("baton", "hold", &toml_str("50ms"))
                .set("statsd", "address", &statsd.address())
                .set("telemetry", "interval", &toml_str("1s"))
                .set("telemetry", "sysfs_root", &toml_str(&root));
            if *name == "psa" {
                spec = spec.set("status", "listen", &toml_str(&addr));
            }
            Agent::start(&spec)
        })
        .collect();
    expect_mesh(&agents, Duration::from_secs(10));
    // Every card and every cell known, and two chart samples (5 s apart).
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let page = get_body(&addr, "/app");
        let temps = fixtures.iter().all(|(n, _, t)| {
            page.contains(&format!("data-node=\"{n}\" data-state=\"alive\" data-temp=\"{t}\""))
        });
        let measured = page.matches(" data-rtt=\"").count();
        if temps && measured == 12 && page.contains("id=\"chart-temps\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster view never completed (temps {temps}, {measured} of 12 links):\n{page}"
        );
        thread::sleep(Duration::from_millis(500));
    }

    let dom = dump_dom(&browser, &format!("http://{addr}/"));
    assert!(dom.contains("data-source=\"live\""), "the page's script did not refresh from /app:\n{dom}");
    let cards: Vec<&str> = dom.split("<article class=\"card").skip(1).collect();
    assert_eq!(cards.len(), 4, "{dom}");
    for (name, pi, temp) in fixtures {
        let card = cards
            .iter()
            .find(|c| c.contains(&format!("data-node=\"{name}\"")))
            .unwrap_or_else(|| panic!("no card for {name}"));
        assert!(
            card.contains(&format!("data-temp=\"{temp}\"")),
            "{name} ({pi}) should show {temp} °C:\n{card}"
        );
        assert!(card.contains(&format!("<p class=\"temp\">{temp} °C</p>")), "{name}:\n{card}");
    }
    let matrix = &dom[dom.find("<table id=\"matrix\"").expect("a link matrix")..];
    let matrix = &matrix[..matrix.find("</table>").unwrap()];
    let rows: Vec<&str> = matrix.split("<tr><th>").skip(2).collect();
    assert_eq!(rows.len(), 4, "{matrix}");
    for row in &rows {
        assert_eq!(row.matches("<td").count(), 4, "{row}");
        assert_eq!(row.matches(" data-rtt=\"").count(), 3, "{row}");
    }
    for id in ["chart-passes", "chart-temps", "chart-members"] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "no {id}");
    }
    let temps_chart = &dom[dom.find("id=\"chart-temps\"").unwrap()..];
    let temps_chart = &temps_chart[..temps_chart.find("</figure>").unwrap()];
    for (name, _, _) in fixtures {
        assert!(temps_chart.contains(&format!("data-series=\"{name}\"")), "no temperature line for {name}");
    }
    println!(
        "BROWSER | cluster view | 4 agents on the pi4, pi3, pi5 and pizero-w fixtures | 4 cards ({}), a 4x4 matrix with 12 links measured, 3 charts",
        fixtures.map(|(n, _, t)| format!("{n} {t} °C")).join(", ")
    );

    // A phone's width (412 CSS px), tall enough for the whole view.
    let shot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/cluster-view.png");
    let _ = std::fs::remove_file(&shot);
    chromium_run(
        &browser,
        &format!("http://{addr}/"),
        &["--window-size=412,1900", "--hide-scrollbars", &format!("--screenshot={}", shot.display())],
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", shot.display()));
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{} bytes", png.len());
    println!("BROWSER | screenshot | {} ({} bytes)", shot.display(), png.len());
    drop(agents);
}

/// `GET path` from the agent at `addr`, body only ("" when it fails).
fn get_body(addr: &str, path: &str) -> String {
    use std::io::Write;
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return String::new() };
    let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()
}
