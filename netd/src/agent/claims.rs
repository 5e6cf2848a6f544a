//! What operations in flight have taken but not committed yet.
//!
//! A phased operation (see `shared`) checks its request against the stored
//! state *and* the claims of every other operation in flight, then claims
//! what it picked, all under the state lock; it drops the claim when it
//! commits (the stored state then holds the same things) or gives up.
//! Allocation therefore never hands out one container name, address,
//! published port, network name, subnet, bridge or datapath id twice, however
//! many requests run at once.
use std::{
    collections::HashMap,
    net::{Ipv4Addr, Ipv6Addr},
    sync::{Arc, Mutex},
};

use ipnet::{Ipv4Net, Ipv6Net};

use crate::{ipam, ports::PortMapping};

/// What one operation holds.
#[derive(Clone, Debug, Default)]
pub struct Claim {
    /// The name of a container being added.
    pub container_name: Option<String>,
    /// (network id, address) of endpoints being attached.
    pub addresses: Vec<(String, Ipv4Addr)>,
    /// (network id, IPv6 address) of endpoints being attached.
    pub addresses6: Vec<(String, Ipv6Addr)>,
    /// Host ports being published.
    pub ports: Vec<PortMapping>,
    /// Networks the operation attaches to: they cannot be removed meanwhile.
    pub uses_networks: Vec<String>,
    /// A network being created, or one being removed (its subnet, bridge
    /// and datapath id stay taken until its kernel objects are gone).
    pub network: Option<NetworkClaim>,
}

#[derive(Clone, Debug)]
pub struct NetworkClaim {
    pub name: String,
    pub subnet: Ipv4Net,
    pub subnet6: Option<Ipv6Net>,
    pub bridge: String,
    pub datapath_id: u32,
}

/// The claims of every operation in flight.
#[derive(Debug, Default)]
pub struct Claims {
    next: u64,
    held: HashMap<u64, Claim>,
}

/// Releases its claim when dropped (an operation that ends in any way,
/// a panic included, gives back what it took).
pub struct ClaimGuard {
    claims: Arc<Mutex<Claims>>,
    id: u64,
}

impl ClaimGuard {
    /// Adds to the claim (e.g. the ports an add picked after its address).
    pub fn extend(&self, f: impl FnOnce(&mut Claim)) {
        let mut claims = lock(&self.claims);
        if let Some(c) = claims.held.get_mut(&self.id) {
            f(c);
        }
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        lock(&self.claims).held.remove(&self.id);
    }
}

fn lock(claims: &Mutex<Claims>) -> std::sync::MutexGuard<'_, Claims> {
    claims.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes `claim` in the shared set; it lasts as long as the guard.
pub fn take(claims: &Arc<Mutex<Claims>>, claim: Claim) -> ClaimGuard {
    let mut held = lock(claims);
    held.next += 1;
    let id = held.next;
    held.held.insert(id, claim);
    ClaimGuard {
        claims: claims.clone(),
        id,
    }
}

impl Claims {
    fn all(&self) -> impl Iterator<Item = &Claim> {
        self.held.values()
    }

    pub fn container_name_taken(&self, name: &str) -> bool {
        self.all()
            .any(|c| c.container_name.as_deref() == Some(name))
    }

    /// Addresses claimed on network `net_id`.
    pub fn addresses_on<'a>(&'a self, net_id: &'a str) -> impl Iterator<Item = Ipv4Addr> + 'a {
        self.all()
            .flat_map(|c| c.addresses.iter())
            .filter(move |(n, _)| n == net_id)
            .map(|(_, ip)| *ip)
    }

    /// IPv6 addresses claimed on network `net_id`.
    pub fn addresses6_on<'a>(&'a self, net_id: &'a str) -> impl Iterator<Item = Ipv6Addr> + 'a {
        self.all()
            .flat_map(|c| c.addresses6.iter())
            .filter(move |(n, _)| n == net_id)
            .map(|(_, ip)| *ip)
    }

