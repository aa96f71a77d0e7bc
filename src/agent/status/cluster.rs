//! cluster: the cluster view at the top of the page: a card per node (its
//! gossiped health and state), the link matrix as a heat map, and inline SVG
//! charts of the last 15 minutes (`agent::history`). Server-rendered HTML
//! and SVG only: nothing external, no script needed to read it.

use super::*;
use crate::agent::history::History;
use crate::agent::snapshot::MemberHealth;

/// Loss above this paints a link red (the monitors' threshold).
const LOSSY: f64 = format::LOSSY_PCT;
/// Colours of the temperature lines, in node order (then again).
const PALETTE: [&str; 8] =
    ["#2b6cb0", "#c05621", "#2f855a", "#9b2c2c", "#6b46c1", "#b7791f", "#2c7a7b", "#97266d"];

/// The cards, the heat map and the charts.
pub(super) fn view(s: &Snapshot) -> String {
    let mut h = String::from("<h2>Cluster</h2>");
    if s.health.is_empty() {
        h.push_str("<p class=\"muted\">no health gossiped yet</p>");
    } else {
        h.push_str("<section id=\"cards\">");
        for m in &s.health {
            h.push_str(&card(m, m.name == s.node));
        }
        h.push_str("</section>");
    }
    h.push_str(&matrix(s));
    h.push_str(&charts(s.history.as_ref()));
    h
}

fn card(m: &MemberHealth, me: bool) -> String {
    let hot = m.temp_c.is_some_and(|t| t >= 80.0);
    let throttled = m.throttle.as_ref().is_some_and(|f| !f.is_empty());
    let alarm = hot || throttled || m.root_readonly == Some(true);
    let class = format!("card s-{}{}", esc(&m.state), if alarm { " alarm" } else { "" });
    let mut h = format!(
        "<article class=\"{class}\" data-node=\"{n}\" data-state=\"{st}\"{temp}><header><b>{n}</b>{me}\
         <span class=\"state {st}\">{st}</span></header><p class=\"temp\">{t}</p><dl>",
        n = esc(&m.name),
        st = esc(&m.state),
        temp = m.temp_c.map_or(String::new(), |t| format!(" data-temp=\"{t:.1}\"")),
        me = if me { " <span class=\"muted\">(this)</span>" } else { "" },
        t = num(m.temp_c, 1, " °C", "—"),
    );
    let throttle = match &m.throttle {
        None => "—".to_owned(),
        Some(f) if f.is_empty() => "ok".to_owned(),
        Some(f) => f.join(", "),
    };
    let mut rows = vec![
        ("throttle", throttle),
        ("load", num(m.load_1, 2, "", "—")),
        ("memory", num(m.mem_used_pct, 0, " %", "—")),
    ];
    if let Some(rpm) = m.fan_rpm {
        rows.push(("fan", format!("{rpm} rpm")));
    }
    if m.root_readonly == Some(true) {
        rows.push(("root fs", "READ-ONLY".into()));
    }
    if m.clock_synced == Some(false) {
        rows.push(("clock", "not synchronised".into()));
    }
    rows.push(("version", m.version.clone().unwrap_or_else(|| "—".into())));
    rows.push(("up", m.uptime_s.map_or("—".into(), |u| uptime(u as f64))));
    let heard = match m.age_ms {
        None => "no health heard".to_owned(),
        Some(0) => "now".to_owned(),
        Some(a) => format!("{} ago", ago(a)),
    };
    rows.push(("heard", heard));
    for (k, v) in rows {
        let _ = write!(h, "<dt>{k}</dt><dd>{}</dd>", esc(&v));
    }
    h.push_str("</dl></article>");
    h
}

