//! `herd demo`'s keys, end to end: the built binary on a pseudo-terminal (its
//! stdin, stdout and stderr, and its controlling terminal, as in a shell),
//! driven by key presses as a newcomer would: `k` crashes the baton's
//! holder, `r` restarts it, `p` splits the cluster and `p` heals it. The
//! test reads the screen the demo draws and waits, each time, for the events
//! area to show what followed (the dead node seen down by the others, the
//! node back, each half seeing the other down, the merge), then lets the run
//! end and checks the summary's counts and that the terminal's mode was put
//! back. The final screen is printed with a `DEMO |` prefix.
//!
//! The pty is opened with libc (already a dependency): nothing to install.
//! Must not: leave the demo running (it is killed if a wait fails).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The run's length: the steps below take about 15 s.
const SECONDS: &str = "32";
/// The run ends by itself after SECONDS; this is the bound on its exit.
const EXIT_DEADLINE: Duration = Duration::from_secs(45);

/// A pseudo-terminal: the master side the test reads and types into, and
/// the slave side the demo gets as its terminal.
struct Pty {
    master: File,
    slave: OwnedFd,
}

fn open_pty() -> Pty {
    // SAFETY: plain libc calls on descriptors this function owns; every
    // result is checked.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(master >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        assert_eq!(libc::grantpt(master), 0, "grantpt");
        assert_eq!(libc::unlockpt(master), 0, "unlockpt");
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(master, name.as_mut_ptr(), name.len()), 0, "ptsname_r");
        let slave = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
        assert!(slave >= 0, "open the pty's slave: {}", std::io::Error::last_os_error());
        let size = libc::winsize { ws_row: 50, ws_col: 200, ws_xpixel: 0, ws_ypixel: 0 };
        libc::ioctl(slave, libc::TIOCSWINSZ, &size);
        Pty { master: File::from_raw_fd(master), slave: OwnedFd::from_raw_fd(slave) }
    }
}

/// The pty's line discipline flags now (ICANON, ECHO...).
fn local_flags(fd: &OwnedFd) -> libc::tcflag_t {
    // SAFETY: termios is plain data, filled by tcgetattr.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) }, 0, "tcgetattr");
    t.c_lflag
}

/// `herd demo` with the pty as stdin, stdout, stderr and controlling
/// terminal, in a session of its own (so it is the terminal's foreground).
fn spawn_demo(pty: &Pty, hold: &str) -> Child {
    let io = || Stdio::from(pty.slave.try_clone().expect("dup the pty's slave"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herd"));
    cmd.args(["demo", "--nodes", "4", "--seconds", SECONDS, "--hold", hold])
        .env_remove("RUST_LOG")
        .env_remove("HERD_CONFIG")
        .stdin(io())
        .stdout(io())
        .stderr(io());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().expect("spawn herd demo on the pty")
}

/// Everything the demo wrote, collected by a thread (reading the master
/// fails with EIO once the demo and every copy of the slave are gone).
fn collect(mut master: File) -> Arc<Mutex<Vec<u8>>> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&out);
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    out
}

/// Text without escape sequences and carriage returns.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

struct Demo {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    keys: File,
    started: Instant,
}

impl Demo {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// The latest screen: what follows the last cursor-home, in plain text.
    fn screen(&self) -> String {
        let text = self.text();
        plain(text.rsplit("\x1b[H").next().unwrap_or(""))
    }

    fn press(&mut self, key: &str) {
        eprintln!("DEMO | +{:.1}s pressing {key}", self.started.elapsed().as_secs_f64());
        self.keys.write_all(key.as_bytes()).expect("type into the pty");
    }

