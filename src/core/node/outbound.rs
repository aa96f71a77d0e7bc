//! outbound: every datagram a node sends goes through here: in the wire
//! version its receiver understands (see the module doc of `core::node`),
//! sealed with the next sequence number, to one peer or fanned out to the
//! group or every peer.

use std::net::SocketAddr;

use rand::Rng;

use super::config::Identity;
use super::{Dest, Fanout, Node, Transmit, Via};
use crate::core::membership::Member;
use crate::core::wire::{Codec, Envelope, MIN_VERSION, Message, VERSION};

impl<R: Rng> Node<R> {
    /// The wire version this node speaks to member `m` (unicast).
    pub fn wire_for(&self, m: &Member) -> u8 {
        m.wire.clamp(MIN_VERSION, VERSION)
    }

    /// The version of what goes to the whole cluster: [`VERSION`] when every
    /// live member understands it (and there is one), else [`MIN_VERSION`].
    pub(super) fn group_version(&self) -> u8 {
        let mut live = self.members.live().peekable();
        let all_new = live.peek().is_some() && live.all(|m| m.wire >= VERSION);
        if all_new { VERSION } else { MIN_VERSION }
    }

    /// The version for unicast to `addr`: what the live member there
    /// understands, at most [`VERSION`]; [`MIN_VERSION`] for anyone else.
    pub(super) fn version_for(&self, addr: SocketAddr) -> u8 {
        self.members.live().find(|m| m.data_addr == addr).map_or(MIN_VERSION, |m| self.wire_for(m))
    }

    /// One probe in [`VERSION`] to each live member heard only in older
    /// versions, once per life: it answers in kind if it understands.
    pub(super) fn probe_versions(&mut self) {
        let due: Vec<(String, SocketAddr)> = self
            .members
            .live()
            .filter(|m| m.wire < VERSION && !m.wire_probed)
            .map(|m| (m.name.clone(), m.data_addr))
            .collect();
        for (name, addr) in due {
            self.members.wire_probed(&name);
            let token = self.rng.next_u64();
            self.send_as(Dest::Data(addr), VERSION, Message::Ping { token });
        }
    }

    /// Sends `msg` in the version `dest` understands.
    pub(super) fn send(&mut self, dest: Dest, msg: Message<'_>) {
        let version = match dest {
            Dest::Data(addr) => self.version_for(addr),
            Dest::Group | Dest::Gossip(_) => self.group_version(),
        };
        self.send_as(dest, version, msg);
    }

    pub(super) fn send_as(&mut self, dest: Dest, version: u8, msg: Message<'_>) {
        let buf = self.spare.pop().unwrap_or_default();
        let payload = encode(&self.codec, &self.identity, &mut self.seq, version, msg, buf);
        self.outbox.push_back(Transmit { dest, payload });
    }

    pub(super) fn fan_out(&mut self, msg: Message<'_>) {
        let version = self.group_version();
        let buf = self.spare.pop().unwrap_or_default();
        let payload = encode(&self.codec, &self.identity, &mut self.seq, version, msg, buf);
        self.fan_out_payload(payload);
    }

    pub(super) fn fan_out_payload(&mut self, payload: Vec<u8>) {
        match self.identity.fanout {
            Fanout::Group => self.outbox.push_back(Transmit { dest: Dest::Group, payload }),
            Fanout::Unicast => {
                let mut targets: Vec<SocketAddr> = self.seeds.clone();
                targets.extend(self.members.live().map(|m| m.gossip_addr));
                targets.sort_unstable();
                targets.dedup();
                for addr in targets {
                    self.outbox.push_back(Transmit { dest: Dest::Gossip(addr), payload: payload.clone() });
                }
            }
        }
    }
}

/// Every datagram gets the next `seq`: the replay window and the nonce rely on
/// it never repeating within this life. Encoded into `buf` (a recycled one,
/// or empty).
pub(super) fn encode(
    codec: &Codec,
    identity: &Identity,
    seq: &mut u64,
    version: u8,
    msg: Message<'_>,
    mut buf: Vec<u8>,
) -> Vec<u8> {
    *seq += 1;
    let env = Envelope { version, from: &identity.name, incarnation: identity.incarnation, seq: *seq, msg };
    codec.encode_into(&env, &mut buf);
    buf
}

pub(super) fn reply_dest(via: Via, src: SocketAddr) -> Dest {
    match via {
        Via::Gossip => Dest::Gossip(src),
        Via::Data => Dest::Data(src),
    }
}
