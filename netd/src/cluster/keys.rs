//! The key layout in the cluster store, all below [`PREFIX`]:
//!
//! | key | value | lifetime |
//! |---|---|---|
//! | `networks/<id>` | [`NetworkRecord`](super::records::NetworkRecord) | until removed |
//! | `names/<name>` | network id | with the network (names are unique) |
//! | `vnis/<vni>` | network id | with the network (VNIs are unique) |
//! | `network-changes` | anything | rewritten by every network create/remove (the transactions compare it: subnets never overlap) |
//! | `addresses/<net>/<ip>` | [`AddressClaim`](super::records::AddressClaim) | until the endpoint is removed |
//! | `endpoints/<net>/<ip>` | [`EndpointRecord`](super::records::EndpointRecord) | the host's lease |
//! | `hosts/<host>` | [`HostRecord`](super::records::HostRecord) | the host's lease |
use std::net::Ipv4Addr;

/// Version of the layout: a new layout gets a new prefix.
pub const PREFIX: &str = "/netd/v1/";

pub const NETWORK_CHANGES: &str = "/netd/v1/network-changes";

pub fn network(id: &str) -> String {
    format!("{PREFIX}networks/{id}")
}

pub fn name(name: &str) -> String {
    format!("{PREFIX}names/{name}")
}

pub fn vni(vni: u32) -> String {
    format!("{PREFIX}vnis/{vni}")
}

pub fn address(net: &str, ip: Ipv4Addr) -> String {
    format!("{PREFIX}addresses/{net}/{ip}")
}

pub fn addresses_of(net: &str) -> String {
    format!("{PREFIX}addresses/{net}/")
}

pub fn endpoint(net: &str, ip: Ipv4Addr) -> String {
    format!("{PREFIX}endpoints/{net}/{ip}")
}

pub fn endpoints_of(net: &str) -> String {
    format!("{PREFIX}endpoints/{net}/")
}

pub fn host(id: &str) -> String {
    format!("{PREFIX}hosts/{id}")
}

/// What a key of the layout names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    Network(String),
    Host(String),
    Endpoint(String, Ipv4Addr),
    Address(String, Ipv4Addr),
    /// Names, VNIs, the change marker: bookkeeping the view does not need.
    Other,
}

pub fn parse(key: &str) -> Key {
    let Some(rest) = key.strip_prefix(PREFIX) else {
        return Key::Other;
    };
    let mut parts = rest.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("networks"), Some(id), None) if !id.is_empty() => Key::Network(id.into()),
        (Some("hosts"), Some(id), None) if !id.is_empty() => Key::Host(id.into()),
        (Some(kind @ ("endpoints" | "addresses")), Some(net), Some(ip)) => match ip.parse() {
            Ok(ip) if kind == "endpoints" => Key::Endpoint(net.into(), ip),
            Ok(ip) => Key::Address(net.into(), ip),
            Err(_) => Key::Other,
        },
        _ => Key::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_back() {
        let ip = Ipv4Addr::new(10, 0, 0, 2);
        assert_eq!(parse(&network("abc")), Key::Network("abc".into()));
        assert_eq!(parse(&host("h1")), Key::Host("h1".into()));
        assert_eq!(parse(&endpoint("n", ip)), Key::Endpoint("n".into(), ip));
        assert_eq!(parse(&address("n", ip)), Key::Address("n".into(), ip));
        assert_eq!(parse(&name("web")), Key::Other);
        assert_eq!(parse(&vni(4096)), Key::Other);
        assert_eq!(parse(NETWORK_CHANGES), Key::Other);
        assert_eq!(parse("/other/networks/x"), Key::Other);
        assert_eq!(parse(&format!("{PREFIX}endpoints/n/notanip")), Key::Other);
        assert!(endpoint("n", ip).starts_with(&endpoints_of("n")));
        assert!(address("n", ip).starts_with(&addresses_of("n")));
    }
}
