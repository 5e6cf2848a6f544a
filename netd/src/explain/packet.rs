//! The packet `netd explain` sends through the programs: an Ethernet frame
//! with an IPv4 header and the first segment a client would send (TCP SYN,
//! a UDP datagram, an SCTP common header, an ICMP echo request), checksums
//! right, so rewrites by the programs stay checkable; and the fields read
//! back from what a program left.
use std::{fmt, net::Ipv4Addr};

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
    Icmp,
}

impl Proto {
    pub fn number(self) -> u8 {
        match self {
            Proto::Icmp => netd_common::proto::IPPROTO_ICMP,
            Proto::Tcp => netd_common::proto::IPPROTO_TCP,
            Proto::Udp => netd_common::proto::IPPROTO_UDP,
            Proto::Sctp => netd_common::proto::IPPROTO_SCTP,
        }
    }

    pub fn parse(s: &str) -> Option<Proto> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            "sctp" => Some(Proto::Sctp),
            "icmp" => Some(Proto::Icmp),
            _ => None,
        }
    }

    fn from_number(n: u8) -> Option<Proto> {
        [Proto::Icmp, Proto::Tcp, Proto::Udp, Proto::Sctp]
            .into_iter()
            .find(|p| p.number() == n)
    }

    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
            Proto::Icmp => "icmp",
        }
    }
}

/// The fields of a packet the walk shows. For ICMP echo `sport` is the
/// identifier and `dport` is 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Packet {
    pub proto: Proto,
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
}

impl Packet {
    pub fn source(&self) -> String {
        endpoint(self.src, self.sport, self.proto)
    }

    pub fn destination(&self) -> String {
        endpoint(self.dst, self.dport, self.proto)
    }
}

fn endpoint(ip: Ipv4Addr, port: u16, proto: Proto) -> String {
    match proto {
        Proto::Icmp => ip.to_string(),
        _ => format!("{ip}:{port}"),
    }
}

impl fmt::Display for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} -> {}",
            self.proto.name(),
            self.source(),
            self.destination()
        )?;
        if self.proto == Proto::Icmp {
            write!(f, " (echo id {})", self.sport)?;
        }
        Ok(())
    }
}

const ETH_HLEN: usize = 14;
const IP_HLEN: usize = 20;