/// The N×N matrix (row: from, column: to), each cell coloured by RTT on a
/// log scale (green under 1 ms, red from 100 ms) and red above [`LOSSY`] loss.
fn matrix(s: &Snapshot) -> String {
    let names: Vec<&str> = s.health.iter().map(|m| m.name.as_str()).collect();
    if names.len() < 2 {
        return String::new();
    }
    let mut h = String::from(
        "<h2>Links</h2><p class=\"muted\">RTT and loss, as each row's node measured its link to each \
         column's: green under 1 ms, red from 100 ms or above 5 % loss</p><div class=\"scroll\">\
         <table id=\"matrix\"><thead><tr><th>from \\ to</th>",
    );
    for n in &names {
        let _ = write!(h, "<th>{}</th>", esc(n));
    }
    h.push_str("</tr></thead><tbody>");
    for from in &names {
        let _ = write!(h, "<tr><th>{}</th>", esc(from));
        for to in &names {
            let attrs = format!("data-from=\"{}\" data-to=\"{}\"", esc(from), esc(to));
            match s.links.get(*from).and_then(|r| r.get(*to)) {
                _ if from == to => {
                    let _ = write!(h, "<td class=\"self\" {attrs}>·</td>");
                }
                None => {
                    let _ = write!(h, "<td class=\"none\" {attrs}>—</td>");
                }
                Some(c) => {
                    let _ = write!(
                        h,
                        "<td {attrs} data-rtt=\"{}\" data-loss=\"{:.0}\" style=\"background:{}\">{}<br>{:.0} %</td>",
                        c.rtt_ms.map_or(String::new(), |r| format!("{r:.2}")),
                        c.loss_pct,
                        heat(c.rtt_ms, c.loss_pct),
                        num(c.rtt_ms, 2, " ms", "—"),
                        c.loss_pct,
                    );
                }
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table></div>");
    h
}

/// The cell's colour: a hue from green (120) to red (0).
fn heat(rtt_ms: Option<f64>, loss_pct: f64) -> String {
    let hue = match rtt_ms {
        _ if loss_pct > LOSSY => 0.0,
        None => 0.0,
        // log10(rtt): 0 at 1 ms, 2 at 100 ms.
        Some(r) => 120.0 * (1.0 - (r.max(1e-3).log10() / 2.0).clamp(0.0, 1.0)),
    };
    format!("hsl({hue:.0} 70% 50% / .35)")
}

/// The three charts, or a note while there is nothing to draw.
fn charts(history: Option<&History>) -> String {
    let mut h = String::from("<h2>Last 15 minutes</h2>");
    let Some(hist) = history.filter(|h| h.samples.len() >= 2) else {
        h.push_str("<p class=\"muted\" id=\"charts\">the charts start after two samples (10 s)</p>");
        return h;
    };
    let times: Vec<f64> = hist.samples.iter().map(|s| f64::from(s.t_s)).collect();
    let passes: Vec<Option<f64>> =
        hist.samples.iter().map(|s| Some(f64::from(s.passes_per_s)).filter(|v| v.is_finite())).collect();
    let members: Vec<Option<f64>> = hist.samples.iter().map(|s| Some(f64::from(s.members))).collect();
    h.push_str("<div id=\"charts\">");
    h.push_str(&chart("passes", "baton passes/s (cluster)", &times, &[("", PALETTE[0], passes)], 0, true));
    let temps: Vec<(&str, &str, Vec<Option<f64>>)> = hist
        .nodes
        .iter()
        .enumerate()
        .map(|(i, name)| (name.as_str(), PALETTE[i % PALETTE.len()], hist.temps(i).collect()))
        .collect();
    h.push_str(&chart("temps", "temperature °C", &times, &temps, 1, false));
    h.push_str(&chart("members", "live members", &times, &[("", PALETTE[2], members)], 0, true));
    h.push_str("</div>");
    h
}

const W: f64 = 600.0;
const H: f64 = 150.0;
const PAD: f64 = 4.0;

/// One chart: a polyline per series over the samples' times (gaps where a
/// value is missing), the value range in the caption, and a legend of the
/// named series. The scale starts at zero when `from_zero`, else just below
/// the lowest value (temperatures).
fn chart(
    id: &str,
    title: &str,
    times: &[f64],
    series: &[(&str, &str, Vec<Option<f64>>)],
    decimals: usize,
    from_zero: bool,
) -> String {
    let values = series.iter().flat_map(|(_, _, v)| v.iter().flatten().copied());
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = match (lo.is_finite(), from_zero) {
        (false, _) => (0.0, 1.0),
        (true, true) => (lo.min(0.0), hi.max(lo.min(0.0) + 1.0)),
        (true, false) => (lo.floor() - 1.0, hi.ceil() + 1.0),
    };
    let (t0, t1) = (times.first().copied().unwrap_or(0.0), times.last().copied().unwrap_or(1.0));
    let t0 = t0.min(t1 - 1.0);
    let x = |t: f64| PAD + (t - t0) / (t1 - t0) * (W - 2.0 * PAD);
    let y = |v: f64| H - PAD - (v - lo) / (hi - lo) * (H - 2.0 * PAD);
    let mut h = format!(
        "<figure class=\"chart\" id=\"chart-{id}\"><figcaption>{title} <span class=\"muted\">{lo:.d$} – {hi:.d$}, \
         over {span}</span></figcaption><svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{title}\">\
         <line class=\"axis\" x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\"/>",
        d = decimals,
        span = uptime(t1 - t0),
        b = H - PAD,
        r = W - PAD,
    );
    for (name, colour, vals) in series {
        // Consecutive known values make one polyline each.
        let mut runs: Vec<Vec<String>> = vec![Vec::new()];
        for (t, v) in times.iter().zip(vals) {
            match v {
                Some(v) => runs.last_mut().expect("one run").push(format!("{:.1},{:.1}", x(*t), y(*v))),
                None if runs.last().is_some_and(|r| !r.is_empty()) => runs.push(Vec::new()),
                None => {}
            }
        }
        for run in runs.iter().filter(|r| !r.is_empty()) {
            let _ = write!(
                h,
                "<polyline data-series=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
                esc(name),
                run.join(" ")
            );
        }
    }
    h.push_str("</svg>");
    let named: Vec<_> = series.iter().filter(|(n, _, _)| !n.is_empty()).collect();
    if !named.is_empty() {
        h.push_str("<p class=\"legend\">");
        for (name, colour, vals) in named {
            let last = vals.iter().rev().flatten().next().copied();
            let _ = write!(
                h,
                "<span><i style=\"background:{colour}\"></i>{} {}</span>",
                esc(name),
                num(last, decimals, "", "—")
            );
        }
        h.push_str("</p>");
    }
    h.push_str("</figure>");
    h
}
