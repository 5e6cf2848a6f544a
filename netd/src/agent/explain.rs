//! `netd explain`: resolving both sides to the packet SRC would send and
//! where it starts, then the walk (`crate::explain`) on a sandbox copy of
//! the maps.
use std::net::Ipv4Addr;

use serde_json::{json, Value};

use super::Agent;
use crate::{
    datapath::{addr_key, Sandbox},
    error::{invalid, AgentError, AgentResult},
    explain::{
        self, packet::Packet, packet::Proto, EndpointName, RemoteName, Start, Topology, UplinkName,
    },
    model::{mac_for, Container, Mode},
    schema::Explain,
};

/// Stand-ins for "a machine beyond the uplink" (documentation ranges).
const WORLD_DST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const WORLD_SRC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

/// The packet, where it starts, its MACs and how both sides are shown.
struct Placed {
    start: Start,
    pkt: Packet,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    from: Value,
    to: Value,
}

#[derive(Clone, Debug)]
enum Side {
    /// A container, with the address it was named by (if any).
    Container(Box<Container>, Option<Ipv4Addr>),
    Host(Option<Ipv4Addr>),
    World(Option<Ipv4Addr>),
    /// An address in a netd subnet that no container holds.
    Unused(Ipv4Addr),
    /// A container of an overlay network on another host.
    Remote(Ipv4Addr, RemoteName),
}

impl Agent {
    /// The walk of one packet from `req.src` to `req.dst`, with the
    /// sandbox filled from the live maps first.
    pub fn explain(&mut self, req: &Explain, sb: &mut Sandbox) -> AgentResult<Value> {
        self.datapath.fill_sandbox(sb)?;
        let proto = match (&req.proto, req.port) {
            (Some(p), _) => Proto::parse(p).ok_or_else(|| {
                AgentError::Invalid(format!(
                    "unknown protocol {p:?}: use tcp, udp, sctp or icmp"
                ))
            })?,
            (None, Some(_)) => Proto::Tcp,
            (None, None) => Proto::Icmp,
        };
        let dport = match (proto, req.port) {
            (Proto::Icmp, Some(_)) => {
                return invalid("ICMP has no ports: drop :PORT or give /tcp, /udp or /sctp")
            }
            (Proto::Icmp, None) => 0,
            (_, Some(0)) => return invalid("port 0 is not a destination port"),
            (_, Some(p)) => p,
            (_, None) => {
                return invalid(format!(
                    "{} needs a port: DST:PORT/{}",
                    proto.name(),
                    proto.name()
                ))
            }
        };
        let src = self.side(&req.src, sb)?;
        let dst = self.side(&req.dst, sb)?;
        let sport = 32768 + rand::random::<u16>() % 28000;
        let p = self.place(&src, &dst, proto, sport, dport, sb)?;
        let topo = self.topology();
        let walk = explain::walk(sb, &topo, p.start, p.pkt, p.src_mac, p.dst_mac)?;
        let mut out = serde_json::to_value(&walk).map_err(anyhow::Error::from)?;
        out["from"] = p.from;
        out["to"] = p.to;
        Ok(out)
    }

    fn side(&self, s: &str, sb: &mut Sandbox) -> AgentResult<Side> {
        match s {
            "host" => return Ok(Side::Host(None)),
            "world" => return Ok(Side::World(None)),
            _ => {}
        }
        if let Ok(ip) = s.parse::<Ipv4Addr>() {
            if let Some(c) = self
                .containers
                .values()
                .find(|c| c.endpoints.iter().any(|e| e.ip == ip))
            {
                return Ok(Side::Container(Box::new(c.clone()), Some(ip)));
            }
            if ip.is_loopback() || sb.is_host_addr(addr_key(ip))? {
                return Ok(Side::Host(Some(ip)));
            }
            if let Some((_, r)) = self.remote_names().into_iter().find(|(a, _)| *a == ip) {
                return Ok(Side::Remote(ip, r));
            }
            if self.networks.values().any(|n| n.subnet.contains(&ip)) {
                return Ok(Side::Unused(ip));
            }
            return Ok(Side::World(Some(ip)));
        }
        // Names before ids, as Docker resolves them: a remote container's
        // name must not lose to a local container whose id merely starts
        // with it (ids are hex, so a name like `b1` often is a prefix).
        let remote = || {
            self.remote_names()
                .into_iter()
                .find(|(_, r)| r.container == s)
        };
        let c = match self.containers.values().find(|c| c.name == s) {
            Some(c) => c,
            None => match remote() {
                Some((ip, r)) => return Ok(Side::Remote(ip, r)),
                None => self.find_container(s).map_err(|_| {
                    AgentError::NotFound(format!(
                        "{s:?} is no container, address, `host` or `world`"
                    ))
                })?,
            },
        };
        match &c.mode {
            Mode::Host => Ok(Side::Host(None)),
            Mode::None => invalid(format!("container {} has no network (mode none)", c.name)),
            Mode::Container(other) => {
                let owner = self.containers.get(other).cloned().ok_or_else(|| {
                    AgentError::NotFound(format!("the container {} shares is gone", c.name))
                })?;
                Ok(Side::Container(Box::new(owner), None))
            }
            Mode::Bridge => Ok(Side::Container(Box::new(c.clone()), None)),
        }
    }

