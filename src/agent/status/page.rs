//! page: the self-contained HTML page of `GET /` (inline CSS, SVG and JS, no external assets):
//! a banner when other nodes use this node's name, the cluster view (`cluster`), then this
//! node's members, baton and sensors. Rendered complete on the server; its script swaps in the
//! same markup from `GET /app` every second, so there is one renderer (this one), and the page
//! reads the same with or without script.

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
    if let Some((headline, fix)) = name_conflict(s) {
        let _ = write!(
            h,
            "<section id=\"conflict\" class=\"banner\" role=\"alert\"><p><b>{}</b></p><p>{}</p></section>",
            esc(&headline),
            esc(&fix)
        );
    }
    if let Some(why) = s.network.waiting() {
        let _ = write!(
            h,
            "<section id=\"network\" class=\"banner\" role=\"alert\"><p><b>Waiting for a network</b> for {}: {}.</p>\
             <p>herd keeps running and joins the cluster as soon as there is one.</p></section>",
            ago(s.network.since_ms),
            esc(why)
        );
    }
    h.push_str(&super::cluster::view(s));
    h.push_str(
        "<h2>This node's members</h2><table id=\"members\"><thead><tr><th>node</th><th>state</th><th>address</th>\
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
footer{margin-top:2rem;font-size:.85rem}#live.err{color:var(--bad)}\
.banner{border:2px solid var(--bad);border-radius:.5rem;padding:.2rem 1rem;margin:1rem 0;color:var(--bad)}\
#cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(11rem,1fr));gap:.6rem}\
.card{border:1px solid var(--line);border-radius:.5rem;padding:.5rem .7rem}\
.card header{display:flex;justify-content:space-between;gap:.4rem}.card .temp{font-size:1.6rem;margin:.2rem 0}\
.card.alarm{border-color:var(--bad)}.card.s-down,.card.s-left{opacity:.6}.card dl{font-size:.85rem}\
.card dd{min-width:0;overflow-wrap:anywhere}\
.scroll{overflow-x:auto}#matrix td,#matrix th{text-align:center;font-size:.85rem;white-space:nowrap}\
#matrix td.self{color:var(--muted)}\
.chart{margin:.5rem 0 1rem}.chart svg{width:100%;height:auto;display:block;border:1px solid var(--line)}\
.chart .axis{stroke:var(--line)}.legend{margin:.2rem 0;font-size:.85rem}\
.legend span{margin-right:.9rem;white-space:nowrap}.legend i{display:inline-block;width:.8rem;height:.8rem;\
margin-right:.3rem;border-radius:2px;vertical-align:-.1rem}\
@media (max-width:30rem){body{padding:.8rem}}";

/// Swaps in `#app` from `/app` (the same markup as [`app`]) every second;
/// on failure keeps the last view and says so in the footer.
const SCRIPT: &str = r#"
"use strict";
const live = document.getElementById("live");
async function refresh() {
  try {
    const r = await fetch("/app", { cache: "no-store" });
    if (!r.ok) throw new Error(r.status + " " + r.statusText);
    document.getElementById("app").innerHTML = await r.text();
    const node = document.querySelector("header .node");
    if (node) document.title = "herd · " + node.textContent;
    live.textContent = "live · updated " + new Date().toLocaleTimeString();
    live.dataset.source = "live";
    live.className = "";
  } catch (e) {
    live.textContent = "agent not answering (" + e.message + "); showing the last view";
    live.dataset.source = "error";
    live.className = "err";
  }
}
setInterval(refresh, 1000);
refresh();
"#;
