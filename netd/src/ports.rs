//! Publish specs, as `docker run -p`:
//! `[HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/tcp|udp|sctp]`, an
//! IPv6 HOST_IP in brackets (`[::]:8080:80`, `[2001:db8::1]:8080:80`).
use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => netd_common::proto::IPPROTO_TCP,
            Proto::Udp => netd_common::proto::IPPROTO_UDP,
            Proto::Sctp => netd_common::proto::IPPROTO_SCTP,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        })
    }
}

impl FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "sctp" => Ok(Proto::Sctp),
            _ => Err(format!("unknown protocol {s:?} (tcp, udp or sctp)")),
        }
    }
}

/// One published port (ranges are expanded to one mapping per port).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// `None`: every host IPv4 address; `::`: every host IPv6 address;
    /// else that host address.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl PortMapping {
    /// Published on IPv6 (reaches the container's IPv6 address).
    pub fn is_ipv6(&self) -> bool {
        matches!(self.host_ip, Some(IpAddr::V6(_)))
    }

    /// The IPv4 host address (`None`: all, or an IPv6 mapping).
    pub fn host_v4(&self) -> Option<Ipv4Addr> {
        match self.host_ip {
            Some(IpAddr::V4(ip)) => Some(ip),
            _ => None,
        }
    }

    /// The host address, the unspecified one of its family for "all".
    pub fn host_addr(&self) -> IpAddr {
        self.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    /// Do both need the same (host address, port, protocol)? A wildcard
    /// covers every address of its family.
    pub fn clashes(&self, other: &PortMapping) -> bool {
        let (a, b) = (self.host_addr(), other.host_addr());
        self.proto == other.proto
            && self.host_port == other.host_port
            && a.is_ipv4() == b.is_ipv4()
            && (a == b || a.is_unspecified() || b.is_unspecified())
    }
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addr = std::net::SocketAddr::new(self.host_addr(), self.host_port);
        write!(f, "{}/{} -> {addr}", self.container_port, self.proto)
    }
}

/// A parsed spec: host port 0 means "netd picks one".
#[derive(Debug, PartialEq, Eq)]
pub struct PublishSpec {
    /// `None`: not given (every address of both families, as Docker);
    /// `0.0.0.0` / `::`: every address of that family.
    pub host_ip: Option<IpAddr>,
    pub host_ports: Option<(u16, u16)>,
    pub container_ports: (u16, u16),
    pub proto: Proto,
}

fn port_range(s: &str, what: &str) -> Result<(u16, u16), String> {
    let parse = |p: &str| -> Result<u16, String> {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("invalid {what} port {p:?} (1-65535)")),
        }
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (parse(a)?, parse(b)?);
            if a > b {
                return Err(format!("invalid {what} port range {s:?}: start after end"));
            }
            Ok((a, b))
        }
        None => {
            let p = parse(s)?;
            Ok((p, p))
        }
    }
}

impl FromStr for PublishSpec {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        let (rest, proto) = match spec.rsplit_once('/') {
            Some((rest, proto)) => (rest, proto.parse()?),
            None => (spec, Proto::Tcp),
        };
        // `[V6]:` first: its colons are not separators.
        let (bracketed, rest) = match rest.strip_prefix('[') {
            Some(inner) => {
                let (ip, after) = inner.split_once("]:").ok_or_else(|| {
                    format!(
                        "invalid publish spec {spec:?}: expected [IPV6]:[HOST_PORT]:CONTAINER_PORT"
                    )
                })?;
                let ip: Ipv6Addr = ip
                    .parse()
                    .map_err(|_| format!("invalid IPv6 host address {ip:?} in {spec:?}"))?;
                (Some(ip), after)
            }
            None => (None, rest),
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (host_ip, host, container) = match (bracketed, parts.as_slice()) {
            (Some(ip), [h, c]) => (Some(IpAddr::V6(ip)), Some(*h).filter(|h| !h.is_empty()), *c),
            (None, [c]) => (None, None, *c),
            (None, [h, c]) => (None, Some(*h), *c),
            (None, [ip, h, c]) => {
                let ip: Ipv4Addr = ip.parse().map_err(|_| {
                    format!("invalid host address {ip:?} in {spec:?} (IPv4, or IPv6 in brackets: [::1]:8080:80)")
                })?;
                (Some(IpAddr::V4(ip)), Some(*h).filter(|h| !h.is_empty()), *c)
            }
            _ => return Err(format!("invalid publish spec {spec:?}: expected [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO] (an IPv6 HOST_IP in brackets)")),
        };
        let container_ports = port_range(container, "container")?;
        let host_ports = host.map(|h| port_range(h, "host")).transpose()?;
        if let Some((a, b)) = host_ports {
            if b - a != container_ports.1 - container_ports.0 {
                return Err(format!(
                    "invalid publish spec {spec:?}: host and container ranges differ in length"
                ));
            }
        }
        Ok(PublishSpec {
            host_ip,
            host_ports,
            container_ports,
            proto,
        })
    }
}