    fn place(
        &self,
        src: &Side,
        dst: &Side,
        proto: Proto,
        sport: u16,
        dport: u16,
        sb: &mut Sandbox,
    ) -> AgentResult<Placed> {
        let first_uplink = self.uplinks.iter().next();
        let packet = |src, dst| Packet {
            proto,
            src,
            sport,
            dst,
            dport,
        };
        match src {
            Side::Container(c, named) => {
                // The container's routes: the interface whose subnet holds
                // the destination, else the first (default route).
                let dst_hint = match dst {
                    Side::Container(d, Some(ip)) if d.id != c.id => Some(*ip),
                    Side::Container(d, _) => self.shared_address(c, d),
                    Side::Host(ip) | Side::World(ip) => *ip,
                    Side::Unused(ip) | Side::Remote(ip, _) => Some(*ip),
                };
                let ep = c
                    .endpoints
                    .iter()
                    .find(|e| Some(e.ip) == *named)
                    .or_else(|| {
                        c.endpoints.iter().find(|e| {
                            dst_hint.is_some_and(|d| {
                                self.networks
                                    .get(&e.network_id)
                                    .is_some_and(|n| n.subnet.contains(&d))
                            })
                        })
                    })
                    .or(c.endpoints.first())
                    .ok_or_else(|| {
                        AgentError::Invalid(format!("container {} has no network", c.name))
                    })?;
                let net = self.networks.get(&ep.network_id).ok_or_else(|| {
                    AgentError::NotFound("the container's network is gone".into())
                })?;
                let dst_ip = match dst {
                    Side::Container(_, Some(ip)) => *ip,
                    Side::Container(d, None) => match self.shared_address(c, d) {
                        Some(ip) => ip,
                        None => first_address(d)?,
                    },
                    Side::Host(ip) => ip.unwrap_or(net.gateway),
                    Side::World(ip) => ip.unwrap_or(WORLD_DST),
                    Side::Unused(ip) | Side::Remote(ip, _) => *ip,
                };
                let Some(r) = sb.endpoint_by_ip(addr_key(ep.ip))? else {
                    return invalid(format!(
                        "container {} ({}) is not in the datapath yet; try again in a moment",
                        c.name, ep.ip
                    ));
                };
                let next_hop = if net.subnet.contains(&dst_ip) {
                    dst_ip
                } else {
                    net.gateway
                };
                Ok(Placed {
                    start: Start::Container { ifindex: r.ifindex },
                    pkt: packet(ep.ip, dst_ip),
                    src_mac: mac_for(ep.ip),
                    dst_mac: mac_for(next_hop),
                    from: json!({"kind": "container", "name": c.name, "network": net.name, "address": ep.ip}),
                    to: self.describe(dst, dst_ip),
                })
            }
            Side::Host(named) => {
                let dst_ip = match dst {
                    Side::Container(_, Some(ip)) | Side::Unused(ip) | Side::Remote(ip, _) => *ip,
                    Side::Container(d, None) => first_address(d)?,
                    Side::Host(ip) => ip.unwrap_or(Ipv4Addr::LOCALHOST),
                    Side::World(ip) => ip.unwrap_or(WORLD_DST),
                };
                let via = self
                    .networks
                    .values()
                    .find(|n| n.subnet.contains(&dst_ip))
                    .map(|n| n.gateway);
                let src_ip = named
                    .or(via)
                    .or_else(|| match dst {
                        Side::Host(_) => Some(Ipv4Addr::LOCALHOST),
                        _ => first_uplink.and_then(|(_, u)| u.address),
                    })
                    .unwrap_or(Ipv4Addr::UNSPECIFIED);
                Ok(Placed {
                    start: Start::Host,
                    pkt: packet(src_ip, dst_ip),
                    src_mac: mac_for(via.unwrap_or(src_ip)),
                    dst_mac: mac_for(dst_ip),
                    from: json!({"kind": "host", "address": src_ip}),
                    to: self.describe(dst, dst_ip),
                })
            }
            Side::World(named) => {
                let Some((uplink, state)) = first_uplink else {
                    return invalid(
                        "the agent has no uplink, so nothing reaches it from the world (see --uplink)",
                    );
                };
                let dst_ip = match dst {
                    Side::Container(_, Some(ip)) | Side::Unused(ip) | Side::Remote(ip, _) => *ip,
                    Side::Container(d, None) => first_address(d)?,
                    Side::Host(ip) => match ip.or(state.address) {
                        Some(ip) => ip,
                        None => return invalid(format!("uplink {uplink} has no IPv4 address")),
                    },
                    Side::World(_) => return invalid("world to world never meets netd's programs"),
                };
                let src_ip = named.unwrap_or(WORLD_SRC);
                Ok(Placed {
                    start: Start::World {
                        ifindex: state.ifindex,
                    },
                    pkt: packet(src_ip, dst_ip),
                    src_mac: [0x02, 0, 0, 0, 0, 0x01],
                    dst_mac: [0x02, 0, 0, 0, 0, 0x02],
                    from: json!({"kind": "world", "address": src_ip, "uplink": uplink}),
                    to: self.describe(dst, dst_ip),
                })
            }
            Side::Unused(ip) => invalid(format!(
                "no container has {ip}: name a container, an address it holds, `host` or `world`"
            )),
            Side::Remote(ip, r) => invalid(format!(
                "{} ({ip}) is a container on host {} ({}): run netd explain there; what it \
                 sends reaches this host through the VXLAN tunnel, which a test run here cannot carry",
                r.container, r.host, r.host_address
            )),
        }
    }

