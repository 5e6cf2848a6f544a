//! The userspace side of connection tracking: expiry and fill level.
//!
//! The programs stamp every entry with CLOCK_MONOTONIC nanoseconds; the
//! collector removes flows idle longer than the timeout their state calls
//! for (closed TCP fast, established TCP slowly), always both directions.
use std::{collections::HashSet, hash::Hash, time::Duration};

use anyhow::Result;
use aya::{
    maps::{HashMap, MapData},
    Pod,
};
use netd_common::{
    proto::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP},
    tcp_flow_closed, CtEntry, CtEntry6, CtKey, CtKey6, CT_F_REPLIED, CT_F_SNAT, MAP_CT6_IN,
    MAP_CT6_OUT, MAP_CT_IN, MAP_CT_OUT,
};
use serde::Serialize;

use super::Datapath;

/// How long an idle flow lives, by state.
#[derive(Clone, Debug, Serialize)]
pub struct CtTimeouts {
    pub tcp: Duration,
    pub tcp_unreplied: Duration,
    pub tcp_closed: Duration,
    pub udp: Duration,
    pub udp_unreplied: Duration,
    pub icmp: Duration,
    pub other: Duration,
}

impl Default for CtTimeouts {
    fn default() -> Self {
        Self {
            tcp: Duration::from_secs(7440),
            tcp_unreplied: Duration::from_secs(120),
            tcp_closed: Duration::from_secs(10),
            udp: Duration::from_secs(120),
            udp_unreplied: Duration::from_secs(30),
            icmp: Duration::from_secs(30),
            other: Duration::from_secs(600),
        }
    }
}

impl CtTimeouts {
    /// Kind (as `--ct-timeout` names it) → seconds, for `netd status`.
    pub fn seconds(&self) -> std::collections::BTreeMap<&'static str, u64> {
        [
            ("tcp", self.tcp),
            ("tcp-unreplied", self.tcp_unreplied),
            ("tcp-closed", self.tcp_closed),
            ("udp", self.udp),
            ("udp-unreplied", self.udp_unreplied),
            ("icmp", self.icmp),
            ("other", self.other),
        ]
        .into_iter()
        .map(|(k, d)| (k, d.as_secs()))
        .collect()
    }

    /// Applies `KIND=SECONDS` (kinds: the field names with `-`).
    pub fn set(&mut self, spec: &str) -> Result<(), String> {
        let (kind, secs) = spec
            .split_once('=')
            .ok_or_else(|| format!("expected KIND=SECONDS, got {spec:?}"))?;
        let secs: u64 = secs
            .parse()
            .map_err(|_| format!("{secs:?} is not a number of seconds"))?;
        let slot = match kind {
            "tcp" => &mut self.tcp,
            "tcp-unreplied" => &mut self.tcp_unreplied,
            "tcp-closed" => &mut self.tcp_closed,
            "udp" => &mut self.udp,
            "udp-unreplied" => &mut self.udp_unreplied,
            "icmp" => &mut self.icmp,
            "other" => &mut self.other,
            _ => return Err(format!(
                "unknown conntrack timeout {kind:?} (tcp, tcp-unreplied, tcp-closed, udp, udp-unreplied, icmp, other)"
            )),
        };
        *slot = Duration::from_secs(secs);
        Ok(())
    }

    fn for_flow<E: Stamped>(&self, proto: u8, out: &E, reply: Option<&E>) -> Duration {
        let replied = reply.is_some_and(|r| r.flags() & CT_F_REPLIED != 0);
        match proto {
            IPPROTO_TCP => {
                let (ours, theirs) = (out.tcp_flags(), reply.map_or(0, |r| r.tcp_flags()));
                if tcp_flow_closed(ours, theirs) {
                    self.tcp_closed
                } else if replied {
                    self.tcp
                } else {
                    self.tcp_unreplied
                }
            }
            IPPROTO_UDP if replied => self.udp,
            IPPROTO_UDP => self.udp_unreplied,
            IPPROTO_ICMP | IPPROTO_ICMPV6 => self.icmp,
            _ => self.other,
        }
    }
}

/// A conntrack value of either family.
trait Stamped: Pod {
    fn last_seen_ns(&self) -> u64;
    fn flags(&self) -> u8;
    fn tcp_flags(&self) -> u8;
}

/// A conntrack key of either family, and how its two directions pair up.
trait Tuple: Pod + Eq + Hash {
    type Entry: Stamped;
    fn proto(&self) -> u8;
    /// The reply key of an outbound entry.
    fn reply_key(&self, out: &Self::Entry) -> Self;
    /// The outbound key of a reply entry.
    fn out_key(&self, reply: &Self::Entry) -> Self;
}

