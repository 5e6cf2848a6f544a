//! The name table built from a `DnsView`: who is asking (by source address)
//! and which names that asker may see.
use std::{
    collections::{BTreeSet, HashMap, HashSet},
    net::Ipv4Addr,
};

use super::{DnsNetwork, DnsView};

/// What the table says about a name, for one asker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Addresses of the containers with that name or alias (never empty).
    Found(Vec<Ipv4Addr>),
    /// A container name or alias, but not on a network the asker is on:
    /// answered NXDOMAIN and never forwarded.
    Hidden,
    /// Not a name netd knows: forward (unless the network is internal).
    Unknown,
}

/// An immutable snapshot of every served name; replaced whole on each sync.
#[derive(Debug, Default)]
pub struct Table {
    networks: HashMap<String, DnsNetwork>,
    /// Endpoint address -> (network id, container name).
    by_ip: HashMap<Ipv4Addr, (String, String)>,
    /// Container name -> ids of its served networks, sorted.
    container_networks: HashMap<String, BTreeSet<String>>,
    /// (network id, lower-case name) -> addresses, in view order, unique.
    names: HashMap<(String, String), Vec<Ipv4Addr>>,
    /// Every lower-case name or alias on any network.
    all_names: HashSet<String>,
    /// Container id -> (network id, address) it asks as through the
    /// listener inside its netns.
    resolvers: HashMap<String, (String, Ipv4Addr)>,
}

/// Lower-case, without the trailing dot of a fully qualified name.
pub fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

impl Table {
    pub fn new(view: &DnsView) -> Table {
        let mut t = Table {
            networks: view
                .networks
                .iter()
                .map(|n| (n.id.clone(), n.clone()))
                .collect(),
            resolvers: view
                .resolvers
                .iter()
                .map(|r| (r.container_id.clone(), (r.network_id.clone(), r.ip)))
                .collect(),
            ..Default::default()
        };
        for n in &view.names {
            t.by_ip
                .insert(n.ip, (n.network_id.clone(), n.container.clone()));
            let served = t.networks.get(&n.network_id).is_some_and(|net| net.serve);
            let entry = t.container_networks.entry(n.container.clone()).or_default();
            if !served {
                continue;
            }
            entry.insert(n.network_id.clone());
            for name in std::iter::once(&n.container).chain(&n.aliases) {
                let key = normalize(name);
                if key.is_empty() {
                    continue;
                }
                t.all_names.insert(key.clone());
                let ips = t.names.entry((n.network_id.clone(), key)).or_default();
                if !ips.contains(&n.ip) {
                    ips.push(n.ip);
                }
            }
        }
        t
    }

    pub fn network(&self, id: &str) -> Option<&DnsNetwork> {
        self.networks.get(id)
    }

    /// Who asks through the listener in container `id`'s netns: the
    /// network and address its queries count as coming from.
    pub fn resolver(&self, id: &str) -> Option<(&str, Ipv4Addr)> {
        self.resolvers.get(id).map(|(net, ip)| (net.as_str(), *ip))
    }

    /// The served networks the container at `src` is on, or `None` when
    /// `src` is no container netd knows.
    pub fn asker_networks(&self, src: Ipv4Addr) -> Option<&BTreeSet<String>> {
        let (_, container) = self.by_ip.get(&src)?;
        self.container_networks.get(container)
    }

    /// Resolves `name` for the container at `src`, which asked on the
    /// listener of network `via`. Names on `via` win; otherwise every
    /// match on the asker's other networks.
    pub fn lookup(&self, src: Ipv4Addr, via: &str, name: &str) -> Lookup {
        let key = normalize(name);
        if !self.all_names.contains(&key) {
            return Lookup::Unknown;
        }
        let Some(nets) = self.asker_networks(src) else {
            return Lookup::Hidden;
        };
        if nets.contains(via) {
            if let Some(ips) = self.names.get(&(via.to_string(), key.clone())) {
                return Lookup::Found(ips.clone());
            }
        }
        let mut found = Vec::new();
        for net in nets {
            for ip in self
                .names
                .get(&(net.clone(), key.clone()))
                .into_iter()
                .flatten()
            {
                if !found.contains(ip) {
                    found.push(*ip);
                }
            }
        }
        if found.is_empty() {
            Lookup::Hidden
        } else {
            Lookup::Found(found)
        }
    }

