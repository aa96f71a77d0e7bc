//! page: the self-contained HTML page of `GET /` (inline CSS and JS, no external assets), rendered
//! complete on the server and refreshed by its script from `/status`.

use super::*;

/// The page: the server renders the same markup the script renders, so it is
/// complete before (or without) the first refresh.
pub(super) fn page(s: &Snapshot) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <link rel=\"icon\" href=\"data:,\"><title>herd · {node}</title>\n<style>{STYLE}</style></head>\n\
         <body><main id=\"app\">{app}</main>\n\
         <footer><span id=\"live\" data-source=\"server\">rendered by the agent; refreshing every second</span></footer>\n\
         <script>{SCRIPT}</script></body></html>\n",
        node = esc(&s.node),
        app = app(s),
    )
}

/// The part of the page the script replaces at every refresh.
pub(super) fn app(s: &Snapshot) -> String {
    let mut h = format!(
        "<header><h1>herd · <span class=\"node\">{}</span></h1><p class=\"muted\">cluster <b>{}</b> · up {} · \
         <b>{}</b> live members · incarnation {} · {}</p></header>",
        esc(&s.node),
        esc(&s.cluster),
        uptime(s.uptime_s),
        s.live_members,
        s.incarnation,
        esc(&s.version)
    );
    h.push_str(
        "<h2>Members</h2><table id=\"members\"><thead><tr><th>node</th><th>state</th><th>address</th>\
         <th class=\"n\">last heard</th><th class=\"n\">RTT</th><th class=\"n\">loss</th>\
         <th class=\"n\">clock</th></tr></thead><tbody>",
    );
    h.push_str(&member_row(&s.node, "self", "—", "—", "—", "—", "—"));
    for m in &s.members {
        let clock = match m.clock_offset_ms {
            None => "—".to_owned(),
            offset => clock_offset(offset),
        };
        h.push_str(&member_row(
            &m.name,
            &m.state,
            &m.addr,
            &ago(m.last_heard_ms),
            &num(m.rtt_ms, 3, " ms", "—"),
            &num(m.loss_pct, 1, " %", "—"),
            &clock,
        ));
    }
    h.push_str("</tbody></table>");
    h.push_str(&section("Baton", "baton", &baton_rows(s)));
    let sensors = sensor_rows(s);
    if sensors.is_empty() {
        h.push_str("<h2>Sensors</h2><p id=\"sensors\" class=\"muted\">no sensor reading yet</p>");
    } else {
        h.push_str(&section("Sensors", "sensors", &sensors));
    }
    let rejected = rejected_rows(s);
    if !rejected.is_empty() {
        h.push_str(&section("Rejected datagrams", "rejected", &rejected));
    }
    h
}

pub(super) fn member_row(
    name: &str,
    state: &str,
    addr: &str,
    heard: &str,
    rtt: &str,
    loss: &str,
    clock: &str,
) -> String {
    let class = if state == "self" { "alive" } else { state };
    format!(
        "<tr data-member=\"{n}\"><td>{n}</td><td class=\"state {}\">{}</td><td>{}</td><td class=\"n\">{}</td>\
         <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
        esc(class),
        esc(state),
        esc(addr),
        esc(heard),
        esc(rtt),
        esc(loss),
        esc(clock),
        n = esc(name),
    )
}

pub(super) fn section(title: &str, id: &str, rows: &[(String, String)]) -> String {
    let mut h = format!("<h2>{title}</h2><dl id=\"{id}\">");
    for (k, v) in rows {
        let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
    }
    h.push_str("</dl>");
    h
}

