//! herd's benchmark suite: every performance target of benches/README.md
//! measured in one invocation, each beside a reference measured in the same run (this
//! machine is noisy: only ratios within one run mean anything), printed as
//! one table. Figures, not assertions.
//!
//!   cargo bench --bench suite                 # the full run (the scale section alone: about 14 minutes)
//!   cargo bench --bench suite -- --quick      # smoke run (CI): every section, small and short
//!   cargo bench --bench suite -- --herd PATH  # measure another build
//!
//! Sections: `relay` (baton throughput vs a raw UDP ring, 2/4/8 agents, with
//! and without secret), `footprint` (RSS, idle CPU, binary sizes, against
//! prometheus-node-exporter when installed), `failure` (detection, failover,
//! leave and join times on loopback, and in the network lab when run as root),
//! `cost` (instructions per second idle and per baton pass, under callgrind
//! and, for the armv6 and aarch64 builds, counted by qemu; projected onto a
//! Pi Zero and a Pi 4 core), `scale` (8/16/32/64 agents: convergence,
//! traffic and CPU per agent, beside memberlist both encrypted and both
//! plain).
//! `--armv6 PATH` and `--aarch64 PATH` name the builds the cost section
//! counts under qemu (by default scripts/dist.sh's, in target/; a path that
//! does not exist skips the row), so two builds can be measured the same way.
//! `--only SECTION[,SECTION]` runs some of them; `--relay-nodes 4[,8]` sets
//! the relay's cluster sizes (to iterate on one of them); `--profiles DIR`
//! keeps the cost section's callgrind profiles (idle and per pass) in DIR,
//! to read by function with `callgrind_annotate` (with `--herd` a build
//! that has symbols: `cargo build --profile profiling`).

#[path = "../../tests/common/mod.rs"]
mod common;
mod cost;
mod failure;
mod footprint;
#[allow(dead_code)] // the suite uses part of the lab harness
#[path = "../../tests/lab/harness.rs"]
mod harness;
mod procfs;
mod relay;
mod scale;

use std::time::Duration;

/// What to run and how long.
pub struct Setup {
    pub herd: String,
    pub quick: bool,
    pub rounds: usize,
    pub window: Duration,
    pub relay_nodes: Vec<usize>,
    pub idle: Duration,
    pub scale_nodes: Vec<usize>,
    /// `--profiles DIR`: the cost section keeps its callgrind outputs there
    /// (`idle.callgrind.out`, `pass.callgrind.out`) for `callgrind_annotate`.
    pub profiles: Option<std::path::PathBuf>,
    /// The 32-bit ARM (armv6) and aarch64 builds the cost section counts.
    pub armv6: String,
    pub aarch64: String,
}

/// One line of the table.
pub struct Row {
    pub section: &'static str,
    pub figure: String,
    pub value: String,
    pub target: String,
    /// The reference measured in this run (or why there is none).
    pub reference: String,
    /// value / reference (or value / target where the target is the only
    /// yardstick), as the row's text explains.
    pub ratio: Option<f64>,
    pub met: Option<bool>,
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("ring-node") {
        return relay::ring_node(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("ring-hops") {
        return cost::ring_hops(&args[1..]);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let mut herd = env!("CARGO_BIN_EXE_herd").to_owned();
    let mut only: Option<Vec<String>> = None;
    let mut relay_nodes: Option<Vec<usize>> = None;
    let mut profiles: Option<std::path::PathBuf> = None;
    let mut armv6 = cost::ARMV6.to_owned();
    let mut aarch64 = cost::AARCH64.to_owned();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--herd" => herd = it.next().expect("--herd PATH").clone(),
            "--only" => {
                only = Some(it.next().expect("--only SECTIONS").split(',').map(str::to_owned).collect())
            }
            "--profiles" => profiles = Some(it.next().expect("--profiles DIR").into()),
            "--armv6" => armv6 = it.next().expect("--armv6 PATH").clone(),
            "--aarch64" => aarch64 = it.next().expect("--aarch64 PATH").clone(),
            "--relay-nodes" => {
                let list = it.next().expect("--relay-nodes N[,N]");
                relay_nodes = Some(list.split(',').map(|n| n.parse().expect("--relay-nodes N[,N]")).collect())
            }
            _ => {} // --quick, and cargo bench's --bench
        }
    }
    let setup = if quick {
        Setup {
            herd,
            quick,
            rounds: 1,
            window: Duration::from_secs(1),
            relay_nodes: vec![2],
            idle: Duration::from_secs(5),
            scale_nodes: vec![8],
            profiles: None,
            armv6: String::new(),
            aarch64: String::new(),
        }
    } else {
        Setup {
            herd,
            quick,
            rounds: 9,
            window: Duration::from_secs(1),
            relay_nodes: vec![2, 4, 8],
            idle: Duration::from_secs(60),
            scale_nodes: vec![8, 16, 32, 64],
            profiles: None,
            armv6: String::new(),
            aarch64: String::new(),
        }
    };
    let setup =
        Setup { relay_nodes: relay_nodes.unwrap_or(setup.relay_nodes), profiles, armv6, aarch64, ..setup };
    let wanted = |s: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == s));
    eprintln!("herd benchmark suite{}: {}", if quick { " (quick)" } else { "" }, setup.herd);
    let mut rows = Vec::new();
    if wanted("relay") {
        relay::run(&setup, &mut rows);
    }
    if wanted("footprint") {
        footprint::run(&setup, &mut rows);
    }
    if wanted("cost") {
        cost::run(&setup, &mut rows);
    }
    if wanted("failure") {
        failure::run(&setup, &mut rows);
    }
    if wanted("scale") {
        scale::run(&setup, &mut rows);
    }
    print_table(&rows);
}

fn print_table(rows: &[Row]) {
    let head = ["section", "figure", "value", "target", "reference (this run)", "ratio", "met"];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.section.to_owned(),
                r.figure.clone(),
                r.value.clone(),
                r.target.clone(),
                r.reference.clone(),
                r.ratio.map_or("-".into(), |x| format!("{x:.2}")),
                r.met.map_or("-".into(), |m| if m { "yes" } else { "NO" }.into()),
            ]
        })
        .collect();
    let width =
        |i: usize| cells.iter().map(|c| c[i].chars().count()).chain([head[i].len()]).max().unwrap_or(0);
    let widths: Vec<usize> = (0..head.len()).map(width).collect();
    let line = |c: &[&str]| {
        let cols: Vec<String> = c.iter().zip(&widths).map(|(s, w)| format!("{s:<w$}")).collect();
        println!("| {} |", cols.join(" | "));
    };
    println!();
    line(&head);
    println!("|{}|", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|"));
    for c in &cells {
        line(&c.iter().map(String::as_str).collect::<Vec<_>>());
    }
}
