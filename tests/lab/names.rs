//! Scenario: nodes that share a name. Hosts 1-3 run agents all named
//! `raspberrypi` (every Raspberry Pi OS image is, until renamed), host 4 one
//! named n4. Each of the three must say so loudly within seconds: an ERROR
//! naming each of the other two addresses and the fix, the conflict with
//! both addresses in its `/status` and on its page, and `herd status` (run
//! in its namespace, as an operator on that Pi would) opening with the
//! NAME CONFLICT headline, `--cluster` too. Then host 3 is renamed (its agent
//! restarted with a name of its own): it has no conflict and joins n4, and
//! hosts 1 and 2 stop listing its address (its leave ends the conflict at
//! once; a crash would end it after the conflict window) while still
//! listing each other.

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{herd_bin, wait_until};
use crate::harness::{Lab, STATUS, in_netns, rejoined, report};

const HOSTS: usize = 4;
const SHARED: &str = "raspberrypi";
/// How long the conflict may take to show everywhere: the agents hear each
/// other's first heartbeats within a second; the rest is slack for a loaded
/// 2-core machine.
const SHOWN_WITHIN: Duration = Duration::from_secs(15);
/// How long a renamed node's address may stay listed by the others: its
/// leave ends it at once, a lost leave after the conflict window (60 s).
const CLEARED_WITHIN: Duration = Duration::from_secs(75);

/// `herd status [args]` run inside host `i`'s namespace; its stdout.
fn herd_status(lab: &Lab, i: usize, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.ns(i), herd_bin(), "status", "--addr", STATUS])
        .args(args)
        .env_remove("HERD_CONFIG")
        .output()
        .expect("run herd status");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "herd status on host {i}: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The addresses host `i`'s `/status` lists as using its name, sorted;
/// `None` if it does not answer.
fn conflicts(lab: &Lab, i: usize) -> Option<Vec<String>> {
    let mut addrs: Vec<String> = lab.status(i)?.name_conflicts.into_iter().map(|c| c.addr).collect();
    addrs.sort();
    Some(addrs)
}

/// Host `i`'s `GET /` page.
fn page(lab: &Lab, i: usize) -> String {
    in_netns(&lab.ns(i), || {
        let mut s = std::net::TcpStream::connect(STATUS).expect("connect to the status endpoint");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let mut page = String::new();
        s.read_to_string(&mut page).expect("read the page");
        page
    })
}

