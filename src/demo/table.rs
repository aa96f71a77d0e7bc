//! table: what the demo prints: one block per second (a header line, the
//! column titles, a row per node), drawn in place on a terminal, and the
//! summary line at the end. While the keys are on (`keys`), each row ends
//! with the node's status and the events area follows the table.

use std::io::Write;
use std::time::{Duration, Instant};

use super::cluster::Layout;
use super::events::Events;
use super::listener::Stats;

/// The table's column titles; numbers are right-aligned under them.
pub(super) const COLUMNS: [&str; 6] = ["node", "members", "passes/s", "counter", "temp°C", "rtt ms"];
/// The column added while the keys are on, left-aligned.
const STATUS: &str = "status";
/// Events shown under the table (the latest).
const EVENT_LINES: usize = 12;
/// The header's reminder while the keys are on.
const KEYS_HELP: &str = "keys: k kill the baton's holder, r restart the dead, p split/heal, q quit";

/// What the header line says about the run.
pub(super) struct Header {
    pub(super) cluster: String,
    pub(super) port: u16,
    pub(super) seconds: Option<Duration>,
    pub(super) tty: bool,
}

/// One table block: the header line, the column titles and a row per node,
/// each line ending in `\n`; with `keys` (they are on: the events and the
/// cluster's layout), a status column and the events area. Plain text; the
/// [`Screen`] adds any escapes.
pub(super) fn render(
    header: &Header,
    stats: &mut Stats,
    now: Instant,
    elapsed: Duration,
    keys: Option<(&Events, &Layout)>,
) -> String {
    let mut out = format!(
        "herd demo: cluster {}, gossip port {} on 127.0.0.1, {} s",
        header.cluster,
        header.port,
        elapsed.as_secs_f64().round()
    );
    if let Some(s) = header.seconds {
        out.push_str(&format!(" of {}", s.as_secs()));
    }
    match (keys, header.tty) {
        (Some(_), _) => out.push_str(&format!(" ({KEYS_HELP}; Ctrl-C stops)")),
        (None, true) => out.push_str(" (Ctrl-C stops)"),
        (None, false) => {}
    }
    out.push('\n');
    let mut rows = stats.rows(now);
    if let Some((_, layout)) = keys {
        // A dead node's last gauges are no longer the present.
        for (_, r) in rows.iter_mut().enumerate().filter(|(i, _)| !layout.is_live(*i)) {
            r[1] = "-".to_owned();
            r[5] = "-".to_owned();
        }
    }
    let widths: Vec<usize> = (0..COLUMNS.len())
        .map(|i| {
            rows.iter().map(|r| r[i].chars().count()).chain([COLUMNS[i].chars().count()]).max().unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 6], status: Option<&str>, out: &mut String| {
        let mut text = format!("{:<w$}", cells[0], w = widths[0]);
        for (cell, w) in cells.iter().zip(&widths).skip(1) {
            text.push_str(&format!("  {cell:>w$}"));
        }
        if let Some(status) = status {
            text.push_str(&format!("  {status}"));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(COLUMNS, keys.map(|_| STATUS), &mut out);
    for (i, r) in rows.iter().enumerate() {
        line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]], keys.map(|(_, l)| l.status(i)), &mut out);
    }
    if let Some((e, _)) = keys {
        out.push_str("\nevents:\n");
        let recent = e.recent(EVENT_LINES);
        if recent.is_empty() {
            out.push_str("  none yet: press a key\n");
        }
        for l in recent {
            out.push_str(&format!("  {l}\n"));
        }
    }
    out
}

/// stdout: on a terminal, each table replaces the previous one in place
/// (cursor home, each line cleared to its end, the rest of the screen
/// cleared); otherwise each table is printed as a plain block followed by a
/// blank line. Write errors are returned (stdout closed: the demo stops).
pub(super) struct Screen {
    pub(super) tty: bool,
    pub(super) drawn: bool,
}

impl Screen {
    pub(super) fn draw(&mut self, block: &str) -> std::io::Result<()> {
        let mut text = String::with_capacity(block.len() + 64);
        if self.tty {
            text.push_str(if self.drawn { "\x1b[H" } else { "\x1b[H\x1b[2J" });
            for line in block.lines() {
                text.push_str(line);
                text.push_str("\x1b[K\n");
            }
            text.push_str("\x1b[J");
        } else {
            text.push_str(block);
            text.push('\n');
        }
        self.drawn = true;
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()
    }

    /// A line after the tables (the summary). Best effort: stdout may be gone.
    pub(super) fn line(&mut self, line: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::words::node_names as names;

    #[test]
    fn renders_an_aligned_plain_table() {
        let mut s = Stats::new(&names(2));
        let t0 = Instant::now();
        s.ingest(
            b"baton:123456|g|#host:psa\nherd.members:2|g|#host:psa\nherd.baton.passes:9|c|#host:psa",
            t0,
        );
        let header = Header {
            cluster: "demo-7".into(),
            port: 23456,
            seconds: Some(Duration::from_secs(5)),
            tty: false,
        };
        let text = render(&header, &mut s, t0, Duration::from_millis(2004), None);
        assert_eq!(
            text,
            "herd demo: cluster demo-7, gossip port 23456 on 127.0.0.1, 2 s of 5\n\
             node  members  passes/s  counter  temp°C  rtt ms\n\
             psa         2         9   123456       -       -\n\
             psb         -         0        -       -       -\n"
        );
        assert!(!text.contains('\x1b'));
    }
}