/// The 16-bit one's complement sum, folded.
fn csum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for data in chunks {
        for pair in data.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The frame `p` makes, from `src_mac` to `dst_mac`.
pub fn build(p: &Packet, src_mac: [u8; 6], dst_mac: [u8; 6]) -> Vec<u8> {
    let l4: Vec<u8> = match p.proto {
        Proto::Tcp => {
            let mut h = vec![0u8; 20];
            h[0..2].copy_from_slice(&p.sport.to_be_bytes());
            h[2..4].copy_from_slice(&p.dport.to_be_bytes());
            h[4..8].copy_from_slice(&1u32.to_be_bytes());
            h[12] = 5 << 4;
            h[13] = 0x02; // SYN
            h[14..16].copy_from_slice(&64240u16.to_be_bytes());
            h
        }
        Proto::Udp => {
            let mut h = vec![0u8; 8];
            h.extend_from_slice(b"netd explain");
            let len = h.len() as u16;
            h[0..2].copy_from_slice(&p.sport.to_be_bytes());
            h[2..4].copy_from_slice(&p.dport.to_be_bytes());
            h[4..6].copy_from_slice(&len.to_be_bytes());
            h
        }
        Proto::Sctp => {
            // Common header only: the programs key on the ports.
            let mut h = vec![0u8; 12];
            h[0..2].copy_from_slice(&p.sport.to_be_bytes());
            h[2..4].copy_from_slice(&p.dport.to_be_bytes());
            h
        }
        Proto::Icmp => {
            let mut h = vec![8u8, 0, 0, 0];
            h.extend_from_slice(&p.sport.to_be_bytes());
            h.extend_from_slice(&1u16.to_be_bytes());
            h.extend_from_slice(b"netd explain");
            let c = csum(&[&h]);
            h[2..4].copy_from_slice(&c.to_be_bytes());
            h
        }
    };
    let total = (IP_HLEN + l4.len()) as u16;
    let mut ip = [0u8; IP_HLEN];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[4..6].copy_from_slice(&rand::random::<u16>().to_be_bytes());
    ip[6] = 0x40; // don't fragment
    ip[8] = 64;
    ip[9] = p.proto.number();
    ip[12..16].copy_from_slice(&p.src.octets());
    ip[16..20].copy_from_slice(&p.dst.octets());
    let c = csum(&[&ip]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut l4 = l4;
    let sum_at = match p.proto {
        Proto::Tcp => Some(16),
        Proto::Udp => Some(6),
        _ => None,
    };
    if let Some(at) = sum_at {
        let len = (l4.len() as u16).to_be_bytes();
        let pseudo = [&ip[12..20], &[0, p.proto.number()][..], &len[..], &l4[..]];
        let c = csum(&pseudo);
        l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    let mut frame = Vec::with_capacity(ETH_HLEN + total as usize);
    frame.extend_from_slice(&dst_mac);
    frame.extend_from_slice(&src_mac);
    frame.extend_from_slice(&netd_common::proto::ETH_P_IP.to_be_bytes());
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&l4);
    frame
}

/// The fields of a frame a program left (None if it is no longer IPv4
/// with a protocol netd builds).
pub fn read(frame: &[u8]) -> Option<Packet> {
    let ip = frame.get(ETH_HLEN..ETH_HLEN + IP_HLEN)?;
    if frame.get(12..14)? != netd_common::proto::ETH_P_IP.to_be_bytes() || ip[0] >> 4 != 4 {
        return None;
    }
    let l4 = ETH_HLEN + usize::from(ip[0] & 0x0f) * 4;
    let word = |off: usize| -> Option<u16> {
        Some(u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]))
    };
    let proto = Proto::from_number(ip[9])?;
    let (sport, dport) = match proto {
        Proto::Icmp => (word(l4 + 4)?, 0),
        _ => (word(l4)?, word(l4 + 2)?),
    };
    Some(Packet {
        proto,
        src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        sport,
        dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        dport,
    })
}

/// Are the IPv4 header checksum and (for TCP, UDP, ICMP) the L4 checksum
/// of the frame right?
pub fn checksums_ok(frame: &[u8]) -> bool {
    let Some(ip) = frame.get(ETH_HLEN..ETH_HLEN + IP_HLEN) else {
        return false;
    };
    if csum(&[ip]) != 0 {
        return false;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let Some(l4) = frame.get(ETH_HLEN + IP_HLEN..ETH_HLEN + total) else {
        return false;
    };
    let len = (l4.len() as u16).to_be_bytes();
    match ip[9] {
        6 | 17 => csum(&[&ip[12..20], &[0, ip[9]], &len, l4]) == 0,
        1 => csum(&[l4]) == 0,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(proto: Proto) -> Packet {
        Packet {
            proto,
            src: Ipv4Addr::new(10, 1, 0, 2),
            sport: 40000,
            dst: Ipv4Addr::new(10, 2, 0, 3),
            dport: if proto == Proto::Icmp { 0 } else { 80 },
        }
    }

    #[test]
    fn built_frames_read_back_with_good_checksums() {
        for proto in [Proto::Tcp, Proto::Udp, Proto::Sctp, Proto::Icmp] {
            let p = pkt(proto);
            let f = build(&p, [2; 6], [4; 6]);
            assert_eq!(read(&f), Some(p), "{proto:?}");
            assert!(checksums_ok(&f), "{proto:?}");
        }
    }

    #[test]
    fn a_damaged_frame_fails_the_checksum() {
        let mut f = build(&pkt(Proto::Tcp), [2; 6], [4; 6]);
        f[ETH_HLEN + IP_HLEN + 2] ^= 1;
        assert!(!checksums_ok(&f));
        assert!(read(&f[..20]).is_none());
    }
}
