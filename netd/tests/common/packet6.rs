//! The IPv6 frames the test-run tests send: an Ethernet header, the fixed
//! IPv6 header, a chain of extension headers (options, routing, fragment,
//! AH; each one's next-header byte filled in) and the upper-layer header
//! with its TCP, UDP or ICMPv6 checksum over the pseudo header. Fields can
//! be made to lie (`payload_len_delta`, `truncate_to`, or cut `l4` / an
//! extension header short) for the malformed-input cases.
//!
//! ```ignore
//! let p = Pkt6::udp("fd00:a::2", "2001:db8::9", 4444, 53).opts(DSTOPTS, 2);
//! let (verdict, out) = run_classifier(&mut dp, UPLINK_OUT, &p.bytes());
//! let quoted = p.bytes()[14..].to_vec(); // for an ICMPv6 error body
//! let syn = Pkt6::tcp(ME, WORLD, 33333, 80, TCP_SYN);
//! ```
use std::net::Ipv6Addr;

use netd_common::proto::{ETH_P_IPV6, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

use super::{
    packet::{ethernet, tcp, udp_with, DMAC, SMAC},
    verify::{fill_checksum, pseudo6},
};

/// IPv6 next-header values of the extension headers.
pub const HOPOPTS: u8 = 0;
pub const ROUTING: u8 = 43;
pub const FRAGMENT: u8 = 44;
pub const AH: u8 = 51;
pub const DSTOPTS: u8 = 60;

/// An IPv6 address as tests write it: `"fd00:a::2"`, an `Ipv6Addr` or
/// its 16 bytes.
pub trait Addr6 {
    fn v6(self) -> Ipv6Addr;
}

impl Addr6 for &str {
    fn v6(self) -> Ipv6Addr {
        self.parse()
            .unwrap_or_else(|e| panic!("IPv6 address {self}: {e}"))
    }
}

impl Addr6 for Ipv6Addr {
    fn v6(self) -> Ipv6Addr {
        self
    }
}

impl Addr6 for [u8; 16] {
    fn v6(self) -> Ipv6Addr {
        self.into()
    }
}

/// An IPv6 packet under construction.
#[derive(Clone, Debug)]
pub struct Pkt6 {
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
    /// Extension headers as (type, bytes with the next-header byte left 0).
    pub ext: Vec<(u8, Vec<u8>)>,
    /// The upper-layer protocol and its header with what follows.
    pub proto: u8,
    pub l4: Vec<u8>,
    /// Added to the payload length field.
    pub payload_len_delta: i32,
    /// Cut the frame to this many bytes.
    pub truncate_to: Option<usize>,
}

impl Pkt6 {
    /// `src` to `dst` carrying `l4` (a `proto` header), hop limit 64,
    /// between the made-up MACs [`DMAC`] and [`SMAC`].
    pub fn new(src: impl Addr6, dst: impl Addr6, proto: u8, l4: Vec<u8>) -> Self {
        Pkt6 {
            dmac: DMAC,
            smac: SMAC,
            src: src.v6(),
            dst: dst.v6(),
            hop_limit: 64,
            ext: Vec::new(),
            proto,
            l4,
            payload_len_delta: 0,
            truncate_to: None,
        }
    }

    /// A UDP datagram with 8 bytes of 0xab.
    pub fn udp(src: impl Addr6, dst: impl Addr6, sport: u16, dport: u16) -> Self {
        Self::new(src, dst, IPPROTO_UDP, udp_with(sport, dport, &[0xab; 8]))
    }

    /// A TCP segment with `flags` ([`super::packet::tcp`]).
    pub fn tcp(src: impl Addr6, dst: impl Addr6, sport: u16, dport: u16, flags: u8) -> Self {
        Self::new(src, dst, IPPROTO_TCP, tcp(sport, dport, flags))
    }

    /// An ICMPv6 message of type `ty` (code 0) with `body` after the
    /// checksum.
    pub fn icmp(src: impl Addr6, dst: impl Addr6, ty: u8, body: &[u8]) -> Self {
        let mut l4 = vec![ty, 0, 0, 0];
        l4.extend_from_slice(body);
        Self::new(src, dst, IPPROTO_ICMPV6, l4)
    }

    /// An ICMPv6 echo request (128) or reply (129) with identifier `id`,
    /// sequence 1.
    pub fn echo(src: impl Addr6, dst: impl Addr6, request: bool, id: u16) -> Self {
        let mut body = id.to_be_bytes().to_vec();
        body.extend_from_slice(&[0, 1, 0xcc, 0xcc, 0xcc, 0xcc]);
        Self::icmp(src, dst, if request { 128 } else { 129 }, &body)
    }

    /// The packet on a link: from MAC `smac` to `dmac`, hop limit `hops`.
    pub fn link(mut self, dmac: [u8; 6], smac: [u8; 6], hops: u8) -> Self {
        (self.dmac, self.smac, self.hop_limit) = (dmac, smac, hops);
        self
    }

    /// Appends an options-style extension header (hop-by-hop or
    /// destination options) of `len8` 8-octet units, PadN inside.
    pub fn opts(mut self, ty: u8, len8: usize) -> Self {
        let mut h = vec![0u8; len8 * 8];
        h[1] = (len8 - 1) as u8;
        if len8 * 8 > 2 {
            // PadN over the rest.
            h[2] = 1;
            h[3] = (len8 * 8 - 4) as u8;
        }
        self.ext.push((ty, h));
        self
    }

    /// Appends a routing header (type 0, one address slot).
    pub fn routing(mut self, segments_left: u8) -> Self {
        let mut h = vec![0u8; 24];
        h[1] = 2;
        h[2] = 0;
        h[3] = segments_left;
        self.ext.push((ROUTING, h));
        self
    }

    /// Appends a fragment header: offset in 8-octet units, more-fragments
    /// flag, identification.
    pub fn fragment(mut self, offset8: u16, more: bool, id: u32) -> Self {
        let mut h = vec![0u8; 8];
        let field = (offset8 << 3) | u16::from(more);
        h[2..4].copy_from_slice(&field.to_be_bytes());
        h[4..8].copy_from_slice(&id.to_be_bytes());
        self.ext.push((FRAGMENT, h));
        self
    }

    /// Appends a 16-byte authentication header.
    pub fn auth(mut self) -> Self {
        let mut h = vec![0u8; 16];
        h[1] = 2; // (2 + 2) * 4 = 16 bytes
        self.ext.push((AH, h));
        self
    }

    /// The frame, next-header bytes, payload length and the upper-layer
    /// checksum (when `l4` holds a whole header) filled in.
    pub fn bytes(&self) -> Vec<u8> {
        let mut f = ethernet(self.dmac, self.smac, false, ETH_P_IPV6);
        let mut payload = Vec::new();
        for (i, (_, h)) in self.ext.iter().enumerate() {
            let next = self.ext.get(i + 1).map_or(self.proto, |(t, _)| *t);
            let mut h = h.clone();
            h[0] = next;
            payload.extend_from_slice(&h);
        }
        let mut l4 = self.l4.clone();
        if l4.len() >= 8 {
            let (src, dst) = (self.src.octets(), self.dst.octets());
            let init = pseudo6(&src, &dst, self.proto, l4.len());
            fill_checksum(&mut l4, self.proto, init);
        }
        payload.extend_from_slice(&l4);
        let first = self.ext.first().map_or(self.proto, |(t, _)| *t);
        let plen = (payload.len() as i32 + self.payload_len_delta) as u16;
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&plen.to_be_bytes());
        f.extend_from_slice(&[first, self.hop_limit]);
        f.extend_from_slice(&self.src.octets());
        f.extend_from_slice(&self.dst.octets());
        f.extend_from_slice(&payload);
        if let Some(n) = self.truncate_to {
            f.truncate(n);
        }
        f
    }
}
