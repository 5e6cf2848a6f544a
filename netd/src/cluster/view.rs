//! The agent's mirror of the cluster store: filled from a snapshot, kept
//! current by the watch's events, and saved in the local store so that a
//! host cut off from etcd (or restarted while it is) keeps what it knew.
use std::{collections::BTreeMap, net::Ipv4Addr};

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::{
    keys::{self, Key},
    records::{AddressClaim, EndpointRecord, HostRecord, NetworkRecord},
};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// The store revision this view reflects (0: never synced).
    pub revision: i64,
    pub networks: BTreeMap<String, NetworkRecord>,
    pub hosts: BTreeMap<String, HostRecord>,
    /// (network id, address) → endpoint.
    pub endpoints: BTreeMap<(String, Ipv4Addr), EndpointRecord>,
    /// (network id, address) → who holds it.
    pub addresses: BTreeMap<(String, Ipv4Addr), AddressClaim>,
}

/// One change the watch reports.
pub enum Change<'a> {
    Put(&'a str, &'a [u8]),
    Delete(&'a str),
}

impl View {
    /// Applies one change; a value that does not parse is logged and
    /// ignored (the key is then treated as absent).
    pub fn apply(&mut self, change: Change<'_>) {
        match change {
            Change::Put(key, value) => self.put(key, value),
            Change::Delete(key) => self.delete(key),
        }
    }

    fn put(&mut self, key: &str, value: &[u8]) {
        fn parse<T: serde::de::DeserializeOwned>(key: &str, value: &[u8]) -> Option<T> {
            serde_json::from_slice(value)
                .map_err(|e| warn!(%key, error = %e, "unreadable cluster store value; ignored"))
                .ok()
        }
        match keys::parse(key) {
            Key::Network(id) => match parse::<NetworkRecord>(key, value) {
                Some(n) if n.id == id => {
                    self.networks.insert(id, n);
                }
                _ => {
                    self.networks.remove(&id);
                }
            },
            Key::Host(id) => match parse::<HostRecord>(key, value) {
                Some(h) if h.id == id => {
                    self.hosts.insert(id, h);
                }
                _ => {
                    self.hosts.remove(&id);
                }
            },
            Key::Endpoint(net, ip) => match parse::<EndpointRecord>(key, value) {
                Some(e) if e.network_id == net && e.ip == ip => {
                    self.endpoints.insert((net, ip), e);
                }
                _ => {
                    self.endpoints.remove(&(net, ip));
                }
            },
            Key::Address(net, ip) => match parse::<AddressClaim>(key, value) {
                Some(a) => {
                    self.addresses.insert((net, ip), a);
                }
                None => {
                    self.addresses.remove(&(net, ip));
                }
            },
            Key::Other => {}
        }
    }

    fn delete(&mut self, key: &str) {
        match keys::parse(key) {
            Key::Network(id) => {
                self.networks.remove(&id);
            }
            Key::Host(id) => {
                self.hosts.remove(&id);
            }
            Key::Endpoint(net, ip) => {
                self.endpoints.remove(&(net, ip));
            }
            Key::Address(net, ip) => {
                self.addresses.remove(&(net, ip));
            }
            Key::Other => {}
        }
    }

    /// Endpoints of other hosts that are alive (registered), with their
    /// host's tunnel address.
    pub fn remote_endpoints<'a>(
        &'a self,
        me: &'a str,
    ) -> impl Iterator<Item = (&'a EndpointRecord, Ipv4Addr)> + 'a {
        self.endpoints.values().filter_map(move |e| {
            if e.host == me {
                return None;
            }
            let host = self.hosts.get(&e.host)?;
            Some((e, host.address))
        })
    }

    /// Addresses taken on network `net` by any host.
    pub fn used_addresses(&self, net: &str) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let net = net.to_string();
        self.addresses
            .keys()
            .filter(move |(n, _)| *n == net)
            .map(|(_, ip)| *ip)
    }
}

/// The view as saved in the local store (JSON has no tuple keys).
#[derive(Serialize, Deserialize)]
struct Saved {
    revision: i64,
    networks: Vec<NetworkRecord>,
    hosts: Vec<HostRecord>,
    endpoints: Vec<EndpointRecord>,
    addresses: Vec<(String, Ipv4Addr, AddressClaim)>,
}

