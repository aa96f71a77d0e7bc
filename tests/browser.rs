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

use common::{StatusTrio, may_run};

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

/// Runs Chromium headless on `url` and returns the DOM it dumps.
fn dump_dom(browser: &PathBuf, url: &str) -> String {
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
        .args(["--virtual-time-budget=3000", "--dump-dom", url])
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
    assert!(status.success() && !dom.is_empty(), "chromium failed ({status}):\n{log}");
    dom
}

#[test]
fn chromium_renders_the_status_page_with_every_node() {
    let browser = chromium();
    let missing =
        browser.is_none().then(|| "chromium is not installed (apt-get install chromium)".to_owned());
    if !may_run("chromium_renders_the_status_page_with_every_node", missing) {
        return;
    }
    let browser = browser.expect("checked");
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