/// The address families a container's published ports lead to: those its
/// first network gives it an address of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Families {
    pub v4: bool,
    pub v6: bool,
}

impl Families {
    /// IPv4 only (a network without IPv6).
    pub const V4: Families = Families {
        v4: true,
        v6: false,
    };
    /// Dual-stack.
    pub const BOTH: Families = Families { v4: true, v6: true };
    /// IPv6 only (`--ipv4=false`).
    pub const V6: Families = Families {
        v4: false,
        v6: true,
    };
}

/// The [`PortMapping::host_ip`]s of a publish request's host address
/// (`None`: not given), IPv4 first: without one, every address of each
/// family in `families` (as Docker 27/28 and the CNI portmap plugin do:
/// both for a dual-stack container, `::` alone for an IPv6-only one);
/// `0.0.0.0` every IPv4 address only; `::` or another address that one
/// only (a family the container lacks is refused by the agent). Shared by
/// `netd container add -p`, the Docker driver and netd-cni.
pub fn host_addrs(given: Option<IpAddr>, families: Families) -> Vec<Option<IpAddr>> {
    let any6 = Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    match given {
        None => [(families.v4, None), (families.v6, any6)]
            .into_iter()
            .filter_map(|(on, host)| on.then_some(host))
            .collect(),
        Some(IpAddr::V4(ip)) if ip.is_unspecified() => vec![None],
        Some(ip) => vec![Some(ip)],
    }
}

