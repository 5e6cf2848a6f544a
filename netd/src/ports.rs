//! Publish specs, as `docker run -p`:
//! `[HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/tcp|udp|sctp]`.
use std::{fmt, net::Ipv4Addr, str::FromStr};

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
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Sctp => 132,
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
    /// `None`: every host address.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        write!(
            f,
            "{}/{} -> {ip}:{}",
            self.container_port, self.proto, self.host_port
        )
    }
}

/// A parsed spec: host port 0 means "netd picks one".
#[derive(Debug, PartialEq, Eq)]
pub struct PublishSpec {
    pub host_ip: Option<Ipv4Addr>,
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
        let parts: Vec<&str> = rest.split(':').collect();
        let (host_ip, host, container) = match parts.as_slice() {
            [c] => (None, None, *c),
            [h, c] => (None, Some(*h), *c),
            [ip, h, c] => (Some(*ip), Some(*h).filter(|h| !h.is_empty()), *c),
            _ => return Err(format!("invalid publish spec {spec:?}: expected [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]")),
        };
        let host_ip = match host_ip {
            Some(ip) => {
                let ip: Ipv4Addr = ip
                    .parse()
                    .map_err(|_| format!("invalid host address {ip:?} in {spec:?} (IPv4 only)"))?;
                (!ip.is_unspecified()).then_some(ip)
            }
            None => None,
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

impl PublishSpec {
    /// One mapping per port; host port 0 where netd must choose.
    pub fn expand(&self) -> Vec<PortMapping> {
        let (c0, c1) = self.container_ports;
        (c0..=c1)
            .map(|c| PortMapping {
                host_ip: self.host_ip,
                host_port: self.host_ports.map_or(0, |(h0, _)| h0 + (c - c0)),
                container_port: c,
                proto: self.proto,
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
        assert_eq!(s.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(s.proto, Proto::Udp);
        let s = spec("80").unwrap();
        assert_eq!(s.host_ports, None);
        let s = spec("10.0.0.1::80/sctp").unwrap();
        assert_eq!((s.host_ports, s.proto), (None, Proto::Sctp));
        let s = spec("0.0.0.0:9000-9002:7000-7002").unwrap();
        assert_eq!(s.host_ip, None);
        let m = s.expand();
        assert_eq!(m.len(), 3);
        assert_eq!((m[2].host_port, m[2].container_port), (9002, 7002));
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
                r#"invalid publish spec "a:b:c:d": expected [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]"#,
            ),
            (
                "300.0.0.1:80:80",
                r#"invalid host address "300.0.0.1" in "300.0.0.1:80:80" (IPv4 only)"#,
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
