//! messages: every message kind's payload, after the envelope: its kind
//! byte, then its fields. Each kind's encoding sits beside its decoding (a
//! pair of functions; a line each in [`encode`] and [`decode`] for leave
//! and ping), so a change to one shows what the other must do. The heartbeat,
//! with its extensions, has its own file (`heartbeat`). A pass's [`Lap`] is
//! here too: it keeps its names in their wire form.

use std::sync::Arc;

use super::{
    BatonId, MAX_NAME, MAX_NEWS, Message, News, PassAck, PassVerdict, Reader, Rumor, WireError, heartbeat,
    put_id, put_str,
};

const KIND_HEARTBEAT: u8 = 1;
const KIND_LEAVE: u8 = 2;
const KIND_PING: u8 = 3;
const KIND_ACK: u8 = 4;
const KIND_PASS: u8 = 5;
const KIND_PASS_ACK: u8 = 6;
const KIND_PING_REQ: u8 = 7;
const KIND_INDIRECT_ACK: u8 = 8;
const KIND_NEWS: u8 = 9;

/// Writes `msg` as wire `version` has it: its kind, then its payload.
pub(super) fn encode(msg: &Message<'_>, version: u8, out: &mut Vec<u8>) {
    match msg {
        Message::Heartbeat(hb) => {
            out.push(KIND_HEARTBEAT);
            heartbeat::encode(hb, version, out);
        }
        Message::Leave => out.push(KIND_LEAVE),
        Message::Ping { token } => {
            out.push(KIND_PING);
            out.extend_from_slice(&token.to_be_bytes());
        }
        Message::Ack { token, wall_us } => encode_ack(*token, *wall_us, version, out),
        Message::Pass { id, counter, lap } => encode_pass(*id, *counter, lap, out),
        Message::PassAck(ack) => encode_pass_ack(ack, version, out),
        Message::PingReq { token, target, incarnation } => encode_ping_req(*token, target, *incarnation, out),
        Message::IndirectAck { token, answered } => encode_indirect_ack(*token, *answered, out),
        Message::News(items) => encode_news(items, out),
    }
}

/// Reads one message of wire `version`: the kinds that version lacks are
/// unknown to it.
pub(super) fn decode<'a>(r: &mut Reader<'a>, version: u8) -> Result<Message<'a>, WireError> {
    let kind = r.u8("message kind")?;
    Ok(match kind {
        KIND_HEARTBEAT => Message::Heartbeat(heartbeat::decode(r, version)?),
        KIND_LEAVE => Message::Leave,
        KIND_PING => Message::Ping { token: r.u64("ping token")? },
        KIND_ACK => decode_ack(r, version)?,
        KIND_PASS => decode_pass(r)?,
        KIND_PASS_ACK => Message::PassAck(decode_pass_ack(r, version)?),
        KIND_PING_REQ if version >= 3 => decode_ping_req(r)?,
        KIND_INDIRECT_ACK if version >= 3 => decode_indirect_ack(r)?,
        KIND_NEWS if version >= 3 => Message::News(decode_news(r)?),
        other => return Err(WireError::UnknownKind(other)),
    })
}

/// An ack's wall clock when the responder has none.
const NO_WALL: i64 = i64::MIN;

/// `token u64 | wall_us i64` (version 3 on; [`NO_WALL`] for none).
fn encode_ack(token: u64, wall_us: Option<i64>, version: u8, out: &mut Vec<u8>) {
    out.push(KIND_ACK);
    out.extend_from_slice(&token.to_be_bytes());
    if version >= 3 {
        out.extend_from_slice(&wall_us.unwrap_or(NO_WALL).to_be_bytes());
    }
}

fn decode_ack<'a>(r: &mut Reader<'a>, version: u8) -> Result<Message<'a>, WireError> {
    let token = r.u64("ack token")?;
    let wall_us =
        if version >= 3 { Some(r.u64("ack wall clock")? as i64).filter(|w| *w != NO_WALL) } else { None };
    Ok(Message::Ack { token, wall_us })
}

/// `id | counter u64 | count u8 | names str8...`
fn encode_pass(id: BatonId, counter: u64, lap: &Lap, out: &mut Vec<u8>) {
    out.push(KIND_PASS);
    put_id(out, id);
    out.extend_from_slice(&counter.to_be_bytes());
    // At most MAX_LAP names: a Lap holds no more.
    out.push(lap.len() as u8);
    out.extend_from_slice(lap.encoded());
}

