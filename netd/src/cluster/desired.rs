//! What the datapath must hold for overlay networks on this host, computed
//! from the local networks and the cluster view: the whole desired state,
//! handed over after every change (the datapath diffs it with its maps).
use std::{collections::BTreeMap, net::Ipv4Addr};

use ipnet::Ipv4Net;

use super::view::View;
use crate::model::Network;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OverlayState {
    /// This host's tunnel (underlay) address; `None` without a cluster.
    pub local_addr: Option<Ipv4Addr>,
    /// Overlay networks realised on this host.
    pub networks: Vec<OverlayNet>,
    /// Endpoints of live other hosts on those networks.
    pub remotes: Vec<RemoteEndpoint>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlayNet {
    /// The network's datapath id on this host.
    pub net_id: u32,
    pub vni: u32,
    pub subnet: Ipv4Net,
    pub mtu: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteEndpoint {
    pub ip: Ipv4Addr,
    pub net_id: u32,
    pub vni: u32,
    /// Its host's tunnel address.
    pub host_addr: Ipv4Addr,
    pub mac: [u8; 6],
}

/// `me`: this host's id and tunnel address.
pub fn compute(
    me: Option<(&str, Ipv4Addr)>,
    networks: &BTreeMap<String, Network>,
    view: &View,
) -> OverlayState {
    let Some((me, local_addr)) = me else {
        return OverlayState::default();
    };
    let overlays: BTreeMap<&str, (&Network, u32)> = networks
        .values()
        .filter_map(|n| Some((n.id.as_str(), (n, n.vni.filter(|_| n.is_overlay())?))))
        .collect();
    let nets = overlays
        .values()
        .map(|(n, vni)| OverlayNet {
            net_id: n.datapath_id,
            vni: *vni,
            subnet: n.subnet,
            mtu: n.mtu,
        })
        .collect();
    let remotes = view
        .remote_endpoints(me)
        .filter_map(|(e, host_addr)| {
            let (n, vni) = overlays.get(e.network_id.as_str())?;
            // An address outside the subnet, or a host claiming our own
            // tunnel address, is not believed.
            if !n.subnet.contains(&e.ip) || host_addr == local_addr {
                return None;
            }
            Some(RemoteEndpoint {
                ip: e.ip,
                net_id: n.datapath_id,
                vni: *vni,
                host_addr,
                mac: e.mac,
            })
        })
        .collect();
    OverlayState {
        local_addr: Some(local_addr),
        networks: nets,
        remotes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::records::{EndpointRecord, HostRecord};
    use crate::model::{Driver, Owner};

    fn network(id: &str, subnet: &str, driver: Driver, dp: u32) -> Network {
        let subnet: Ipv4Net = subnet.parse().unwrap();
        Network {
            id: id.into(),
            name: id.into(),
            datapath_id: dp,
            bridge: format!("br-{id}"),
            subnet,
            gateway: subnet.hosts().next().unwrap(),
            ip_range: None,
            internal: false,
            icc: true,
            masquerade: true,
            mtu: 1450,
            labels: Default::default(),
            options: Default::default(),
            created: String::new(),
            owner: Owner::Netd,
            ipv6: None,
            driver,
            vni: (driver == Driver::Overlay).then_some(4096 + dp),
        }
    }

    fn endpoint(net: &str, host: &str, ip: &str) -> EndpointRecord {
        let ip: Ipv4Addr = ip.parse().unwrap();
        EndpointRecord {
            network_id: net.into(),
            host: host.into(),
            container_id: "c".into(),
            container: "c".into(),
            ip,
            mac: crate::model::mac_for(ip),
            aliases: vec![],
        }
    }

    #[test]
    fn remotes_of_realised_overlays_only() {
        let mut networks = BTreeMap::new();
        networks.insert(
            "ov".into(),
            network("ov", "10.0.0.0/24", Driver::Overlay, 3),
        );
        networks.insert(
            "br".into(),
            network("br", "172.18.0.0/16", Driver::Bridge, 1),
        );
        let mut view = View::default();
        for (id, last) in [("a", 1), ("b", 2)] {
            view.hosts.insert(
                id.into(),
                HostRecord {
                    id: id.into(),
                    hostname: id.into(),
                    address: Ipv4Addr::new(198, 51, 100, last),
                    since: String::new(),
                },
            );
        }
        for e in [
            endpoint("ov", "a", "10.0.0.2"),
            endpoint("ov", "b", "10.0.0.3"),
            // Not realised here, not overlay, outside its subnet, dead host.
            endpoint("other", "b", "10.0.1.2"),
            endpoint("br", "b", "172.18.0.2"),
            endpoint("ov", "b", "10.9.9.9"),
            endpoint("ov", "gone", "10.0.0.4"),
        ] {
            view.endpoints.insert((e.network_id.clone(), e.ip), e);
        }
        let me = Ipv4Addr::new(198, 51, 100, 1);
        let s = compute(Some(("a", me)), &networks, &view);
        assert_eq!(s.local_addr, Some(me));
        assert_eq!(
            s.networks,
            vec![OverlayNet {
                net_id: 3,
                vni: 4099,
                subnet: "10.0.0.0/24".parse().unwrap(),
                mtu: 1450
            }]
        );
        assert_eq!(
            s.remotes,
            vec![RemoteEndpoint {
                ip: Ipv4Addr::new(10, 0, 0, 3),
                net_id: 3,
                vni: 4099,
                host_addr: Ipv4Addr::new(198, 51, 100, 2),
                mac: [2, 0x42, 10, 0, 0, 3],
            }]
        );
        assert_eq!(compute(None, &networks, &view), OverlayState::default());
    }
}
