//! `/metrics`: the agent's counters and the datapath's, in Prometheus text
//! form. Everything is read at scrape time (maps, stores, counters), so a
//! scrape always agrees with `netd status`.
use netd_common::{Counters, DropReason};

use super::Agent;
use crate::{
    error::AgentResult,
    metrics::{ApiLatency, Exposition, Kind},
};

impl Agent {
    pub fn metrics(&mut self, latency: &ApiLatency) -> AgentResult<String> {
        let mut e = Exposition::default();
        e.family(
            "netd_build_info",
            "The running agent's version.",
            Kind::Gauge,
        )
        .sample(
            "netd_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        );
        e.single(
            "netd_uptime_seconds",
            "Seconds since the agent started.",
            Kind::Gauge,
            self.started.elapsed().as_secs_f64(),
        );
        e.single(
            "netd_networks",
            "Networks the agent manages.",
            Kind::Gauge,
            self.networks.len() as f64,
        );
        e.single(
            "netd_containers",
            "Containers the agent manages.",
            Kind::Gauge,
            self.containers.len() as f64,
        );

        e.family(
            "netd_drops_total",
            "Packets the datapath dropped, by reason.",
            Kind::Counter,
        );
        for d in self.datapath.drop_counts()? {
            e.sample(
                "netd_drops_total",
                &[("reason", d.reason)],
                d.packets as f64,
            );
        }

        let fill = self.datapath.map_fill()?;
        e.family(
            "netd_map_entries",
            "Entries in each datapath map.",
            Kind::Gauge,
        );
        for m in &fill {
            e.sample("netd_map_entries", &[("map", m.map)], m.entries as f64);
        }
        e.family(
            "netd_map_capacity",
            "Maximum entries of each datapath map.",
            Kind::Gauge,
        );
        for m in &fill {
            e.sample(
                "netd_map_capacity",
                &[("map", m.map)],
                f64::from(m.capacity),
            );
        }
        e.single(
            "netd_nat_bindings",
            "Masqueraded flows holding a source port (or ICMP id) of an uplink.",
            Kind::Gauge,
            self.datapath.nat_bindings()? as f64,
        );

        e.family(
            "netd_uplink_info",
            "Uplinks with the programs attached, and their masquerade address.",
            Kind::Gauge,
        );
        for (name, u) in &self.uplinks {
            let addr = u.address.map(|a| a.to_string()).unwrap_or_default();
            e.sample(
                "netd_uplink_info",
                &[("uplink", name), ("address", &addr)],
                1.0,
            );
        }
        e.single(
            "netd_uplinks",
            "Uplinks with the programs attached.",
            Kind::Gauge,
            self.uplinks.len() as f64,
        );

        e.single(
            "netd_reconcile_runs_total",
            "Reconcile passes (at start, periodic and on netlink events).",
            Kind::Counter,
            self.reconcile_runs as f64,
        );
        e.single(
            "netd_reconcile_repairs_total",
            "Kernel objects reconciles put back or removed.",
            Kind::Counter,
            self.repairs_total as f64,
        );

        let (queries, forwarded, failures) = self.dns.totals();
        e.family(
            "netd_dns_queries_total",
            "DNS queries by what the asker got: a reply with each response code, or none.",
            Kind::Counter,
        );
        for (answer, n) in self.dns.answers() {
            e.sample("netd_dns_queries_total", &[("answer", answer)], n as f64);
        }
        e.single(
            "netd_dns_received_total",
            "DNS queries received.",
            Kind::Counter,
            queries as f64,
        );
        e.single(
            "netd_dns_forwarded_total",
            "DNS queries forwarded to the upstreams.",
            Kind::Counter,
            forwarded as f64,
        );
        e.single(
            "netd_dns_upstream_failures_total",
            "Forwarded DNS queries no upstream answered in time.",
            Kind::Counter,
            failures as f64,
        );

        self.traffic_metrics(&mut e)?;
        latency.expose(&mut e);
        crate::metrics::phases::ADD_PHASES.expose(&mut e);
        Ok(e.finish())
    }

    /// Per-endpoint and per-network counters, and the monitors' events.
    fn traffic_metrics(&self, e: &mut Exposition) -> AgentResult<()> {
        let mut endpoints = Vec::new();
        for c in self.containers.values() {
            for ep in &c.endpoints {
                let Some(net) = self.networks.get(&ep.network_id) else {
                    continue;
                };
                let counts = self.datapath.endpoint_counters(ep.ip, &ep.host_ifname)?;
                endpoints.push((c.name.as_str(), net.name.as_str(), counts));
            }
        }
        let mut networks = Vec::new();
        for n in self.networks.values() {
            networks.push((
                n.name.as_str(),
                self.datapath.network_counters(n.datapath_id)?,
            ));
        }
        for (unit, pick) in [
            (
                "packets",
                (|c: &Counters| (c.packets_in, c.packets_out)) as fn(&Counters) -> (u64, u64),
            ),
            ("bytes", |c: &Counters| (c.bytes_in, c.bytes_out)),
        ] {
            let name = format!("netd_endpoint_{unit}_total");
            e.family(
                &name,
                &format!("Datapath {unit} to (in) and from (out) each container endpoint."),
                Kind::Counter,
            );
            for (c, n, counts) in &endpoints {
                let (i, o) = pick(counts);
                e.sample(
                    &name,
                    &[("container", c), ("network", n), ("direction", "in")],
                    i as f64,
                );
                e.sample(
                    &name,
                    &[("container", c), ("network", n), ("direction", "out")],
                    o as f64,
                );
            }
            let name = format!("netd_network_{unit}_total");
            e.family(
                &name,
                &format!("Datapath {unit} to (in) and from (out) the containers of each network."),
                Kind::Counter,
            );
            for (n, counts) in &networks {
                let (i, o) = pick(counts);
                e.sample(&name, &[("network", n), ("direction", "in")], i as f64);
                e.sample(&name, &[("network", n), ("direction", "out")], o as f64);
            }
        }
        e.family(
            "netd_endpoint_drops_total",
            "Packets dropped at a container endpoint's veth, by reason.",
            Kind::Counter,
        );
        for (c, n, counts) in &endpoints {
            for r in DropReason::ALL {
                let v = counts.drops.get(r as usize).copied().unwrap_or(0);
                e.sample(
                    "netd_endpoint_drops_total",
                    &[("container", c), ("network", n), ("reason", r.name())],
                    v as f64,
                );
            }
        }
        let (monitors, _) = self.monitor.state();
        e.single(
            "netd_monitors",
            "Connected `netd monitor` streams.",
            Kind::Gauge,
            monitors as f64,
        );
        e.single(
            "netd_events_suppressed_total",
            "Monitor events the per-CPU rate limit (or a full ring buffer) held back.",
            Kind::Counter,
            self.datapath.events_suppressed()? as f64,
        );
        Ok(())
    }
}