    /// `d`'s address on a network it shares with `c`.
    fn shared_address(&self, c: &Container, d: &Container) -> Option<Ipv4Addr> {
        d.endpoints
            .iter()
            .find(|de| c.endpoints.iter().any(|ce| ce.network_id == de.network_id))
            .map(|e| e.ip)
    }

    fn describe(&self, side: &Side, ip: Ipv4Addr) -> Value {
        match side {
            Side::Container(c, _) => {
                let network = c
                    .endpoints
                    .iter()
                    .find(|e| e.ip == ip)
                    .and_then(|e| self.networks.get(&e.network_id))
                    .map(|n| n.name.clone());
                json!({"kind": "container", "name": c.name, "network": network, "address": ip})
            }
            Side::Host(_) => json!({"kind": "host", "address": ip}),
            Side::World(_) => json!({"kind": "world", "address": ip}),
            Side::Unused(_) => json!({"kind": "address", "address": ip}),
            Side::Remote(_, r) => json!({"kind": "remote", "name": r.container,
                "network": r.network, "host": r.host, "host_address": r.host_address,
                "address": ip}),
        }
    }

    fn topology(&self) -> Topology {
        let mut topo = Topology::default();
        for c in self.containers.values() {
            for e in &c.endpoints {
                let network = self
                    .networks
                    .get(&e.network_id)
                    .map_or_else(|| e.network_id.clone(), |n| n.name.clone());
                topo.endpoints.insert(
                    e.ip,
                    EndpointName {
                        container: c.name.clone(),
                        network,
                        device: e.host_ifname.clone(),
                    },
                );
            }
        }
        topo.remotes = self.remote_names().into_iter().collect();
        topo.subnets = self
            .networks
            .values()
            .map(|n| (n.subnet, n.name.clone(), n.gateway))
            .collect();
        topo.uplinks = self
            .uplinks
            .iter()
            .map(|(name, u)| UplinkName {
                name: name.clone(),
                ifindex: u.ifindex,
                address: u.address,
            })
            .collect();
        topo
    }

    /// What a sandbox for `explain` needs: the bpffs and the conntrack size.
    pub fn sandbox_params(&mut self) -> AgentResult<(std::path::PathBuf, u32)> {
        Ok((self.config.bpffs.clone(), self.datapath.ct_capacity()?))
    }
}

/// The address of a container's first network.
fn first_address(c: &Container) -> AgentResult<Ipv4Addr> {
    c.endpoints
        .first()
        .map(|e| e.ip)
        .ok_or_else(|| AgentError::Invalid(format!("container {} has no address", c.name)))
}