fn decode_pass<'a>(r: &mut Reader<'a>) -> Result<Message<'a>, WireError> {
    let id = r.id()?;
    let counter = r.u64("baton counter")?;
    let n = r.u8("lap length")? as usize;
    if n > MAX_LAP || n > r.0.len() {
        return Err(WireError::Malformed("lap length"));
    }
    let names = r.0;
    for _ in 0..n {
        r.str_bytes("lap name")?;
    }
    // A length byte is ASCII (a name is at most 63 bytes), so every name is
    // valid UTF-8 exactly when the names with their lengths are: one check.
    let names = std::str::from_utf8(&names[..names.len() - r.0.len()])
        .map_err(|_| WireError::Malformed("lap name"))?;
    Ok(Message::Pass { id, counter, lap: Lap { buf: names.into(), at: 0, end: names.len() } })
}

/// `[id, before version 4] | counter u64 | verdict u8 | delay_us u32`. An
/// ack without its baton's id (one read in version 4) is written in version
/// 3 with a zero id; a node never sends one so: it acks the passes it read.
fn encode_pass_ack(ack: &PassAck, version: u8, out: &mut Vec<u8>) {
    out.push(KIND_PASS_ACK);
    if version < 4 {
        put_id(out, ack.id.unwrap_or(BatonId { epoch: 0, origin: 0 }));
    }
    out.extend_from_slice(&ack.counter.to_be_bytes());
    out.push(match ack.verdict {
        PassVerdict::Taken => 0,
        PassVerdict::Stale => 1,
        PassVerdict::Refused => 2,
    });
    out.extend_from_slice(&ack.delay_us.to_be_bytes());
}

fn decode_pass_ack(r: &mut Reader<'_>, version: u8) -> Result<PassAck, WireError> {
    let id = if version < 4 { Some(r.id()?) } else { None };
    let counter = r.u64("baton counter")?;
    let verdict = match r.u8("pass verdict")? {
        0 => PassVerdict::Taken,
        1 => PassVerdict::Stale,
        2 => PassVerdict::Refused,
        _ => return Err(WireError::Malformed("pass verdict")),
    };
    let delay_us = r.u32("ack delay")?;
    Ok(PassAck { id, counter, verdict, delay_us })
}

/// `token u64 | target str8 | incarnation u64`
fn encode_ping_req(token: u64, target: &str, incarnation: u64, out: &mut Vec<u8>) {
    out.push(KIND_PING_REQ);
    out.extend_from_slice(&token.to_be_bytes());
    put_str(out, target);
    out.extend_from_slice(&incarnation.to_be_bytes());
}

fn decode_ping_req<'a>(r: &mut Reader<'a>) -> Result<Message<'a>, WireError> {
    Ok(Message::PingReq {
        token: r.u64("ping request token")?,
        target: r.str("ping request target")?,
        incarnation: r.u64("ping request incarnation")?,
    })
}

/// `token u64 | answered u8`
fn encode_indirect_ack(token: u64, answered: bool, out: &mut Vec<u8>) {
    out.push(KIND_INDIRECT_ACK);
    out.extend_from_slice(&token.to_be_bytes());
    out.push(u8::from(answered));
}

fn decode_indirect_ack<'a>(r: &mut Reader<'a>) -> Result<Message<'a>, WireError> {
    let token = r.u64("indirect ack token")?;
    let answered = match r.u8("indirect ack verdict")? {
        0 => false,
        1 => true,
        _ => return Err(WireError::Malformed("indirect ack verdict")),
    };
    Ok(Message::IndirectAck { token, answered })
}

/// `count u8 | items`, each `name str8 | incarnation u64 | rumor u8 |
/// silent_ms u32`; at most [`MAX_NEWS`] items (more are cut).
fn encode_news(items: &[News<'_>], out: &mut Vec<u8>) {
    out.push(KIND_NEWS);
    let n = items.len().min(MAX_NEWS);
    out.push(n as u8);
    for item in &items[..n] {
        put_str(out, item.name);
        out.extend_from_slice(&item.incarnation.to_be_bytes());
        out.push(match item.rumor {
            Rumor::Suspect => 1,
            Rumor::Down => 2,
            Rumor::Alive => 3,
        });
        out.extend_from_slice(&item.silent_ms.to_be_bytes());
    }
}

fn decode_news<'a>(r: &mut Reader<'a>) -> Result<Vec<News<'a>>, WireError> {
    let n = r.u8("news count")? as usize;
    // Each item is at least 14 bytes.
    if n > MAX_NEWS || n * 14 > r.0.len() {
        return Err(WireError::Malformed("news count"));
    }
    let mut items = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.str("news name")?;
        if name.is_empty() {
            return Err(WireError::Malformed("news name"));
        }
        let incarnation = r.u64("news incarnation")?;
        let rumor = match r.u8("news kind")? {
            1 => Rumor::Suspect,
            2 => Rumor::Down,
            3 => Rumor::Alive,
            _ => return Err(WireError::Malformed("news kind")),
        };
        let silent_ms = r.u32("news silence")?;
        items.push(News { name, incarnation, rumor, silent_ms });
    }
    Ok(items)
}