    /// Waits until `done` holds for the screen; kills the demo and fails
    /// with the screen after `within`.
    fn wait(&mut self, what: &str, within: Duration, done: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + within;
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("no {what} within {within:?}; the screen:\n{}", self.screen());
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The table's rows (node first) on a screen.
fn rows(screen: &str) -> Vec<Vec<&str>> {
    screen.lines().filter(|l| l.starts_with("ps")).map(|l| l.split_whitespace().collect()).collect()
}

/// The events area's lines on a screen.
fn events(screen: &str) -> Vec<&str> {
    screen.lines().skip_while(|l| *l != "events:").skip(1).map(str::trim).collect()
}

/// The count before `word` in a summary ("2 regenerations" → 2).
fn count(summary: &str, word: &str) -> Option<u64> {
    let words: Vec<&str> = summary.split([' ', ',', ';']).collect();
    let at = words.iter().position(|w| w.trim_end_matches('s') == word)?;
    words.get(at.checked_sub(1)?)?.parse().ok()
}

#[test]
fn keys_kill_restart_split_and_heal_the_cluster_as_the_table_shows() {
    keys_run("0ms");
}

/// With the baton held 500 ms at each node, `k` takes it down with its
/// holder and a survivor regenerates it (unless, as the kill line then
/// says, the baton was between two nodes); the split leaves one half
/// without it, which regenerates its own; the heal merges the two into one.
#[test]
fn paced_the_kill_and_the_split_regenerate_the_baton() {
    keys_run("500ms");
}

/// The whole run at `hold`: k, r, p, p, then the summary and the terminal.
/// At full speed the baton survives a kill and each half keeps a copy of
/// it after a split (or regenerates one); paced, both must regenerate.
fn keys_run(hold: &str) {
    let paced = hold != "0ms";
    let pty = open_pty();
    let before = local_flags(&pty.slave);
    assert_ne!(before & libc::ICANON, 0, "a fresh pty is in canonical mode");
    let child = spawn_demo(&pty, hold);
    let keys = pty.master.try_clone().expect("dup the pty's master");
    let out = collect(pty.master);
    let mut demo = Demo { child, out, keys, started: Instant::now() };

    // The relay runs: every node lists 4 members and has sent a counter.
    demo.wait("relay among 4 live nodes", Duration::from_secs(20), |s| {
        let rows = rows(s);
        rows.len() == 4
            && rows
                .iter()
                .all(|r| r.get(1) == Some(&"4") && r.get(3).is_some_and(|c| c.parse::<u64>().is_ok()))
            && s.contains("events:")
    });

    // k: the holder is killed (a crash), seen down by the three others, and
    // the baton goes on: either it was never lost or it was regenerated.
    // Paced, the passes come on the demo's whole and half seconds, and so
    // would the press: a quarter second off, the holder holds it still.
    if paced {
        thread::sleep(Duration::from_millis(250));
    }
    demo.press("k");
    let screen =
        demo.wait("kill", Duration::from_secs(3), |s| events(s).iter().any(|l| l.contains("k: killed ")));
    let killed_line = events(&screen).into_iter().find(|l| l.contains("k: killed ")).unwrap().to_owned();
    let victim = killed_line.split("k: killed ").nth(1).and_then(|r| r.split(' ').next()).unwrap().to_owned();
    assert!(
        ["(held the baton)", "(was passing the baton)", "(passed the baton last)"]
            .iter()
            .any(|why| killed_line.ends_with(why)),
        "{killed_line}"
    );
    let row = |s: &str, name: &str| rows(s).into_iter().find(|r| r[0] == name).map(|r| r.join(" "));
    assert!(row(&screen, &victim).is_some_and(|r| r.ends_with(" dead")), "{victim} not dead:\n{screen}");
    let others: Vec<String> =
        ["psa", "psb", "psc", "psd"].iter().filter(|n| **n != victim).map(|n| n.to_string()).collect();
    let screen = demo.wait("the kill seen down and the baton going on", Duration::from_secs(15), |s| {
        let ev = events(s);
        let down = ev.iter().filter(|l| l.ends_with(&format!(" saw {victim} down"))).fold(
            Vec::new(),
            |mut seen, l| {
                seen.extend(others.iter().filter(|o| l.contains(o.as_str())).cloned());
                seen
            },
        );
        let regenerated = ev.iter().any(|l| l.contains("regenerated the baton"));
        let lived_on = ev.iter().any(|l| l.contains(&format!("lived on without {victim}")));
        // Paced, a kill of the node that held the baton must lose it.
        let on = if paced && killed_line.ends_with("(held the baton)") {
            regenerated
        } else {
            regenerated || lived_on
        };
        others.iter().all(|o| down.contains(o)) && on
    });
    assert!(rows(&screen).iter().filter(|r| r[0] != victim).all(|r| r.get(1) == Some(&"3")), "{screen}");

    // r: it comes back as a new life and the cluster is whole again.
    demo.press("r");
    demo.wait("the rejoin", Duration::from_secs(10), |s| {
        events(s).iter().any(|l| {
            l.contains(&format!("rejoined: {victim} back, every live node lists 4 members, one baton"))
        })
    });

    // p: split A {psa,psb} | B {psc,psd}; each half sees the other down.
    demo.press("p");
    let screen = demo.wait("the split seen by both halves", Duration::from_secs(15), |s| {
        let ev = events(s);
        ev.iter().any(|l| l.ends_with("p: split A {psa,psb} | B {psc,psd}"))
            && ev.iter().any(|l| l.ends_with("psa, psb saw psc, psd down"))
            && ev.iter().any(|l| l.ends_with("psc, psd saw psa, psb down"))
    });
    for r in rows(&screen) {
        let half = if r[0] == "psa" || r[0] == "psb" { "A" } else { "B" };
        assert_eq!(r.get(1), Some(&"2"), "{} lists its half only:\n{screen}", r[0]);
        assert!(r.join(" ").ends_with(&format!("live {half}")), "{screen}");
    }
    // Each half carries on with a baton of its own (a copy, or regenerated).
    let screen = demo.wait("a baton in each half", Duration::from_secs(8), |s| {
        let ev = events(s);
        let regenerations = ev.iter().filter(|l| l.contains("regenerated the baton")).count();
        if paced {
            regenerations >= 1 && ev.iter().any(|l| l.contains("two batons: one per half"))
        } else {
            ev.iter().any(|l| l.contains("two batons") || l.contains("regenerated the baton"))
        }
    });
    let _ = screen;

    // p again: the halves merge into one cluster with one baton.
    demo.press("p");
    demo.wait("the merge", Duration::from_secs(10), |s| {
        events(s).iter().any(|l| l.ends_with("merged: every live node lists 4 members, one baton"))
    });

    // Then the run ends by itself.
    let status = loop {
        if let Some(status) = demo.child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(demo.started.elapsed() < EXIT_DEADLINE, "still running:\n{}", demo.screen());
        thread::sleep(Duration::from_millis(100));
    };
    thread::sleep(Duration::from_millis(200));
    let last = demo.screen();
    for line in last.lines() {
        println!("DEMO | --hold {hold} | {line}");
    }
    assert!(status.success(), "exit {status:?}\n{last}");
    let summary =
        last.lines().find(|l| l.starts_with("summary: ")).unwrap_or_else(|| panic!("no summary\n{last}"));
    assert!(summary.starts_with("summary: 4 nodes, every node saw 3 peers, "), "{summary}");
    for (word, at_least) in [
        ("kill", 1),
        ("restart", 1),
        ("split", 1),
        ("heal", 1),
        ("merge", 1),
        ("regeneration", if paced { 1 } else { 0 }),
    ] {
        let n = count(summary, word).unwrap_or_else(|| panic!("no {word} count in {summary:?}"));
        assert!(n >= at_least, "{n} {word}(s) in {summary:?}");
    }
    // The terminal's mode is back: canonical input and echo, as before.
    let after = local_flags(&pty.slave);
    assert_eq!(
        after & (libc::ICANON | libc::ECHO),
        before & (libc::ICANON | libc::ECHO),
        "terminal mode not restored"
    );
}

#[test]
fn counts_are_read_from_a_summary() {
    let s = "summary: 4 nodes, every node saw 3 peers, 9 passes in 1.0 s = 9 passes/s; \
             1 kill, 1 restart, 2 splits, 2 heals, 0 regenerations, 1 merge";
    assert_eq!(count(s, "kill"), Some(1));
    assert_eq!(count(s, "split"), Some(2));
    assert_eq!(count(s, "regeneration"), Some(0));
    assert_eq!(count(s, "merge"), Some(1));
    assert_eq!(plain("\x1b[H\x1b[2Jab\x1b[K\r\nc\x1b[J"), "ab\nc");
}