impl View {
    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(&Saved {
            revision: self.revision,
            networks: self.networks.values().cloned().collect(),
            hosts: self.hosts.values().cloned().collect(),
            endpoints: self.endpoints.values().cloned().collect(),
            addresses: self
                .addresses
                .iter()
                .map(|((n, ip), a)| (n.clone(), *ip, a.clone()))
                .collect(),
        })
    }

    pub fn from_json(bytes: &[u8]) -> serde_json::Result<View> {
        let s: Saved = serde_json::from_slice(bytes)?;
        Ok(View {
            revision: s.revision,
            networks: s.networks.into_iter().map(|n| (n.id.clone(), n)).collect(),
            hosts: s.hosts.into_iter().map(|h| (h.id.clone(), h)).collect(),
            endpoints: s
                .endpoints
                .into_iter()
                .map(|e| ((e.network_id.clone(), e.ip), e))
                .collect(),
            addresses: s
                .addresses
                .into_iter()
                .map(|(n, ip, a)| ((n, ip), a))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str, last: u8) -> HostRecord {
        HostRecord {
            id: id.into(),
            hostname: id.into(),
            address: Ipv4Addr::new(198, 51, 100, last),
            since: String::new(),
        }
    }

    fn endpoint(net: &str, host: &str, ip: Ipv4Addr) -> EndpointRecord {
        EndpointRecord {
            network_id: net.into(),
            host: host.into(),
            container_id: "c".into(),
            container: "web".into(),
            ip,
            mac: [2, 0x42, 10, 0, 0, 2],
            aliases: vec![],
        }
    }

    fn put<T: Serialize>(v: &mut View, key: &str, value: &T) {
        let bytes = serde_json::to_vec(value).unwrap();
        v.apply(Change::Put(key, &bytes));
    }

    #[test]
    fn remote_endpoints_need_a_live_host() {
        let mut v = View::default();
        let ip2 = Ipv4Addr::new(10, 0, 0, 2);
        let ip3 = Ipv4Addr::new(10, 0, 0, 3);
        put(&mut v, &keys::host("a"), &host("a", 1));
        put(&mut v, &keys::host("b"), &host("b", 2));
        put(&mut v, &keys::endpoint("n", ip2), &endpoint("n", "a", ip2));
        put(&mut v, &keys::endpoint("n", ip3), &endpoint("n", "b", ip3));
        let remote: Vec<_> = v.remote_endpoints("a").map(|(e, h)| (e.ip, h)).collect();
        assert_eq!(remote, vec![(ip3, Ipv4Addr::new(198, 51, 100, 2))]);
        // b's lease ends: its host key goes first, its endpoints follow.
        v.apply(Change::Delete(&keys::host("b")));
        assert_eq!(v.remote_endpoints("a").count(), 0);
        v.apply(Change::Delete(&keys::endpoint("n", ip3)));
        assert_eq!(v.endpoints.len(), 1);
    }

    #[test]
    fn bad_values_and_mismatched_keys_are_ignored() {
        let mut v = View::default();
        let ip2 = Ipv4Addr::new(10, 0, 0, 2);
        v.apply(Change::Put(&keys::host("a"), b"not json"));
        assert!(v.hosts.is_empty());
        // A record filed under another key than its own is not believed.
        put(&mut v, &keys::host("x"), &host("a", 1));
        assert!(v.hosts.is_empty());
        put(&mut v, &keys::endpoint("n", ip2), &endpoint("m", "a", ip2));
        assert!(v.endpoints.is_empty());
        let claim = AddressClaim {
            host: "a".into(),
            container_id: "c".into(),
        };
        put(&mut v, &keys::address("n", ip2), &claim);
        assert_eq!(v.used_addresses("n").collect::<Vec<_>>(), vec![ip2]);
        assert_eq!(v.used_addresses("m").count(), 0);
    }

    #[test]
    fn view_survives_a_save() {
        let mut v = View::default();
        let ip2 = Ipv4Addr::new(10, 0, 0, 2);
        put(&mut v, &keys::host("a"), &host("a", 1));
        put(&mut v, &keys::endpoint("n", ip2), &endpoint("n", "a", ip2));
        v.revision = 7;
        let saved = v.to_json().unwrap();
        assert_eq!(View::from_json(&saved).unwrap(), v);
    }
}
