//! What the name service must know, derived from the stored state.
use tracing::warn;

use super::Agent;
use crate::dns::{DnsName, DnsNetwork, DnsView};

impl Agent {
    pub(super) fn dns_view(&self) -> DnsView {
        let networks = self
            .networks
            .values()
            .map(|n| DnsNetwork {
                id: n.id.clone(),
                subnet: n.subnet,
                gateway: n.gateway,
                internal: n.internal,
                serve: !n.is_default(),
            })
            .collect();
        let names = self
            .containers
            .values()
            .flat_map(|c| {
                c.endpoints.iter().map(|ep| DnsName {
                    network_id: ep.network_id.clone(),
                    container: c.name.clone(),
                    aliases: ep.aliases.clone(),
                    ip: ep.ip,
                })
            })
            .collect();
        DnsView { networks, names }
    }

    /// Called after every change of networks or containers.
    pub(super) fn state_changed(&mut self) {
        let view = self.dns_view();
        if let Err(e) = self.dns.sync(view) {
            warn!(error = %format!("{e:#}"), "name service update failed");
        }
    }
}
