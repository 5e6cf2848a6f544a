//! The name table built from a `DnsView`: who is asking (by source address)
//! and which names that asker may see.
use std::{
    collections::{BTreeSet, HashMap, HashSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use super::{DnsNetwork, DnsView};

/// What the table says about a name, for one asker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup<A = Ipv4Addr> {
    /// Addresses of the containers with that name or alias: empty when
    /// none of them has an address of the family (IPv6 without IPv6,
    /// IPv4 on IPv6-only networks): the name exists, with no data.
    Found(Vec<A>),
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
    /// The same for IPv6 addresses (only names with some).
    names6: HashMap<(String, String), Vec<Ipv6Addr>>,
    /// Endpoint IPv6 address -> (network id, container name).
    by_ip6: HashMap<Ipv6Addr, (String, String)>,
    /// Every lower-case name or alias on any network.
    all_names: HashSet<String>,
    /// Container id -> (network id, address) it asks as through the
    /// listener inside its netns.
    resolvers: HashMap<String, (String, IpAddr)>,
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
            // An IPv6-only endpoint has no IPv4 address (0.0.0.0).
            let ip4 = (!n.ip.is_unspecified()).then_some(n.ip);
            if let Some(ip) = ip4 {
                t.by_ip
                    .insert(ip, (n.network_id.clone(), n.container.clone()));
            }
            if let Some(ip6) = n.ip6 {
                t.by_ip6
                    .insert(ip6, (n.network_id.clone(), n.container.clone()));
            }
            let served = t.networks.get(&n.network_id).is_some_and(|net| net.serve);
            // Who asks is known by a local container's networks only: a
            // remote container of the same name adds none.
            if !n.remote {
                let entry = t.container_networks.entry(n.container.clone()).or_default();
                if served {
                    entry.insert(n.network_id.clone());
                }
            }
            if !served {
                continue;
            }
            for name in std::iter::once(&n.container).chain(&n.aliases) {
                let key = normalize(name);
                if key.is_empty() {
                    continue;
                }
                t.all_names.insert(key.clone());
                if let Some(ip6) = n.ip6 {
                    push_unique(t.names6.entry((n.network_id.clone(), key.clone())), ip6);
                }
                let ips = t.names.entry((n.network_id.clone(), key)).or_default();
                if let Some(ip) = ip4.filter(|ip| !ips.contains(ip)) {
                    ips.push(ip);
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
    pub fn resolver(&self, id: &str) -> Option<(&str, IpAddr)> {
        self.resolvers.get(id).map(|(net, ip)| (net.as_str(), *ip))
    }

    /// The served networks the container at `src` is on, or `None` when
    /// `src` is no container netd knows.
    pub fn asker_networks(&self, src: impl Into<IpAddr>) -> Option<&BTreeSet<String>> {
        let (_, container) = match src.into() {
            IpAddr::V4(ip) => self.by_ip.get(&ip)?,
            IpAddr::V6(ip) => self.by_ip6.get(&ip)?,
        };
        self.container_networks.get(container)
    }

    /// Resolves `name` for the container at `src`, which asked on the
    /// listener of network `via`. Names on `via` win; otherwise every
    /// match on the asker's other networks.
    pub fn lookup(&self, src: impl Into<IpAddr>, via: &str, name: &str) -> Lookup {
        self.lookup_in(&self.names, src, via, name)
    }

    /// [`Self::lookup`] for AAAA: the same names are visible, with their
    /// IPv6 addresses (none when the containers have no IPv6).
    pub fn lookup6(&self, src: impl Into<IpAddr>, via: &str, name: &str) -> Lookup<Ipv6Addr> {
        self.lookup_in(&self.names6, src, via, name)
    }

    /// Which addresses of `map` answer `name`: the networks visible to the
    /// asker that have the name decide (the one asked through, `via`, wins).
    fn lookup_in<A: Copy + PartialEq>(
        &self,
        map: &HashMap<(String, String), Vec<A>>,
        src: impl Into<IpAddr>,
        via: &str,
        name: &str,
    ) -> Lookup<A> {
        let key = normalize(name);
        if !self.all_names.contains(&key) {
            return Lookup::Unknown;
        }
        let Some(nets) = self.asker_networks(src) else {
            return Lookup::Hidden;
        };
        let has = |net: &str| self.names.contains_key(&(net.to_string(), key.clone()));
        let addrs = |net: &str| {
            map.get(&(net.to_string(), key.clone()))
                .into_iter()
                .flatten()
                .copied()
        };
        if nets.contains(via) && has(via) {
            return Lookup::Found(addrs(via).collect());
        }
        let visible: Vec<&String> = nets.iter().filter(|n| has(n)).collect();
        if visible.is_empty() {
            return Lookup::Hidden;
        }
        let mut found = Vec::new();
        for ip in visible.into_iter().flat_map(|n| addrs(n)) {
            if !found.contains(&ip) {
                found.push(ip);
            }
        }
        Lookup::Found(found)
    }

    /// Reverse lookup of `ip` for the asker at `src`: `Some(Some(name))`
    /// when it is a visible container, `Some(None)` when the address lies in
    /// a netd network (answered NXDOMAIN), `None` when netd knows nothing
    /// about it (forward).
    pub fn reverse(&self, src: impl Into<IpAddr>, ip: IpAddr) -> Option<Option<String>> {
        let (in_netd, owner) = match ip {
            IpAddr::V4(ip) => (
                self.networks
                    .values()
                    .any(|n| !n.gateway.is_unspecified() && n.subnet.contains(&ip)),
                self.by_ip.get(&ip),
            ),
            IpAddr::V6(ip) => (
                self.networks
                    .values()
                    .any(|n| n.subnet6.is_some_and(|s| s.contains(&ip))),
                self.by_ip6.get(&ip),
            ),
        };
        if !in_netd {
            return None;
        }
        let visible = self.asker_networks(src);
        let name = owner.and_then(|(net, container)| {
            visible
                .filter(|v| v.contains(net))
                .map(|_| container.clone())
        });
        Some(name)
    }
}

fn push_unique<K, A: PartialEq>(entry: std::collections::hash_map::Entry<'_, K, Vec<A>>, ip: A) {
    let ips = entry.or_default();
    if !ips.contains(&ip) {
        ips.push(ip);
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
            subnet6: None,
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
            ip6: None,
            remote: false,
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
        let r = |a: &str| t.reverse(web, IpAddr::V4(ip(a)));
        assert_eq!(r("172.18.0.3"), Some(Some("api".into())));
        assert_eq!(r("172.19.0.2"), Some(None));
        assert_eq!(r("8.8.8.8"), None);
    }

    /// A dual-stack network: AAAA gives the IPv6 addresses of the same
    /// visible names, an existing name without IPv6 has none (not
    /// NXDOMAIN), hidden names stay hidden, PTR works for IPv6.
    #[test]
    fn ipv6_addresses() {
        let mut v = view();
        v.networks[1].subnet6 = Some("fd00:a::/64".parse().unwrap());
        v.networks[2].subnet6 = Some("fd00:b::/64".parse().unwrap());
        let with6 = |n: &mut DnsName, a: &str| n.ip6 = Some(a.parse().unwrap());
        with6(&mut v.names[0], "fd00:a::2");
        with6(&mut v.names[2], "fd00:b::2");
        with6(&mut v.names[3], "fd00:a::4");
        with6(&mut v.names[4], "fd00:b::4");
        let t = Table::new(&v);
        let web = ip("172.18.0.2");
        let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        assert_eq!(
            t.lookup6(web, "a", "www"),
            Lookup::Found(vec![v6("fd00:a::2")])
        );
        // api has no IPv6: its name exists, without AAAA data.
        assert_eq!(t.lookup6(web, "a", "api"), Lookup::Found(vec![]));
        assert_eq!(
            t.lookup6(web, "a", "svc"),
            Lookup::Found(vec![v6("fd00:a::2")])
        );
        assert_eq!(t.lookup6(web, "a", "db"), Lookup::Hidden);
        assert_eq!(t.lookup6(web, "a", "example.com"), Lookup::Unknown);
        let both_a = ip("172.18.0.4");
        assert_eq!(
            t.lookup6(both_a, "a", "db"),
            Lookup::Found(vec![v6("fd00:b::2")])
        );
        assert_eq!(
            t.lookup6(both_a, "a", "both"),
            Lookup::Found(vec![v6("fd00:a::4")])
        );
        let r = |a: &str| t.reverse(web, IpAddr::V6(v6(a)));
        assert_eq!(r("fd00:a::4"), Some(Some("both".into())));
        assert_eq!(r("fd00:b::2"), Some(None));
        assert_eq!(r("fd00:a::99"), Some(None));
        assert_eq!(r("2001:db8::1"), None);
    }

    /// IPv6-only networks: endpoints have no IPv4 (0.0.0.0), so two of
    /// them never share an asker identity; they ask as their IPv6 address,
    /// get AAAA data, and an existing name has no A data (not NXDOMAIN).
    #[test]
    fn ipv6_only_names() {
        let v6net = |id: &str, s: &str| DnsNetwork {
            subnet: crate::model::NO_IPV4,
            gateway: Ipv4Addr::UNSPECIFIED,
            subnet6: Some(s.parse().unwrap()),
            ..net(id, "10.0.0.0/8", true)
        };
        let only6 = |net: &str, c: &str, a: &str| DnsName {
            ip6: Some(a.parse().unwrap()),
            ..name(net, c, &[], "0.0.0.0")
        };
        let mut v = view();
        v.networks.push(v6net("x", "fd00:1::/64"));
        v.networks.push(v6net("y", "fd00:2::/64"));
        v.names.push(only6("x", "six1", "fd00:1::2"));
        v.names.push(only6("x", "six2", "fd00:1::3"));
        v.names.push(only6("y", "other", "fd00:2::2"));
        // web (dual: a and x) sees six1 over IPv6.
        v.names.push(DnsName {
            ip6: Some("fd00:1::4".parse().unwrap()),
            ..name("x", "web", &[], "0.0.0.0")
        });
        let t = Table::new(&v);
        let v6 = |s: &str| IpAddr::V6(s.parse().unwrap());
        let six1 = v6("fd00:1::2");
        assert_eq!(
            t.lookup6(six1, "x", "six2"),
            Lookup::Found(vec!["fd00:1::3".parse::<Ipv6Addr>().unwrap()])
        );
        assert_eq!(t.lookup(six1, "x", "six2"), Lookup::Found(vec![]));
        assert_eq!(t.lookup6(six1, "x", "other"), Lookup::Hidden);
        assert_eq!(t.lookup6(v6("fd00:2::2"), "y", "six1"), Lookup::Hidden);
        // web asks as its IPv4 address on a and still sees x's names.
        assert_eq!(
            t.lookup6(ip("172.18.0.2"), "a", "six1"),
            Lookup::Found(vec!["fd00:1::2".parse::<Ipv6Addr>().unwrap()])
        );
        assert!(t.asker_networks(Ipv4Addr::UNSPECIFIED).is_none());
        assert_eq!(t.reverse(six1, v6("fd00:1::3")), Some(Some("six2".into())));
        assert_eq!(t.reverse(six1, IpAddr::V4(Ipv4Addr::UNSPECIFIED)), None);
    }

    #[test]
    fn remote_names_resolve_but_do_not_ask() {
        let mut v = view();
        // A container `db` of another host on network a (overlay), with the
        // name of a local container on b.
        v.names.push(DnsName {
            remote: true,
            ..name("a", "db", &["svc"], "172.18.0.9")
        });
        let t = Table::new(&v);
        assert_eq!(
            t.lookup(ip("172.18.0.2"), "a", "db"),
            Lookup::Found(vec![ip("172.18.0.9")])
        );
        assert_eq!(
            t.lookup(ip("172.18.0.2"), "a", "svc"),
            Lookup::Found(vec![ip("172.18.0.2"), ip("172.18.0.3"), ip("172.18.0.9")])
        );
        // The local db (on b only) still sees nothing of a.
        assert_eq!(t.lookup(ip("172.19.0.2"), "b", "web"), Lookup::Hidden);
        assert_eq!(
            t.reverse(ip("172.18.0.2"), IpAddr::V4(ip("172.18.0.9"))),
            Some(Some("db".into()))
        );
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
