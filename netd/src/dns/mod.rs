//! Embedded DNS for user-defined networks (issue 7): the agent hands the
//! name service a fresh `DnsView` after every change; the service answers
//! on each served network's gateway, port 53.
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// A network as the name service sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsNetwork {
    pub id: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub internal: bool,
    /// False for the default `bridge` network, which has no name service.
    pub serve: bool,
}

/// One container's names on one network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsName {
    pub network_id: String,
    pub container: String,
    pub aliases: Vec<String>,
    pub ip: Ipv4Addr,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsView {
    pub networks: Vec<DnsNetwork>,
    pub names: Vec<DnsName>,
}

/// The name service. Not serving yet: `sync` only records the view.
#[derive(Default)]
pub struct NameService {
    view: DnsView,
}

impl NameService {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the current networks and names; starts and stops listeners.
    pub fn sync(&mut self, view: DnsView) -> anyhow::Result<()> {
        self.view = view;
        Ok(())
    }
}
