//! Checksums, and reading back a frame a program left: [`verify4`] and
//! [`verify6`] assert every checksum in it (IPv4 header, TCP, UDP, ICMP,
//! ICMPv6 over its pseudo header) and return the fields a rewrite changes.
//!
//! ```ignore
//! let (_, out) = run_classifier(&mut dp, UPLINK_OUT, &sent);
//! let seen = verify4(&out); // panics on a wrong checksum
//! assert_eq!((seen.src, seen.sport), (ip(UPLINK_ADDR), 40000));
//! ```
use std::net::{Ipv4Addr, Ipv6Addr};

use netd_common::proto::{
    ETH_P_IP, ETH_P_IPV6, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
};

use super::packet6::{AH, DSTOPTS, FRAGMENT, HOPOPTS, ROUTING};

/// The Internet checksum of `data`, starting from the partial sum `init`.
pub fn csum(data: &[u8], init: u32) -> u16 {
    let mut sum = init;
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn words(b: &[u8]) -> u32 {
    b.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum()
}

/// The partial sum of the IPv4 TCP/UDP pseudo header.
pub fn pseudo(src: &[u8], dst: &[u8], proto: u8, len: usize) -> u32 {
    words(src) + words(dst) + u32::from(proto) + len as u32
}

/// The partial sum of the IPv6 upper-layer pseudo header (RFC 8200 8.1).
pub fn pseudo6(src: &[u8; 16], dst: &[u8; 16], proto: u8, len: usize) -> u32 {
    words(src) + words(dst) + words(&(len as u32).to_be_bytes()) + u32::from(proto)
}

/// Where the checksum of an L4 header of `proto` sits, and whether it
/// covers the pseudo header.
pub fn checksum_at(proto: u8) -> Option<(usize, bool)> {
    match proto {
        IPPROTO_TCP => Some((16, true)),
        IPPROTO_UDP => Some((6, true)),
        IPPROTO_ICMP => Some((2, false)),
        IPPROTO_ICMPV6 => Some((2, true)),
        _ => None,
    }
}

/// Writes the checksum of `l4` (a `proto` header and what follows) into
/// it; `pseudo` is the pseudo header's partial sum. A header too short to
/// hold the field, or a protocol without one, is left as it is.
pub fn fill_checksum(l4: &mut [u8], proto: u8, pseudo: u32) {
    let Some((off, pseudo_too)) = checksum_at(proto) else {
        return;
    };
    if l4.len() < off + 2 {
        return;
    }
    l4[off..off + 2].fill(0);
    let c = csum(l4, if pseudo_too { pseudo } else { 0 });
    l4[off..off + 2].copy_from_slice(&c.to_be_bytes());
}

/// What a frame says, read back after its checksums were verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen<A> {
    pub src: A,
    pub dst: A,
    /// The upper-layer protocol (after IPv6 extension headers).
    pub proto: u8,
    /// The first two 16-bit words (TCP, UDP, SCTP ports); for ICMP and
    /// ICMPv6, `sport` is the echo identifier (bytes 4-5) and `dport` 0.
    pub sport: u16,
    pub dport: u16,
    /// TTL or hop limit.
    pub ttl: u8,
    /// Where the upper-layer header starts in the frame.
    pub l4_at: usize,
}

/// Start of the IP header: after the Ethernet header and any 802.1Q tag.
fn l3_at(f: &[u8], ethertype: u16) -> usize {
    let mut at = 12;
    while matches!(u16::from_be_bytes([f[at], f[at + 1]]), 0x8100 | 0x88a8) {
        at += 4;
    }
    assert_eq!(
        u16::from_be_bytes([f[at], f[at + 1]]),
        ethertype,
        "ethertype"
    );
    at + 2
}

fn ports(proto: u8, l4: &[u8]) -> (u16, u16) {
    let be = |i: usize| u16::from_be_bytes([l4[i], l4[i + 1]]);
    match proto {
        IPPROTO_ICMP | IPPROTO_ICMPV6 if l4.len() >= 6 => (be(4), 0),
        IPPROTO_ICMP | IPPROTO_ICMPV6 => (0, 0),
        _ if l4.len() >= 4 => (be(0), be(2)),
        _ => (0, 0),
    }
}

/// Reads an IPv4 frame: asserts the header checksum and, but in a
/// fragment, the TCP, UDP (a zero one too) or ICMP checksum over what
/// the total length covers.
pub fn verify4(f: &[u8]) -> Seen<Ipv4Addr> {
    let at = l3_at(f, ETH_P_IP);
    let ihl = usize::from(f[at] & 0x0f) * 4;
    let iph = &f[at..at + ihl];
    assert_eq!(csum(iph, 0), 0, "IPv4 header checksum");
    let proto = iph[9];
    let total = usize::from(u16::from_be_bytes([iph[2], iph[3]]));
    let l4 = &f[at + ihl..at + total];
    let fragment = u16::from_be_bytes([iph[6], iph[7]]) & 0x3fff != 0;
    if !fragment {
        if let Some((_, pseudo_too)) = checksum_at(proto) {
            let init = if pseudo_too {
                pseudo(&iph[12..16], &iph[16..20], proto, l4.len())
            } else {
                0
            };
            assert_eq!(csum(l4, init), 0, "L4 checksum (protocol {proto})");
        }
    }
    let (sport, dport) = if fragment { (0, 0) } else { ports(proto, l4) };
    let addr = |i: usize| Ipv4Addr::new(iph[i], iph[i + 1], iph[i + 2], iph[i + 3]);
    Seen {
        src: addr(12),
        dst: addr(16),
        proto,
        sport,
        dport,
        ttl: iph[8],
        l4_at: at + ihl,
    }
}

/// Reads an IPv6 frame: follows the extension headers and asserts the
/// TCP, UDP or ICMPv6 checksum over the pseudo header (not in a fragment
/// other than an atomic one).
pub fn verify6(f: &[u8]) -> Seen<Ipv6Addr> {
    let at = l3_at(f, ETH_P_IPV6);
    let h = &f[at..at + 40];
    assert_eq!(h[0] >> 4, 6, "IP version");
    let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let end = at + 40 + plen;
    let src: [u8; 16] = h[8..24].try_into().unwrap();
    let dst: [u8; 16] = h[24..40].try_into().unwrap();
    let (mut next, mut l4_at, mut fragment) = (h[6], at + 40, false);
    loop {
        let e = &f[l4_at..];
        let len = match next {
            HOPOPTS | ROUTING | DSTOPTS => (usize::from(e[1]) + 1) * 8,
            AH => (usize::from(e[1]) + 2) * 4,
            FRAGMENT => {
                fragment |= u16::from_be_bytes([e[2], e[3]]) != 0;
                8
            }
            _ => break,
        };
        next = e[0];
        l4_at += len;
    }
    let l4 = &f[l4_at..end];
    if !fragment && checksum_at(next).is_some() {
        let init = pseudo6(&src, &dst, next, l4.len());
        assert_eq!(csum(l4, init), 0, "L4 checksum (protocol {next})");
    }
    let (sport, dport) = if fragment { (0, 0) } else { ports(next, l4) };
    Seen {
        src: src.into(),
        dst: dst.into(),
        proto: next,
        sport,
        dport,
        ttl: h[7],
        l4_at,
    }
}