impl PublishSpec {
    /// One mapping per port and family; host port 0 where netd must
    /// choose. Without a host address: one per family in `families`
    /// ([`host_addrs`]), each IPv6 mapping right after its IPv4 one.
    pub fn expand(&self, families: Families) -> Vec<PortMapping> {
        let (c0, c1) = self.container_ports;
        let hosts = host_addrs(self.host_ip, families);
        (c0..=c1)
            .flat_map(|c| {
                hosts.iter().map(move |host_ip| PortMapping {
                    host_ip: *host_ip,
                    host_port: self.host_ports.map_or(0, |(h0, _)| h0 + (c - c0)),
                    container_port: c,
                    proto: self.proto,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> Result<PublishSpec, String> {
        s.parse()
    }

    #[test]
    fn forms_of_docker_run_p() {
        let s = spec("8080:80").unwrap();
        assert_eq!(
            (s.host_ip, s.host_ports, s.container_ports, s.proto),
            (None, Some((8080, 8080)), (80, 80), Proto::Tcp)
        );
        let s = spec("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(s.host_ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(s.proto, Proto::Udp);
        let s = spec("80").unwrap();
        assert_eq!(s.host_ports, None);
        let s = spec("10.0.0.1::80/sctp").unwrap();
        assert_eq!((s.host_ports, s.proto), (None, Proto::Sctp));
        let s = spec("0.0.0.0:9000-9002:7000-7002").unwrap();
        assert_eq!(s.host_ip, Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
        // 0.0.0.0 is IPv4 only, even for a container with IPv6.
        let m = s.expand(Families::BOTH);
        assert_eq!(m.len(), 3);
        assert_eq!(
            (m[2].host_ip, m[2].host_port, m[2].container_port),
            (None, 9002, 7002)
        );
    }

    #[test]
    fn ipv6_forms() {
        let any6 = Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        let s = spec("[::]:8080:80").unwrap();
        assert_eq!((s.host_ip, s.host_ports), (any6, Some((8080, 8080))));
        let s = spec("[2001:db8::1]:8080-8081:80-81/udp").unwrap();
        assert_eq!(s.host_ip, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(s.proto, Proto::Udp);
        let m = s.expand(Families::V4);
        assert_eq!(m.len(), 2);
        assert!(m.iter().all(PortMapping::is_ipv6));
        assert_eq!(m[1].to_string(), "81/udp -> [2001:db8::1]:8081");
        let s = spec("[::1]::80").unwrap();
        assert_eq!(s.host_ports, None);
        // No address: both families for a container with IPv6, in pairs.
        let m = spec("8080-8081:80-81").unwrap().expand(Families::BOTH);
        let hosts: Vec<_> = m.iter().map(|m| (m.host_ip, m.host_port)).collect();
        assert_eq!(
            hosts,
            [(None, 8080), (any6, 8080), (None, 8081), (any6, 8081)]
        );
        assert_eq!(m[1].to_string(), "80/tcp -> [::]:8080");
        assert_eq!(spec("8080:80").unwrap().expand(Families::V4).len(), 1);
        // No address for an IPv6-only container: `::` alone.
        let m = spec("8080:80").unwrap().expand(Families::V6);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].to_string(), "80/tcp -> [::]:8080");
        // An IPv4 one stays IPv4 (for the agent to refuse).
        for ip in ["0.0.0.0", "127.0.0.1"] {
            let m = spec(&format!("{ip}:8080:80")).unwrap().expand(Families::V6);
            assert!(m.len() == 1 && !m[0].is_ipv6(), "{ip}: {m:?}");
        }
    }

    #[test]
    fn clashes_are_per_family() {
        let m = |s: &str| spec(s).unwrap().expand(Families::BOTH);
        let (v4, v6) = (m("0.0.0.0:8080:80").remove(0), m("[::]:8080:80").remove(0));
        assert!(!v4.clashes(&v6));
        assert!(v6.clashes(&m("[::1]:8080:81").remove(0)));
        assert!(v4.clashes(&m("127.0.0.1:8080:81").remove(0)));
        assert!(!v6.clashes(&m("127.0.0.1:8080:81").remove(0)));
        assert!(!v6.clashes(&m("[::]:8080:80/udp").remove(0)));
        assert!(!m("[::1]:8080:80")[0].clashes(&m("[::2]:8080:80")[0]));
    }

    /// The message is the contract: each bad spec is refused with what is
    /// wrong, naming the offending part.
    #[test]
    fn bad_specs_say_why() {
        for (bad, why) in [
            ("", r#"invalid container port "" (1-65535)"#),
            ("x", r#"invalid container port "x" (1-65535)"#),
            ("0", r#"invalid container port "0" (1-65535)"#),
            ("70000", r#"invalid container port "70000" (1-65535)"#),
            ("0:80", r#"invalid host port "0" (1-65535)"#),
            ("80/icmp", r#"unknown protocol "icmp" (tcp, udp or sctp)"#),
            (
                "1-2:80",
                r#"invalid publish spec "1-2:80": host and container ranges differ in length"#,
            ),
            (
                "9000-9001:80-82",
                r#"invalid publish spec "9000-9001:80-82": host and container ranges differ in length"#,
            ),
            (
                "a:b:c:d",
                r#"invalid publish spec "a:b:c:d": expected [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO] (an IPv6 HOST_IP in brackets)"#,
            ),
            (
                "300.0.0.1:80:80",
                r#"invalid host address "300.0.0.1" in "300.0.0.1:80:80" (IPv4, or IPv6 in brackets: [::1]:8080:80)"#,
            ),
            (
                "::1:8080:80",
                r#"invalid publish spec "::1:8080:80": expected [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO] (an IPv6 HOST_IP in brackets)"#,
            ),
            (
                "[::1:8080:80",
                r#"invalid publish spec "[::1:8080:80": expected [IPV6]:[HOST_PORT]:CONTAINER_PORT"#,
            ),
            (
                "[10.0.0.1]:8080:80",
                r#"invalid IPv6 host address "10.0.0.1" in "[10.0.0.1]:8080:80""#,
            ),
            (
                "[::1]:80",
                r#"invalid publish spec "[::1]:80": expected [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO] (an IPv6 HOST_IP in brackets)"#,
            ),
            (
                "90-80",
                r#"invalid container port range "90-80": start after end"#,
            ),
        ] {
            match spec(bad) {
                Ok(s) => panic!("{bad:?} accepted as {s:?}"),
                Err(e) => assert_eq!(e, why, "the refusal of {bad:?}"),
            }
        }
    }
}
