//! Protocol numbers and the rules both sides apply to addresses and flows:
//! the programs decide with them, the agent (conntrack collector, explain,
//! published ports, MACs it gives interfaces) must decide the same.

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_SCTP: u8 = 132;
pub const IPPROTO_ICMPV6: u8 = 58;

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_ECHO_REQUEST: u8 = 8;

/// The MAC of an interface with IPv4 address `addr` (its four bytes in
/// network order): `02:42:` followed by them, as Docker does. Container
/// interfaces get it unless a MAC is given; a bridge has its gateway's.
#[inline(always)]
pub const fn mac_for_addr(addr: [u8; 4]) -> [u8; 6] {
    [0x02, 0x42, addr[0], addr[1], addr[2], addr[3]]
}

/// Is a TCP flow over, given the TCP flags (`TCP_*`) each direction has
/// shown? A reset either way, or a FIN both ways. A closed flow's NAT port
/// may be taken over and its entries expire on the closed-flow timeout.
#[inline(always)]
pub const fn tcp_flow_closed(ours: u8, theirs: u8) -> bool {
    use crate::maps::{TCP_FIN, TCP_RST};
    (ours | theirs) & TCP_RST != 0 || (ours & theirs & TCP_FIN) != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

    #[test]
    fn a_flow_closes_on_a_reset_or_a_fin_each_way() {
        assert!(!tcp_flow_closed(TCP_SYN | TCP_ACK, TCP_SYN | TCP_ACK));
        assert!(!tcp_flow_closed(TCP_FIN | TCP_ACK, TCP_ACK), "half closed");
        assert!(tcp_flow_closed(TCP_FIN, TCP_FIN));
        assert!(tcp_flow_closed(TCP_RST, 0));
        assert!(tcp_flow_closed(0, TCP_RST | TCP_ACK));
    }

    #[test]
    fn macs_follow_the_address() {
        assert_eq!(mac_for_addr([10, 9, 0, 2]), [0x02, 0x42, 10, 9, 0, 2]);
    }
}