macro_rules! tuple {
    ($key:ty, $entry:ty) => {
        impl Stamped for $entry {
            fn last_seen_ns(&self) -> u64 {
                self.last_seen_ns
            }
            fn flags(&self) -> u8 {
                self.flags
            }
            fn tcp_flags(&self) -> u8 {
                self.tcp_flags
            }
        }

        impl Tuple for $key {
            type Entry = $entry;
            fn proto(&self) -> u8 {
                self.proto
            }
            fn reply_key(&self, out: &$entry) -> Self {
                if out.flags & CT_F_SNAT != 0 {
                    Self {
                        saddr: self.daddr,
                        daddr: out.addr,
                        sport: self.dport,
                        dport: out.port,
                        ..*self
                    }
                } else {
                    self.reversed()
                }
            }
            fn out_key(&self, reply: &$entry) -> Self {
                if reply.flags & CT_F_SNAT != 0 {
                    Self {
                        saddr: reply.addr,
                        daddr: self.saddr,
                        sport: reply.port,
                        dport: self.sport,
                        ..*self
                    }
                } else {
                    self.reversed()
                }
            }
        }
    };
}

tuple!(CtKey, CtEntry);
tuple!(CtKey6, CtEntry6);

pub fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| Duration::from(t).as_nanos() as u64)
        .unwrap_or(0)
}

#[derive(Debug, Default, Serialize)]
pub struct CtStats {
    /// IPv4 flows tracked (`CT_OUT` entries).
    pub entries: usize,
    /// IPv6 flows tracked (`CT6_OUT` entries).
    pub entries6: usize,
    /// Entries each family's map holds.
    pub capacity: u32,
}

impl Datapath {
    fn ct<K: Tuple>(&mut self, name: &str) -> Result<HashMap<&mut MapData, K, K::Entry>> {
        Ok(HashMap::try_from(self.map_mut(name)?)?)
    }

    /// Removes expired flows (both directions, both families); returns how
    /// many.
    pub fn expire_flows(&mut self, timeouts: &CtTimeouts) -> Result<usize> {
        Ok(self.expire::<CtKey>(timeouts, MAP_CT_OUT, MAP_CT_IN)?
            + self.expire::<CtKey6>(timeouts, MAP_CT6_OUT, MAP_CT6_IN)?)
    }

    fn expire<K: Tuple>(
        &mut self,
        timeouts: &CtTimeouts,
        out_map: &str,
        in_map: &str,
    ) -> Result<usize> {
        let now = monotonic_ns();
        let outs: Vec<(K, K::Entry)> = self
            .ct::<K>(out_map)?
            .iter()
            .filter_map(Result::ok)
            .collect();
        let ins: Vec<(K, K::Entry)> = self
            .ct::<K>(in_map)?
            .iter()
            .filter_map(Result::ok)
            .collect();
        let replies: std::collections::HashMap<K, K::Entry> = ins.iter().copied().collect();
        let mut paired = HashSet::new();
        let (mut dead_out, mut dead_in) = (Vec::new(), Vec::new());
        for (k, out) in &outs {
            let rk = k.reply_key(out);
            let reply = replies.get(&rk);
            if reply.is_some() {
                paired.insert(rk);
            }
            let last = out
                .last_seen_ns()
                .max(reply.map_or(0, |r| r.last_seen_ns()));
            let timeout = timeouts.for_flow(k.proto(), out, reply).as_nanos() as u64;
            if now.saturating_sub(last) > timeout {
                dead_out.push(*k);
                if reply.is_some() {
                    dead_in.push(rk);
                }
            }
        }
        // Reply entries whose outbound half was evicted.
        let out_keys: HashSet<K> = outs.iter().map(|(k, _)| *k).collect();
        for (k, reply) in &ins {
            if paired.contains(k) || out_keys.contains(&k.out_key(reply)) {
                continue;
            }
            let timeout = timeouts.for_flow(k.proto(), reply, Some(reply)).as_nanos() as u64;
            if now.saturating_sub(reply.last_seen_ns()) > timeout {
                dead_in.push(*k);
            }
        }
        let removed = dead_out.len() + dead_in.len();
        let mut ct_out = self.ct::<K>(out_map)?;
        for k in &dead_out {
            let _ = ct_out.remove(k);
        }
        let mut ct_in = self.ct::<K>(in_map)?;
        for k in &dead_in {
            let _ = ct_in.remove(k);
        }
        Ok(removed)
    }

    /// Flows tracked (outbound entries) of each family and the capacity
    /// of a family's map (both are `--ct-size`).
    pub fn ct_stats(&mut self) -> Result<CtStats> {
        let capacity = match self.map_mut(MAP_CT_OUT)? {
            aya::maps::Map::LruHashMap(data) => data.info()?.max_entries(),
            _ => 0,
        };
        let entries = self.flows::<CtKey>(MAP_CT_OUT)?;
        let entries6 = self.flows::<CtKey6>(MAP_CT6_OUT)?;
        Ok(CtStats {
            entries,
            entries6,
            capacity,
        })
    }

    fn flows<K: Tuple>(&mut self, out_map: &str) -> Result<usize> {
        Ok(self.ct::<K>(out_map)?.keys().filter(Result::is_ok).count())
    }
}