#[test]
fn three_pis_named_raspberrypi_say_so_everywhere_until_one_is_renamed() {
    let Some(lab) = Lab::new("names", HOSTS) else { return };
    let mut agents = lab.start_all(HOSTS, |i, mut spec| {
        if i <= 3 {
            spec.name = SHARED.into();
        }
        spec
    });
    let last_start = agents.iter().map(|a| a.spawned).max().unwrap();
    let addr = |i: usize| lab.addr(i).to_string();
    let others = |i: usize, of: &[usize]| -> Vec<String> {
        let mut v: Vec<String> = of.iter().filter(|&&j| j != i).map(|&j| addr(j)).collect();
        v.sort();
        v
    };

    // The log: an ERROR per other node, naming its address and the fix.
    let mut logged = Duration::ZERO;
    for i in 1..=3 {
        for j in (1..=3).filter(|&j| j != i) {
            let pattern = format!("name conflict: the node at {} also runs as \"{SHARED}\"", addr(j));
            let at = agents[i - 1].expect(&pattern, SHOWN_WITHIN);
            logged = logged.max(at.saturating_duration_since(last_start));
            let line = agents[i - 1].line(&pattern, Duration::ZERO).unwrap();
            assert!(line.contains("ERROR"), "an error, not a warning: {line}");
            for fix in ["[node] name in /etc/herd/herd.toml", "hostnamectl set-hostname", "restart herd"] {
                assert!(line.contains(fix), "host {i}: the line says how to fix it ({fix}): {line}");
            }
        }
        // The start warned about the Pi OS default name already.
        assert!(agents[i - 1].has_line("is the Raspberry Pi OS default"), "host {i}: no start warning");
    }

    // /status and `herd status` of each: the conflict with both others.
    let headline = |text: &str| text.lines().next().unwrap_or_default().to_owned();
    let shown_everywhere = || {
        (1..=3).all(|i| {
            conflicts(&lab, i) == Some(others(i, &[1, 2, 3])) && {
                let text = herd_status(&lab, i, &[]);
                let first = headline(&text);
                first.starts_with("NAME CONFLICT: ")
                    && others(i, &[1, 2, 3]).iter().all(|a| first.contains(a))
            }
        })
    };
    assert!(
        wait_until(SHOWN_WITHIN, shown_everywhere),
        "every host should show the conflict: {:?}",
        (1..=3).map(|i| (i, conflicts(&lab, i), headline(&herd_status(&lab, i, &[])))).collect::<Vec<_>>()
    );
    let shown = last_start.elapsed();
    for i in 1..=3 {
        let text = herd_status(&lab, i, &[]);
        let mut lines = text.lines();
        let first = lines.next().unwrap();
        assert!(first.contains(&format!("as \"{SHARED}\"")), "{text}");
        assert!(
            lines.next().is_some_and(|l| l.contains("hostnamectl set-hostname")),
            "the fix second: {text}"
        );
        let cluster = herd_status(&lab, i, &["--cluster"]);
        let top = headline(&cluster);
        assert!(
            top.starts_with("NAME CONFLICT: ") && others(i, &[1, 2, 3]).iter().all(|a| top.contains(a)),
            "--cluster opens with it too:\n{cluster}"
        );
        let page = page(&lab, i);
        assert!(
            page.contains("<section id=\"conflict\" class=\"banner\" role=\"alert\">"),
            "host {i}: no banner"
        );
        assert!(others(i, &[1, 2, 3]).iter().all(|a| page.contains(a.as_str())), "host {i}: page names them");
        // Without a member, each is alone: what looked healthy before.
        let s = lab.status(i).unwrap();
        assert!(s.rejected.get("name_conflict").is_some_and(|&n| n >= 2), "{:?}", s.rejected);
    }
    assert_eq!(conflicts(&lab, 4), Some(vec![]), "n4's name is its own");
    assert!(!headline(&herd_status(&lab, 4, &[])).starts_with("NAME CONFLICT"));

    // Host 3 is renamed: its agent restarts with a name of its own.
    agents[2].sigterm();
    agents[2].wait_exit(Duration::from_secs(5)).expect("host 3's agent exits on SIGTERM");
    let renamed_at = Instant::now();
    agents[2] = lab.start(3, &lab.spec(3));
    let joined = rejoined(&agents[3], "n3", renamed_at, Duration::from_secs(15))
        .expect("the renamed node joins n4")
        .saturating_duration_since(renamed_at);
    assert!(
        wait_until(CLEARED_WITHIN, || conflicts(&lab, 1) == Some(vec![addr(2)])
            && conflicts(&lab, 2) == Some(vec![addr(1)])),
        "hosts 1 and 2 should list only each other: {:?} {:?}",
        conflicts(&lab, 1),
        conflicts(&lab, 2)
    );
    let cleared = renamed_at.elapsed();
    assert_eq!(conflicts(&lab, 3), Some(vec![]), "the renamed node has no conflict");
    let text = herd_status(&lab, 3, &[]);
    assert!(!text.contains("NAME CONFLICT") && text.starts_with("n3 · cluster"), "{text}");
    assert!(agents[0].has_line("name conflict over"), "host 1 says the conflict with host 3 is over");

    report(
        "9. shared name",
        "hosts 1-3 named raspberrypi, host 4 n4: each of the 3 logs an ERROR naming the other 2 and the fix; \
         /status, herd status (+ --cluster) and the page show both; host 3 renamed: joins n4, hosts 1-2 stop listing it",
        &format!(
            "conflict shown everywhere {} ms after the last start (every ERROR line within {} ms); \
             renamed node joined n4 in {} ms, its address cleared at hosts 1-2 in {} ms",
            shown.as_millis(),
            logged.as_millis(),
            joined.as_millis(),
            cleared.as_millis()
        ),
    );
}
