//! The IPv4 frames the test-run tests send, built in one place: an
//! Ethernet header (optionally VLAN-tagged), an IPv4 header (any version,
//! IHL, id, fragment field, TTL; NOP options; its checksum) and what
//! follows it, with the TCP, UDP or ICMP checksum filled in. Fields can be
//! made to lie (`total_len_delta`, `truncate_to`) for the malformed-input
//! cases. The upper-layer headers ([`tcp`], [`udp`], [`echo`]) serve IPv6
//! ([`super::packet6`]) too; ARP requests and VXLAN datagrams are here.
//!
//! ```ignore
//! // A TCP SYN 10.7.0.2:33333 -> 203.0.113.9:80, checksums filled in.
//! let syn = frame([10, 7, 0, 2], [203, 0, 113, 9], IPPROTO_TCP, &tcp(33333, 80, TCP_SYN));
//! // The same as a fragment with TTL 1, fields set on the builder.
//! let p = Pkt { ttl: 1, frag: 0x2000, ..Pkt::ipv4(src, dst, IPPROTO_TCP, tcp(1, 2, 0)) };
//! ```
use netd_common::{
    proto::{ETH_P_IP, IPPROTO_UDP},
    VXLAN_PORT,
};

pub use super::verify::pseudo;
use super::verify::{csum, fill_checksum};

/// The MACs [`Pkt::ipv4`] and [`super::packet6::Pkt6::new`] put in the
/// Ethernet header unless a test sets others.
pub const DMAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
pub const SMAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

/// Source and destination ports of [`Pkt::udp`] datagrams.
pub const UDP_SPORT: u16 = 12345;
pub const UDP_DPORT: u16 = 53;

#[derive(Clone, Debug)]
pub struct Pkt {
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
    /// An 802.1Q tag (VLAN 5) before the ethertype.
    pub vlan: bool,
    pub ethertype: u16,
    /// The IP version field (4 unless a test lies).
    pub version: u8,
    /// The IHL field in 4-byte words (5: no options; more: NOP options).
    pub ihl_words: u8,
    pub id: u16,
    /// Flags and fragment offset (`0x4000`: don't fragment).
    pub frag: u16,
    pub ttl: u8,
    pub proto: u8,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    /// What follows the IP header.
    pub l4: Vec<u8>,
    /// Fill in the TCP, UDP or ICMP checksum of `l4` (not for a fragment
    /// or a datagram that carries none).
    pub l4_checksum: bool,
    /// Added to the IPv4 total length.
    pub total_len_delta: i32,
    /// Cut the frame to this many bytes.
    pub truncate_to: Option<usize>,
}

impl Pkt {
    /// IPv4 from `src` to `dst` carrying `l4`: don't fragment, TTL 64,
    /// between two made-up MACs.
    pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: Vec<u8>) -> Pkt {
        Pkt {
            dmac: DMAC,
            smac: SMAC,
            vlan: false,
            ethertype: ETH_P_IP,
            version: 4,
            ihl_words: 5,
            id: 0x1234,
            frag: 0x4000,
            ttl: 64,
            proto,
            src,
            dst,
            l4,
            l4_checksum: true,
            total_len_delta: 0,
            truncate_to: None,
        }
    }

    /// A UDP datagram [`UDP_SPORT`] → [`UDP_DPORT`] with `payload` bytes
    /// of 0xab and no UDP checksum.
    pub fn udp(src: [u8; 4], dst: [u8; 4], payload: usize) -> Pkt {
        let body = vec![0xab; payload];
        Pkt {
            l4_checksum: false,
            ..Pkt::ipv4(src, dst, IPPROTO_UDP, udp_with(UDP_SPORT, UDP_DPORT, &body))
        }
    }

    /// A VXLAN datagram (UDP to [`VXLAN_PORT`], no UDP checksum, as
    /// Linux sends them) carrying `inner` on `vni`.
    pub fn vxlan(src: [u8; 4], dst: [u8; 4], vni: u32, inner: &[u8]) -> Pkt {
        Pkt {
            l4_checksum: false,
            ..Pkt::ipv4(
                src,
                dst,
                IPPROTO_UDP,
                udp_with(49152, VXLAN_PORT, &vxlan(vni, inner)),
            )
        }
    }

    /// The frame, checksums filled in.
    pub fn bytes(&self) -> Vec<u8> {
        let mut f = ethernet(self.dmac, self.smac, self.vlan, self.ethertype);
        let ihl = (usize::from(self.ihl_words) * 4).max(20);
        let total = (ihl + self.l4.len()) as i32 + self.total_len_delta;
        let mut h = vec![0u8; ihl];
        h[0] = (self.version << 4) | self.ihl_words;
        h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        h[4..6].copy_from_slice(&self.id.to_be_bytes());
        h[6..8].copy_from_slice(&self.frag.to_be_bytes());
        h[8] = self.ttl;
        h[9] = self.proto;
        h[12..16].copy_from_slice(&self.src);
        h[16..20].copy_from_slice(&self.dst);
        for opt in h.iter_mut().skip(20) {
            *opt = 1; // NOP
        }
        let c = csum(&h, 0);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&h);
        let mut l4 = self.l4.clone();
        if self.l4_checksum {
            let init = pseudo(&self.src, &self.dst, self.proto, l4.len());
            fill_checksum(&mut l4, self.proto, init);
        }
        f.extend_from_slice(&l4);
        if let Some(n) = self.truncate_to {
            f.truncate(n);
        }
        f
    }
}

/// An Ethernet header, with an 802.1Q tag (VLAN 5) if `vlan`.
pub fn ethernet(dmac: [u8; 6], smac: [u8; 6], vlan: bool, ethertype: u16) -> Vec<u8> {
    let mut f = dmac.to_vec();
    f.extend_from_slice(&smac);
    if vlan {
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// IPv4 packet in an Ethernet frame, with correct checksums.
pub fn frame(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
    Pkt::ipv4(src, dst, proto, l4.to_vec()).bytes()
}

/// A TCP segment with `flags` and an 8-byte payload.
pub fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..8].copy_from_slice(&1000u32.to_be_bytes());
    h[12] = 5 << 4;
    h[13] = flags;
    h[14..16].copy_from_slice(&64240u16.to_be_bytes());
    h.extend_from_slice(b"payload!");
    h
}

/// A UDP datagram carrying `hello`.
pub fn udp(sport: u16, dport: u16) -> Vec<u8> {
    udp_with(sport, dport, b"hello")
}

/// A UDP datagram carrying `payload` (checksum left 0).
pub fn udp_with(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 8];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..6].copy_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// An ICMP echo request (or reply) with identifier `id`, sequence 1
/// (checksum left 0: [`Pkt::bytes`] fills it in).
pub fn echo(request: bool, id: u16) -> Vec<u8> {
    let mut h = vec![if request { 8 } else { 0 }, 0, 0, 0];
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&1u16.to_be_bytes());
    h.extend_from_slice(b"ping");
    h
}

/// An ARP request from `spa` (MAC `sha`) for `tpa`, broadcast, padded to
/// the Ethernet minimum as a NIC would.
pub fn arp_request(sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = ethernet([0xff; 6], sha, false, 0x0806);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa);
    f.resize(60, 0);
    f
}

/// A VXLAN header (RFC 7348: flags with the VNI bit, `vni`) and `inner`,
/// what a VXLAN datagram's UDP payload is.
pub fn vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut h = vec![0x08, 0, 0, 0];
    h.extend_from_slice(&(vni << 8).to_be_bytes());
    h.extend_from_slice(inner);
    h
}
