//! client: `herd status`, a blocking HTTP/1.0 GET of `/status`, printed as JSON or as a human view.

use super::*;

/// What `herd status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// This node: members, baton, sensors.
    Node,
    /// The raw JSON, pretty-printed (`--json`).
    Json,
    /// The whole cluster's health and the link matrix (`--cluster`).
    Cluster,
}

/// `herd status [--json | --cluster] [--addr A]`: GETs `http://A/status` (2 s
/// for the whole exchange) and returns the text to print as is (it ends with
/// a newline): the JSON as received, pretty-printed; the cluster view; or a
/// human view of the node (node, cluster, uptime, live members; the member
/// table; the baton; sensors).
/// `Err` carries one complete line for the operator, e.g. "no herd agent
/// answers at 127.0.0.1:45894 (is `herd run` running, and is `[status] listen`
/// set?): connection refused". Blocking.
pub fn client(addr: &str, view: View) -> anyhow::Result<String> {
    let addr = addr.trim().trim_start_matches("http://").trim_end_matches('/');
    let body = fetch(addr, Instant::now() + CLIENT_TIMEOUT)?;
    if view == View::Json {
        let text = std::str::from_utf8(&body)
            .ok()
            .filter(|t| serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok())
            .ok_or_else(|| anyhow!("the answer of {addr} is not JSON (is it a herd agent?)"))?;
        return Ok(pretty(text) + "\n");
    }
    let snapshot: Snapshot = serde_json::from_slice(&body)
        .map_err(|e| anyhow!("the answer of {addr} is not a herd status (another version?): {e}"))?;
    Ok(match view {
        View::Cluster if snapshot.health.is_empty() => bail!(
            "the agent at {addr} gossips no cluster health (it runs a herd release without the cluster view): upgrade it, or use `herd status`"
        ),
        View::Cluster => format::cluster_view(&snapshot),
        _ => human(&snapshot),
    })
}

/// The body of a successful `GET /status`, by `deadline`.
///
/// A plain HTTP/1.0 exchange over a blocking socket: the request asks for no
/// keep-alive and no chunked encoding, so the answer is the bytes up to the
/// server's close (checked against `Content-Length` when there is one). This
/// keeps a second HTTP stack (hyper's client) out of the agent's binary.
pub(super) fn fetch(addr: &str, deadline: Instant) -> anyhow::Result<Vec<u8>> {
    let not_running = |why: String| anyhow!("no herd agent answers at {addr} ({NOT_RUNNING_HINT}): {why}");
    let left = || deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    let targets: Vec<SocketAddr> = addr.to_socket_addrs().map_err(|e| not_running(reason(&e)))?.collect();
    let mut failure = None;
    let stream = targets.iter().find_map(|target| {
        std::net::TcpStream::connect_timeout(target, left()).map_err(|e| failure = Some(e)).ok()
    });
    let mut stream =
        stream.ok_or_else(|| not_running(failure.map_or("no address".into(), |e| reason(&e))))?;
    let request = format!(
        "GET /status HTTP/1.0\r\nHost: {addr}\r\nAccept: {JSON}\r\nUser-Agent: herd/{}\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    let timed_out = || {
        let within = humantime::format_duration(CLIENT_TIMEOUT);
        anyhow!("the agent at {addr} did not answer within {within}")
    };
    let mut answer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let exchange = (|| -> io::Result<()> {
        stream.set_write_timeout(Some(left()))?;
        stream.write_all(request.as_bytes())?;
        loop {
            stream.set_read_timeout(Some(left()))?;
            let n = stream.read(&mut chunk)?;
            if n == 0 || answer.len() > CLIENT_MAX_BODY {
                return Ok(());
            }
            answer.extend_from_slice(&chunk[..n]);
        }
    })();
    match exchange {
        Ok(()) => {}
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
            return Err(timed_out());
        }
        Err(e) => bail!("the agent at {addr} closed the connection without answering: {}", reason(&e)),
    }
    if answer.len() > CLIENT_MAX_BODY {
        bail!("the answer of {addr} is larger than {} MiB", CLIENT_MAX_BODY >> 20);
    }
    let (head, body) = split_answer(&answer)
        .ok_or_else(|| anyhow!("the agent at {addr} did not answer HTTP (is it a herd agent?)"))?;
    if let Some(length) = head.content_length
        && length != body.len()
    {
        bail!("the answer of {addr} was cut short ({} of {length} bytes)", body.len());
    }
    if !(200..300).contains(&head.code) {
        let text = String::from_utf8_lossy(body);
        bail!("the agent at {addr} answered {} {}: {}", head.code, head.reason, text.trim());
    }
    Ok(body.to_vec())
}