/// Encoded size of one news item, for callers that fill a datagram.
pub fn news_len(name: &str) -> usize {
    1 + name.len().min(u8::MAX as usize) + 8 + 1 + 4
}

/// Most names a pass carries; a bigger cluster's lap is cut to this (the rest
/// of its members are met in later laps).
pub const MAX_LAP: usize = 64;

/// The names left in a baton's lap, kept in their wire form (each a `str8`)
/// in a shared buffer: a pass is decoded with one allocation, and taking,
/// popping and forwarding it copies no name (copies that were 7 % of an
/// agent's instructions per pass at full speed). Every name is valid UTF-8
/// of at most [`MAX_NAME`] bytes, and there are at most [`MAX_LAP`]: checked
/// when decoded, enforced when built. A length byte is then ASCII, so the
/// buffer is a `str` and a name is a slice of it, checked once.
#[derive(Clone)]
pub struct Lap {
    buf: Arc<str>,
    /// The remaining names are `buf[at..end]`.
    at: usize,
    end: usize,
}

impl Lap {
    /// A lap of the first [`MAX_LAP`] of `names`; a name too long to send is
    /// left out (config refuses such names, so none is expected).
    pub fn from_names<'n>(names: impl IntoIterator<Item = &'n str>) -> Lap {
        let mut buf = String::new();
        for name in names.into_iter().filter(|n| n.len() <= MAX_NAME).take(MAX_LAP) {
            buf.push(char::from(name.len() as u8));
            buf.push_str(name);
        }
        let end = buf.len();
        Lap { buf: buf.into(), at: 0, end }
    }

    pub fn is_empty(&self) -> bool {
        self.at >= self.end
    }

    pub fn len(&self) -> usize {
        self.entries().count()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        // Slices between length bytes: never off a char boundary (`get`
        // would give None, not panic; an empty name is never a member).
        self.entries().map(|(start, end)| self.buf.get(start..end).unwrap_or_default())
    }

    /// The remaining names' places in the buffer, split by their length bytes.
    fn entries(&self) -> impl Iterator<Item = (usize, usize)> {
        let (bytes, mut at) = (self.buf.as_bytes(), self.at);
        std::iter::from_fn(move || {
            let len = *bytes.get(at..self.end)?.first()? as usize;
            let (start, end) = (at + 1, at + 1 + len);
            if end > self.end {
                return None;
            }
            at = end;
            Some((start, end))
        })
    }

    /// Takes the first name off the lap.
    pub fn pop_front(&mut self) -> Option<LapName> {
        let len = *self.buf.as_bytes()[self.at..self.end].first()? as usize;
        let start = self.at + 1;
        self.at = (start + len).min(self.end);
        Some(LapName { buf: Arc::clone(&self.buf), start, end: self.at })
    }

    /// The remaining names as they are encoded, after the count byte.
    fn encoded(&self) -> &[u8] {
        &self.buf.as_bytes()[self.at..self.end]
    }
}

impl Default for Lap {
    fn default() -> Lap {
        Lap::from_names(std::iter::empty())
    }
}

impl PartialEq for Lap {
    fn eq(&self, other: &Lap) -> bool {
        self.encoded() == other.encoded()
    }
}

impl Eq for Lap {}

impl std::fmt::Debug for Lap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// One name taken off a [`Lap`], sharing its buffer.
#[derive(Clone)]
pub struct LapName {
    buf: Arc<str>,
    start: usize,
    end: usize,
}

impl LapName {
    pub fn as_str(&self) -> &str {
        // Between length bytes (see `Lap`): a char boundary each.
        self.buf.get(self.start..self.end).unwrap_or_default()
    }
}

impl std::fmt::Debug for LapName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}