    /// Reverse lookup of `ip` for the asker at `src`: `Some(Some(name))`
    /// when it is a visible container, `Some(None)` when the address lies in
    /// a netd network (answered NXDOMAIN), `None` when netd knows nothing
    /// about it (forward).
    pub fn reverse(&self, src: Ipv4Addr, ip: Ipv4Addr) -> Option<Option<String>> {
        let in_netd = self.networks.values().any(|n| n.subnet.contains(&ip));
        if !in_netd {
            return None;
        }
        let visible = self.asker_networks(src);
        let name = self.by_ip.get(&ip).and_then(|(net, container)| {
            visible
                .filter(|v| v.contains(net))
                .map(|_| container.clone())
        });
        Some(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipnet::Ipv4Net;

    use crate::dns::{DnsName, DnsNetwork};

    fn net(id: &str, subnet: &str, serve: bool) -> DnsNetwork {
        let subnet: Ipv4Net = subnet.parse().unwrap();
        DnsNetwork {
            id: id.into(),
            subnet,
            gateway: subnet.hosts().next().unwrap(),
            internal: false,
            serve,
        }
    }

    fn name(net: &str, c: &str, aliases: &[&str], ip: &str) -> DnsName {
        DnsName {
            network_id: net.into(),
            container: c.into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            ip: ip.parse().unwrap(),
        }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn view() -> DnsView {
        DnsView {
            networks: vec![
                net("bridge", "172.17.0.0/16", false),
                net("a", "172.18.0.0/16", true),
                net("b", "172.19.0.0/16", true),
            ],
            names: vec![
                name("a", "web", &["www", "svc"], "172.18.0.2"),
                name("a", "api", &["svc"], "172.18.0.3"),
                name("b", "db", &[], "172.19.0.2"),
                // `both` is on a and b.
                name("a", "both", &[], "172.18.0.4"),
                name("b", "both", &[], "172.19.0.4"),
                name("bridge", "old", &["legacy"], "172.17.0.2"),
                name("bridge", "web2", &[], "172.17.0.3"),
                name("a", "web2", &[], "172.18.0.5"),
            ],
            resolvers: vec![],
            upstreams: vec![],
        }
    }

    #[test]
    fn names_and_aliases_on_the_same_network() {
        let t = Table::new(&view());
        let web = ip("172.18.0.2");
        assert_eq!(
            t.lookup(web, "a", "api"),
            Lookup::Found(vec![ip("172.18.0.3")])
        );
        assert_eq!(
            t.lookup(web, "a", "www."),
            Lookup::Found(vec![ip("172.18.0.2")])
        );
        assert_eq!(
            t.lookup(web, "a", "WeB"),
            Lookup::Found(vec![ip("172.18.0.2")])
        );
    }

    #[test]
    fn shared_alias_gives_every_address() {
        let t = Table::new(&view());
        assert_eq!(
            t.lookup(ip("172.18.0.3"), "a", "svc"),
            Lookup::Found(vec![ip("172.18.0.2"), ip("172.18.0.3")])
        );
    }

    #[test]
    fn other_networks_are_hidden() {
        let t = Table::new(&view());
        // web (on a) cannot see db (on b only).
        assert_eq!(t.lookup(ip("172.18.0.2"), "a", "db"), Lookup::Hidden);
        // db cannot see web, not even via a's listener.
        assert_eq!(t.lookup(ip("172.19.0.2"), "a", "web"), Lookup::Hidden);
        assert_eq!(t.lookup(ip("172.19.0.2"), "b", "web"), Lookup::Hidden);
        // Unknown askers see nothing.
        assert_eq!(t.lookup(ip("10.0.0.9"), "a", "web"), Lookup::Hidden);
        // Names nobody has are forwarded.
        assert_eq!(
            t.lookup(ip("172.18.0.2"), "a", "example.com"),
            Lookup::Unknown
        );
    }

    #[test]
    fn two_networks_resolve_both() {
        let t = Table::new(&view());
        let both_a = ip("172.18.0.4");
        assert_eq!(
            t.lookup(both_a, "a", "db"),
            Lookup::Found(vec![ip("172.19.0.2")])
        );
        assert_eq!(
            t.lookup(both_a, "a", "web"),
            Lookup::Found(vec![ip("172.18.0.2")])
        );
        // Its own name: the address on the network it asked through.
        assert_eq!(t.lookup(both_a, "a", "both"), Lookup::Found(vec![both_a]));
        assert_eq!(
            t.lookup(ip("172.19.0.4"), "b", "both"),
            Lookup::Found(vec![ip("172.19.0.4")])
        );
        // web sees both's address on a only.
        assert_eq!(
            t.lookup(ip("172.18.0.2"), "a", "both"),
            Lookup::Found(vec![both_a])
        );
    }

    #[test]
    fn default_bridge_has_no_names() {
        let t = Table::new(&view());
        // old is only on the default bridge: nobody resolves it, not even
        // itself, and the name is forwarded like any other.
        assert_eq!(t.lookup(ip("172.17.0.2"), "bridge", "old"), Lookup::Unknown);
        assert_eq!(t.lookup(ip("172.18.0.2"), "a", "legacy"), Lookup::Unknown);
        // web2 is on bridge and a: resolvable on a, with its a address.
        assert_eq!(
            t.lookup(ip("172.18.0.2"), "a", "web2"),
            Lookup::Found(vec![ip("172.18.0.5")])
        );
        assert_eq!(t.lookup(ip("172.17.0.2"), "bridge", "web2"), Lookup::Hidden);
        assert!(t.asker_networks(ip("172.17.0.2")).unwrap().is_empty());
    }

    #[test]
    fn reverse_lookups() {
        let t = Table::new(&view());
        let web = ip("172.18.0.2");
        assert_eq!(t.reverse(web, ip("172.18.0.3")), Some(Some("api".into())));
        assert_eq!(t.reverse(web, ip("172.19.0.2")), Some(None));
        assert_eq!(t.reverse(web, ip("8.8.8.8")), None);
    }

    #[test]
    fn sync_replaces_everything() {
        let mut v = view();
        v.names.retain(|n| n.container != "api");
        let t = Table::new(&v);
        assert_eq!(t.lookup(ip("172.18.0.2"), "a", "api"), Lookup::Unknown);
        assert_eq!(
            t.lookup(ip("172.18.0.2"), "a", "svc"),
            Lookup::Found(vec![ip("172.18.0.2")])
        );
    }
}