/// What `herd status` needs of a response head.
pub(super) struct Head {
    code: u16,
    reason: String,
    content_length: Option<usize>,
}

/// The head and body of an HTTP/1.x response; `None` if it is not one.
pub(super) fn split_answer(answer: &[u8]) -> Option<(Head, &[u8])> {
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&answer[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?;
    let rest = status.strip_prefix("HTTP/1.")?.get(2..)?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    let content_length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok());
    let head = Head { code: code.parse().ok()?, reason: reason.to_owned(), content_length };
    Some((head, &answer[end + 4..]))
}

/// Valid JSON re-indented by two spaces, keys and numbers left exactly as
/// they are (a `serde_json::Value` would sort the keys).
pub(super) fn pretty(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 2);
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n(' ', depth * 2));
    };
    let mut chars = json.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.next_if(|c| c.is_whitespace()).is_some() {}
                if matches!(chars.peek(), Some('}' | ']')) {
                    out.extend(chars.next());
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// "connection refused" rather than "Connection refused (os error 111)".
pub(super) fn reason(e: &io::Error) -> String {
    use io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused | ConnectionReset | ConnectionAborted | TimedOut | HostUnreachable
        | NetworkUnreachable | AddrNotAvailable => e.kind().to_string(),
        _ => e.to_string(),
    }
}

/// The human view of `herd status`.
pub(super) fn human(s: &Snapshot) -> String {
    let mut out = headline(s);
    out += &format!(
        "{} · cluster {} · up {} · {} live members\nincarnation {} · herd {}\n\n",
        s.node,
        s.cluster,
        uptime(s.uptime_s),
        s.live_members,
        s.incarnation,
        s.version
    );
    let mut rows = vec![["NODE", "STATE", "ADDR", "LAST HEARD", "RTT", "LOSS", "CLOCK"].map(String::from)];
    rows.push([s.node.clone(), "self".into(), "-".into(), "-".into(), "-".into(), "-".into(), "-".into()]);
    for m in &s.members {
        rows.push([
            m.name.clone(),
            m.state.clone(),
            m.addr.clone(),
            ago(m.last_heard_ms),
            num(m.rtt_ms, 3, " ms", "-"),
            num(m.loss_pct, 1, " %", "-"),
            clock_offset(m.clock_offset_ms),
        ]);
    }
    out.push_str(&columns(&rows));
    let mut block = |title: &str, rows: Vec<(String, String)>| {
        if rows.is_empty() {
            return;
        }
        let _ = write!(out, "\n{title}\n");
        let width = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
        for (k, v) in rows {
            let _ = writeln!(out, "  {k:<width$}  {v}");
        }
    };
    block("baton", baton_rows(s));
    let sensors = sensor_rows(s);
    if sensors.is_empty() {
        block("sensors", vec![("-".into(), "no sensor reading yet".into())]);
    } else {
        block("sensors", sensors);
    }
    block("rejected datagrams", rejected_rows(s));
    let mut config = vec![(
        "file".to_owned(),
        match &s.config_file {
            Some(f) => format!("{f} (loaded {})", s.config_loaded),
            None => "built-in defaults".to_owned(),
        },
    )];
    if !s.keys.is_empty() {
        config.push(("keys".to_owned(), format!("{} (the first seals)", s.keys.join(", "))));
    }
    block("config", config);
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

/// Left-aligned columns two spaces apart, one line per row.
pub(super) fn columns<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(widths) {
            let _ = write!(line, "{cell:<w$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