/// Text and attribute values escaped for HTML (as the script's `E`).
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&#38;"),
            '<' => out.push_str("&#60;"),
            '>' => out.push_str("&#62;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "\
:root{color-scheme:light dark;--fg:#1d232a;--muted:#69727d;--bg:#fbfbfa;--line:#dfe2e6;\
--ok:#1f8a4c;--warn:#b7791f;--bad:#c53030}\
@media (prefers-color-scheme:dark){:root{--fg:#e6e8eb;--muted:#9aa3ad;--bg:#14171a;--line:#2c3137}}\
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:1.5rem;\
background:var(--bg);color:var(--fg)}\
h1{font-size:1.4rem;margin:0}h2{font-size:1rem;margin:1.5rem 0 .4rem}.muted,dt,footer{color:var(--muted)}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .6rem;\
border-bottom:1px solid var(--line)}th{font-weight:600}.n{text-align:right;font-variant-numeric:tabular-nums}\
.state{font-weight:600}.alive{color:var(--ok)}.suspect{color:var(--warn)}.down,.left{color:var(--bad)}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1.2rem;margin:0}dd{margin:0}\
footer{margin-top:2rem;font-size:.85rem}#live.err{color:var(--bad)}";

/// Re-renders `#app` from `/status` every second with the same markup as
/// [`app`]; on failure keeps the last view and says so in the footer.
const SCRIPT: &str = r#"
"use strict";
const E = s => String(s).replace(/[&<>"']/g, c => "&#" + c.charCodeAt(0) + ";");
const D = "\u2014";
const num = (v, d, u, none) => v == null ? none : v.toFixed(d) + u;
const ago = ms => ms < 1000 ? ms + " ms" : (ms / 1000).toFixed(1) + " s";
function uptime(t) {
  const s = Math.max(0, Math.floor(t)), p = n => String(n).padStart(2, "0");
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60), x = s % 60;
  return d ? d + "d " + p(h) + "h" : h ? h + "h " + p(m) + "m" : m ? m + "m " + p(x) + "s" : x + "s";
}
function row(name, state, addr, heard, rtt, loss, clock) {
  const cls = state === "self" ? "alive" : state;
  return '<tr data-member="' + E(name) + '"><td>' + E(name) + '</td><td class="state ' + E(cls) + '">' +
    E(state) + "</td><td>" + E(addr) + '</td><td class="n">' + E(heard) + '</td><td class="n">' + E(rtt) +
    '</td><td class="n">' + E(loss) + '</td><td class="n">' + E(clock) + "</td></tr>";
}
function offset(ms) {
  if (ms == null) return D;
  const sign = ms < 0 || Object.is(ms, -0) ? "-" : "+";
  if (Math.abs(ms) > 1000) return sign + (Math.abs(ms) / 1000).toFixed(2) + " s (off!)";
  return sign + Math.abs(ms).toFixed(1) + " ms";
}
function section(title, id, rows) {
  return "<h2>" + title + '</h2><dl id="' + id + '">' +
    rows.map(([k, v]) => "<dt>" + E(k) + "</dt><dd>" + E(v) + "</dd>").join("") + "</dl>";
}
function render(s) {
  let h = '<header><h1>herd · <span class="node">' + E(s.node) + '</span></h1><p class="muted">cluster <b>' +
    E(s.cluster) + "</b> · up " + uptime(s.uptime_s) + " · <b>" + s.live_members + "</b> live members · incarnation " +
    s.incarnation + " · " + E(s.version) + "</p></header>";
  h += '<h2>Members</h2><table id="members"><thead><tr><th>node</th><th>state</th><th>address</th>' +
    '<th class="n">last heard</th><th class="n">RTT</th><th class="n">loss</th><th class="n">clock</th></tr></thead><tbody>';
  h += row(s.node, "self", D, D, D, D, D);
  for (const m of s.members) {
    h += row(m.name, m.state, m.addr, ago(m.last_heard_ms), num(m.rtt_ms, 3, " ms", D), num(m.loss_pct, 1, " %", D),
             offset(m.clock_offset_ms));
  }
  h += "</tbody></table>";
  const b = s.baton, baton = [];
  if (!b.enabled) baton.push(["relay", "disabled on this node"]);
  baton.push(["epoch", b.epoch == null ? "no baton seen yet" : b.epoch]);
  baton.push(["counter", b.counter]);
  baton.push(["holder", b.holder == null ? "unknown" : b.holding ? b.holder + " (this node)" : b.holder]);
  baton.push(["passes", b.passes + " by this node, " + b.regenerated + " regenerated"]);
  h += section("Baton", "baton", baton);
  const t = s.sensors, sensors = Object.entries(t.temperatures).map(([k, c]) => [k, c.toFixed(1) + " °C"]);
  for (const [k, v, d, u] of [["CPU frequency", t.cpu_freq_mhz, 0, " MHz"], ["CPU usage", t.cpu_usage_pct, 1, " %"],
                              ["load (1 min)", t.load_1, 2, ""], ["memory used", t.mem_used_pct, 1, " %"]]) {
    if (v != null) sensors.push([k, num(v, d, u, "")]);
  }
  if (t.throttle) {
    const set = Object.keys(t.throttle).filter(f => t.throttle[f]);
    sensors.push(["throttle", set.length ? set.join(", ") : "none"]);
  }
  for (const [k, rpm] of Object.entries(t.fans || {})) sensors.push(["fan " + k, rpm.toFixed(0) + " rpm"]);
  if (t.net) {
    const n = t.net;
    let line = n.interface + " " + (n.up ? "up" : "down") + " · rx errors " + n.rx_errors + " · tx errors " + n.tx_errors;
    if (n.wifi_signal_dbm != null) line += " · Wi-Fi " + n.wifi_signal_dbm.toFixed(0) + " dBm";
    if (n.speed_mbps != null) {
      line += " · " + n.speed_mbps.toFixed(0) + " Mbit/s" +
        (n.full_duplex === true ? " full duplex" : n.full_duplex === false ? " half duplex" : "");
    }
    if (n.carrier_changes != null) line += " · " + n.carrier_changes + " carrier changes";
    if (n.rx_dropped != null) line += " · " + n.rx_dropped + " rx dropped";
    sensors.push(["net", line]);
  }
  if (t.clock_synced != null) {
    sensors.push(["clock", (t.clock_synced ? "synchronised" : "NOT synchronised") + " · " +
                  num(t.clock_error_ms, 1, " ms estimated error", "")]);
  }
  if (t.root_used_pct != null || t.root_readonly != null) {
    const used = num(t.root_used_pct, 1, " % used", "");
    const mode = t.root_readonly === true ? " · READ-ONLY" : t.root_readonly === false ? " · read-write" : "";
    sensors.push(["root fs", (used + mode).replace(/^ · /, "")]);
  }
  if (t.system_uptime_s != null) sensors.push(["booted", uptime(t.system_uptime_s) + " ago"]);
  h += sensors.length ? section("Sensors", "sensors", sensors)
                      : '<h2>Sensors</h2><p id="sensors" class="muted">no sensor reading yet</p>';
  const rejected = Object.entries(s.rejected).filter(([, n]) => n > 0);
  if (rejected.length) h += section("Rejected datagrams", "rejected", rejected);
  return h;
}
const live = document.getElementById("live");
async function refresh() {
  try {
    const r = await fetch("/status", { cache: "no-store" });
    if (!r.ok) throw new Error(r.status + " " + r.statusText);
    const s = await r.json();
    document.getElementById("app").innerHTML = render(s);
    document.title = "herd · " + s.node;
    live.textContent = "live · updated " + new Date().toLocaleTimeString();
    live.dataset.source = "live";
    live.className = "";
  } catch (e) {
    live.textContent = "agent not answering (" + e.message + "); showing the last view";
    live.dataset.source = "error";
    live.className = "err";
  }
}
refresh();
setInterval(refresh, 1000);
"#;