    /// IPv6 subnets of claimed networks.
    pub fn subnets6(&self) -> impl Iterator<Item = Ipv6Net> + '_ {
        self.networks().filter_map(|n| n.subnet6)
    }

    pub fn ports(&self) -> impl Iterator<Item = &PortMapping> {
        self.all().flat_map(|c| c.ports.iter())
    }

    /// Is an operation attaching something to network `net_id`?
    pub fn network_in_use(&self, net_id: &str) -> bool {
        self.all()
            .any(|c| c.uses_networks.iter().any(|n| n == net_id))
    }

    pub fn networks(&self) -> impl Iterator<Item = &NetworkClaim> {
        self.all().filter_map(|c| c.network.as_ref())
    }

    /// A claimed network whose subnet overlaps `subnet`.
    pub fn subnet_clash(&self, subnet: &Ipv4Net) -> Option<&NetworkClaim> {
        self.networks()
            .find(|n| n.subnet != crate::model::NO_IPV4 && ipam::overlaps(&n.subnet, subnet))
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::Proto;

    fn shared() -> Arc<Mutex<Claims>> {
        Arc::new(Mutex::new(Claims::default()))
    }

    fn port(p: u16) -> PortMapping {
        PortMapping {
            host_ip: None,
            host_port: p,
            container_port: 80,
            proto: Proto::Tcp,
        }
    }

    #[test]
    fn a_claim_is_seen_until_its_guard_goes() {
        let claims = shared();
        let g = take(
            &claims,
            Claim {
                container_name: Some("web".into()),
                addresses: vec![("n1".into(), Ipv4Addr::new(10, 0, 0, 2))],
                addresses6: vec![("n1".into(), "fd00::2".parse().unwrap())],
                ports: vec![port(8080)],
                uses_networks: vec!["n1".into()],
                network: None,
            },
        );
        {
            let c = claims.lock().unwrap();
            assert!(c.container_name_taken("web"));
            assert!(!c.container_name_taken("db"));
            assert_eq!(
                c.addresses_on("n1").collect::<Vec<_>>(),
                [Ipv4Addr::new(10, 0, 0, 2)]
            );
            assert_eq!(c.addresses_on("n2").count(), 0);
            assert_eq!(c.addresses6_on("n1").count(), 1);
            assert_eq!(c.ports().map(|p| p.host_port).collect::<Vec<_>>(), [8080]);
            assert!(c.network_in_use("n1"));
            assert!(!c.network_in_use("n2"));
        }
        g.extend(|c| c.ports.push(port(9090)));
        assert_eq!(claims.lock().unwrap().ports().count(), 2);
        drop(g);
        let c = claims.lock().unwrap();
        assert!(c.is_empty());
        assert!(!c.container_name_taken("web"));
        assert!(!c.network_in_use("n1"));
    }

    #[test]
    fn network_claims_clash_by_overlap() {
        let claims = shared();
        let _g = take(
            &claims,
            Claim {
                network: Some(NetworkClaim {
                    name: "a".into(),
                    subnet: "10.1.0.0/16".parse().unwrap(),
                    subnet6: Some("fd00:1::/64".parse().unwrap()),
                    bridge: "br-a".into(),
                    datapath_id: 7,
                }),
                ..Default::default()
            },
        );
        let c = claims.lock().unwrap();
        assert!(c.subnet_clash(&"10.1.2.0/24".parse().unwrap()).is_some());
        assert!(c.subnet_clash(&"10.0.0.0/8".parse().unwrap()).is_some());
        assert!(c.subnet_clash(&"10.2.0.0/16".parse().unwrap()).is_none());
        assert_eq!(c.networks().map(|n| n.datapath_id).max(), Some(7));
        assert_eq!(c.subnets6().count(), 1);
    }

    /// Many threads allocating addresses the way the agent does (check
    /// stored + claimed, then claim, under one lock) never get the same one.
    #[test]
    fn concurrent_allocation_never_repeats_an_address() {
        let claims = shared();
        let state = Arc::new(Mutex::new(()));
        let subnet: Ipv4Net = "10.9.0.0/24".parse().unwrap();
        let gateway = Ipv4Addr::new(10, 9, 0, 1);
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let claims = claims.clone();
                let state = state.clone();
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    for _ in 0..20 {
                        let _s = state.lock().unwrap();
                        let mut used: std::collections::HashSet<Ipv4Addr> =
                            claims.lock().unwrap().addresses_on("n").collect();
                        used.insert(gateway);
                        let ip = ipam::allocate(&subnet, None, &used, None).unwrap();
                        mine.push(take(
                            &claims,
                            Claim {
                                addresses: vec![("n".into(), ip)],
                                ..Default::default()
                            },
                        ));
                    }
                    mine
                })
            })
            .collect();
        let guards: Vec<ClaimGuard> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let total = guards.len();
        let all: Vec<Ipv4Addr> = claims.lock().unwrap().addresses_on("n").collect();
        let unique: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(total, 160);
        assert_eq!(all.len(), 160);
        assert_eq!(unique.len(), 160, "an address was handed out twice");
    }
}
