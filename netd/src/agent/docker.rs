//! Networks and endpoints dockerd makes through the remote driver
//! (`crate::docker`). A Docker network is a netd network with Docker's id
//! and `Owner::Docker`; a Docker endpoint is a netd container of its own
//! (id = Docker's endpoint id) with one endpoint and a `DockerEndpoint`.
//! Docker owns the sandbox: netd makes the veth pair in its own netns at
//! Join and Docker moves the container end, so netd never needs the
//! sandbox's netns. Every call is idempotent where Docker may repeat it
//! (after a restart of either side), and removals of what netd does not
//! know succeed, so Docker can always clean up.
use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv6Addr},
    str::FromStr,
};

use ipnet::{Ipv4Net, Ipv6Net};
use serde_json::{json, Value};
use tracing::info;

use super::Agent;
use crate::{
    docker::types::{
        self, CreateEndpoint, CreateEndpointAnswer, EndpointRef, Interface, InterfaceName,
        JoinAnswer, PortBinding,
    },
    error::{conflict, invalid, AgentError, AgentResult},
    model::{
        format_mac, now, parse_mac, Container, DockerEndpoint, Endpoint, Mode, Network, Owner,
        ORIGIN_DOCKER,
    },
    ports::{host_addrs, Families, PortMapping, Proto},
    schema::NetworkCreate,
    store::StoreOp,
};

/// netd's own options, as `docker network create -o KEY=VALUE`.
const OPT_NETD_ICC: &str = "icc";
const OPT_NETD_MASQUERADE: &str = "masquerade";
const OPT_NETD_MTU: &str = "mtu";
const OPT_NETD_BRIDGE: &str = "bridge";

/// Docker ids are 64 hex digits; accept any non-empty hex id up to that.
fn check_id(kind: &str, id: &str) -> AgentResult<()> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return invalid(format!("bad Docker {kind} id {id:?}"));
    }
    Ok(())
}

fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

/// `ADDRESS/LEN` (Docker's gateway and endpoint address form) or a bare
/// address, of the family `T` (`Ipv4Addr` or `Ipv6Addr`).
fn parse_cidr_addr<T: FromStr>(what: &str, s: &str) -> AgentResult<T> {
    let addr = s.split_once('/').map_or(s, |(a, _)| a);
    addr.parse().map_err(|_| {
        let family = if std::any::type_name::<T>().ends_with("Ipv6Addr") {
            "IPv6"
        } else {
            "IPv4"
        };
        AgentError::Invalid(format!(
            "{what} {s:?} from Docker is not an {family} address"
        ))
    })
}

/// An optional `ADDRESS/LEN` Docker may leave empty.
fn parse_given<T: FromStr>(what: &str, s: &str) -> AgentResult<Option<T>> {
    match s {
        "" => Ok(None),
        a => parse_cidr_addr(what, a).map(Some),
    }
}

/// The IPv6 pool Docker's IPAM gave a network (`None`: IPv4 only), with
/// its gateway when Docker set one.
fn ipv6_pool(req: &types::CreateNetwork) -> AgentResult<Option<(Ipv6Net, Option<Ipv6Addr>)>> {
    let enabled = types::flag(&req.options, types::OPT_IPV6);
    let ipam =
        match req.ipv6_data.as_slice() {
            [] if enabled => return invalid(
                "Docker gave no IPv6 subnet: give `docker network create --ipv6` an IPv6 --subnet",
            ),
            [] => return Ok(None),
            [one] => one,
            _ => return invalid("a netd network has one IPv6 subnet: give a single IPv6 --subnet"),
        };
    let pool: Ipv6Net = ipam.pool.parse().map_err(|_| {
        AgentError::Invalid(format!(
            "subnet {:?} from Docker is not an IPv6 CIDR",
            ipam.pool
        ))
    })?;
    let gateway = parse_given("IPv6 gateway", &ipam.gateway)?;
    Ok(Some((pool.trunc(), gateway)))
}

fn parse_bool(key: &str, v: &str) -> AgentResult<bool> {
    v.parse()
        .map_err(|_| AgentError::Invalid(format!("option {key} must be true or false, not {v:?}")))
}

/// Moves netd's own `-o` options into the request's fields.
fn take_netd_options(req: &mut NetworkCreate) -> AgentResult<()> {
    if let Some(v) = req.options.remove(OPT_NETD_ICC) {
        req.icc = Some(parse_bool(OPT_NETD_ICC, &v)?);
    }
    if let Some(v) = req.options.remove(OPT_NETD_MASQUERADE) {
        req.masquerade = Some(parse_bool(OPT_NETD_MASQUERADE, &v)?);
    }
    if let Some(v) = req.options.remove(OPT_NETD_MTU) {
        req.mtu = Some(v.parse().map_err(|_| {
            AgentError::Invalid(format!("option {OPT_NETD_MTU} must be a number, not {v:?}"))
        })?);
    }
    if let Some(v) = req.options.remove(OPT_NETD_BRIDGE) {
        req.bridge = Some(v);
    }
    Ok(())
}

/// A portmap entry: its protocol, host address (`None`: Docker was given
/// none) and the host ports to try, in order (a host port range means
/// "any one port of it"; host port 0 "netd picks").
fn candidates(b: &PortBinding) -> AgentResult<(Proto, Option<IpAddr>, Vec<u16>)> {
    let proto = match b.proto {
        6 => Proto::Tcp,
        17 => Proto::Udp,
        132 => Proto::Sctp,
        p => {
            return invalid(format!(
                "cannot publish protocol number {p} (tcp, udp or sctp)"
            ))
        }
    };
    let host_ip = match b.host_ip.as_str() {
        "" => None,
        s => Some(s.parse::<IpAddr>().map_err(|_| {
            AgentError::Invalid(format!(
                "cannot publish on host address {s:?}: not an IPv4 or IPv6 address"
            ))
        })?),
    };
    if b.port == 0 {
        return invalid("cannot publish container port 0");
    }
    let end = b.host_port_end.max(b.host_port);
    let ports: Vec<u16> = if b.host_port == 0 {
        vec![0]
    } else {
        (b.host_port..=end).collect()
    };
    Ok((proto, host_ip, ports))
}

/// The mappings to try for one family of a portmap entry: the port the
/// other family got first (Docker gives both families the same port
/// where it can), then the entry's ports.
fn tries(
    b: &PortBinding,
    proto: Proto,
    host_ip: Option<IpAddr>,
    ports: &[u16],
    first: Option<u16>,
) -> Vec<PortMapping> {
    let mut ports = ports.to_vec();
    if let Some(p) = first {
        ports.retain(|&q| q != p);
        ports.insert(0, p);
    }
    ports
        .into_iter()
        .map(|host_port| PortMapping {
            host_ip,
            host_port,
            container_port: b.port,
            proto,
        })
        .collect()
}

impl Agent {
    fn docker_network(&self, id: &str) -> AgentResult<Network> {
        match self.networks.get(id) {
            Some(n) if n.owner == Owner::Docker => Ok(n.clone()),
            Some(n) => invalid(format!(
                "network {} is netd's own, not one Docker created",
                n.name
            )),
            None => Err(AgentError::NotFound(format!(
                "network {} is not a netd network (create it with `docker network create -d netd`)",
                short(id)
            ))),
        }
    }

    fn docker_endpoint(&self, id: &str) -> Option<Container> {
        self.containers.get(id).filter(|c| c.is_docker()).cloned()
    }

    pub async fn docker_create_network(&mut self, req: types::CreateNetwork) -> AgentResult<()> {
        check_id("network", &req.network_id)?;
        if let Some(existing) = self.networks.get(&req.network_id) {
            // Docker repeats CreateNetwork for networks it restores.
            if existing.owner == Owner::Docker {
                return Ok(());
            }
            return conflict(format!(
                "network id {} is taken by netd network {}",
                short(&req.network_id),
                existing.name
            ));
        }
        let v6 = ipv6_pool(&req)?;
        // Docker 28 sends enable_ipv4=false (and no IPv4 pool) for
        // `--ipv4=false`.
        let ipv4 = !types::flag_off(&req.options, types::OPT_IPV4);
        let ipam = match req.ipv4_data.as_slice() {
            [one] => one,
            [] if !ipv4 => {
                return self
                    .docker_create_network6(req.network_id, &req.options, v6)
                    .await
            }
            [] => {
                return invalid(
                    "Docker gave no IPv4 subnet: netd needs Docker's default IPAM driver",
                )
            }
            _ => return invalid("a netd network has one IPv4 subnet: give a single --subnet"),
        };
        let pool: Ipv4Net = ipam.pool.parse().map_err(|_| {
            AgentError::Invalid(format!(
                "subnet {:?} from Docker is not an IPv4 CIDR",
                ipam.pool
            ))
        })?;
        if pool.prefix_len() == 0 || pool.prefix_len() > 30 {
            return invalid(format!(
                "subnet {pool} cannot be a netd network (give --subnet with a prefix of /1 to /30)"
            ));
        }
        let create = NetworkCreate {
            subnet: Some(pool.trunc()),
            gateway: parse_given("gateway", &ipam.gateway)?,
            ..docker_request(&req.network_id, &req.options, v6)
        };
        self.docker_create(create, req.network_id).await
    }

    /// An IPv6-only network (Docker 28's `--ipv4=false`).
    async fn docker_create_network6(
        &mut self,
        id: String,
        options: &BTreeMap<String, Value>,
        v6: Option<(Ipv6Net, Option<Ipv6Addr>)>,
    ) -> AgentResult<()> {
        if v6.is_none() {
            return invalid("a network without IPv4 needs IPv6: give --ipv6 and an IPv6 --subnet");
        }
        let create = NetworkCreate {
            ipv4: Some(false),
            ..docker_request(&id, options, v6)
        };
        self.docker_create(create, id).await
    }

    async fn docker_create(&mut self, mut create: NetworkCreate, id: String) -> AgentResult<()> {
        take_netd_options(&mut create)?;
        let net = self
            .create_network_as(create, Some(id), Owner::Docker)
            .await?;
        let v6 = net.ipv6.as_ref().map(|v6| v6.subnet.to_string());
        info!(id = %net.id, subnet = %net.subnet, subnet6 = v6.as_deref().unwrap_or("-"), "Docker network created");
        Ok(())
    }

    pub async fn docker_delete_network(&mut self, id: &str) -> AgentResult<()> {
        match self.networks.get(id) {
            None => Ok(()),
            Some(_) => {
                let net = self.docker_network(id)?;
                self.remove_network_as(net).await.map(|_| ())
            }
        }
    }

    pub async fn docker_create_endpoint(
        &mut self,
        req: CreateEndpoint,
    ) -> AgentResult<CreateEndpointAnswer> {
        check_id("endpoint", &req.endpoint_id)?;
        let net = self.docker_network(&req.network_id)?;
        let given = req.interface.unwrap_or_default();
        if let Some(c) = self.containers.get(&req.endpoint_id) {
            // A repeated call for the same endpoint gets the same answer.
            if c.is_docker() && c.endpoints.first().map(|e| &e.network_id) == Some(&net.id) {
                return Ok(answer_for(c, &net, &given));
            }
            return conflict(format!(
                "endpoint id {} is already in use",
                short(&req.endpoint_id)
            ));
        }
        let ports = types::portmap(&req.options).map_err(AgentError::Invalid)?;
        if net.internal && !ports.is_empty() {
            return invalid(format!(
                "cannot publish ports of a container on internal network {}",
                net.name
            ));
        }
        let ip = self.allocate_ip(&net, parse_given("address", &given.address)?)?;
        // Docker's IPAM gives the IPv6 address too; netd picks one only when
        // it did not.
        let ip6 = self.allocate_ip6(&net, parse_given("IPv6 address", &given.address_ipv6)?)?;
        let mac = match given.mac_address.as_str() {
            "" => None,
            m => Some(parse_mac(m).map_err(AgentError::Invalid)?),
        };
        let suffix = &crate::model::new_id()[..11];
        let ep = Endpoint {
            network_id: net.id.clone(),
            ip,
            // The container end's name until Docker moves and renames it.
            ifname: format!("{}{suffix}", super::start::DOCKER_PEER_PREFIX),
            host_ifname: format!("{}{suffix}", super::start::HOST_VETH_PREFIX),
            aliases: Vec::new(),
            mac,
            ip6,
        };
        let container = Container {
            id: req.endpoint_id.clone(),
            name: short(&req.endpoint_id),
            netns: Default::default(),
            mode: Mode::Bridge,
            endpoints: vec![ep],
            ports: Vec::new(),
            created: now(),
            origin: Some(ORIGIN_DOCKER.into()),
            labels: BTreeMap::new(),
            docker: Some(DockerEndpoint { sandbox_key: None }),
        };
        self.store.apply(&[StoreOp::PutContainer(&container)])?;
        let out = answer_for(&container, &net, &given);
        info!(endpoint = %container.name, network = %net.name, %ip, "Docker endpoint created");
        self.containers.insert(container.id.clone(), container);
        self.state_changed();
        Ok(out)
    }

    pub async fn docker_join(&mut self, req: types::Join) -> AgentResult<JoinAnswer> {
        let mut c = self.docker_endpoint(&req.endpoint_id).ok_or_else(|| {
            AgentError::NotFound(format!("endpoint {} not found", short(&req.endpoint_id)))
        })?;
        let ep = c.endpoints[0].clone();
        if ep.network_id != req.network_id {
            return invalid(format!(
                "endpoint {} is not on network {}",
                c.name,
                short(&req.network_id)
            ));
        }
        let net = self.docker_network(&ep.network_id)?;
        let answer = JoinAnswer {
            interface_name: InterfaceName {
                src_name: ep.ifname.clone(),
                dst_prefix: "eth".into(),
            },
            gateway: if net.internal || !net.has_ipv4() {
                String::new()
            } else {
                net.gateway.to_string()
            },
            gateway_ipv6: match &net.ipv6 {
                Some(v6) if !net.internal && ep.ip6.is_some() => v6.gateway.to_string(),
                _ => String::new(),
            },
        };
        let Some(docker) = c.docker.clone() else {
            return invalid(format!("container {} is not a Docker endpoint", c.name));
        };
        if docker.sandbox_key.is_some() && self.links.index_of(&ep.host_ifname).await?.is_some() {
            return Ok(answer);
        }
        let ports = types::portmap(&req.options).map_err(AgentError::Invalid)?;
        if net.internal && !ports.is_empty() && !self.sandbox_has_external(&req.sandbox_key) {
            return invalid(format!(
                "cannot publish ports of a container on internal network {}",
                net.name
            ));
        }
        self.plumb_host_pair(&c.id, &net, &ep).await.map_err(|e| {
            AgentError::Internal(e.context(format!("failed to join {} to {}", c.name, net.name)))
        })?;
        c.docker = Some(DockerEndpoint {
            sandbox_key: Some(req.sandbox_key),
        });
        if let Err(e) = self.store.apply(&[StoreOp::PutContainer(&c)]) {
            let _ = self.unplumb_endpoint(&ep).await;
            return Err(e.into());
        }
        info!(endpoint = %c.name, network = %net.name, veth = %ep.host_ifname, "Docker endpoint joined");
        self.containers.insert(c.id.clone(), c);
        Ok(answer)
    }

    /// Is another endpoint of this sandbox joined on a non-internal network
    /// (so ports Docker lists belong there)?
    fn sandbox_has_external(&self, sandbox_key: &str) -> bool {
        self.containers.values().any(|c| {
            c.docker.as_ref().and_then(|d| d.sandbox_key.as_deref()) == Some(sandbox_key)
                && c.endpoints.iter().any(|e| {
                    self.networks
                        .get(&e.network_id)
                        .is_some_and(|n| !n.internal)
                })
        })
    }

    /// Docker takes the container end back; the pair goes at DeleteEndpoint.
    pub fn docker_leave(&mut self, req: &EndpointRef) -> AgentResult<()> {
        let Some(mut c) = self.docker_endpoint(&req.endpoint_id) else {
            return Ok(());
        };
        let ports = std::mem::take(&mut c.ports);
        if let Some(d) = c.docker.as_mut() {
            d.sandbox_key = None;
        }
        self.store.apply(&[StoreOp::PutContainer(&c)])?;
        self.unpublish(&ports, c.endpoints.first().map(super::publish::Target::of));
        self.containers.insert(c.id.clone(), c);
        Ok(())
    }

    pub async fn docker_delete_endpoint(&mut self, req: &EndpointRef) -> AgentResult<()> {
        let Some(c) = self.docker_endpoint(&req.endpoint_id) else {
            return Ok(());
        };
        self.unpublish(
            &c.ports,
            c.endpoints.first().map(super::publish::Target::of),
        );
        for ep in &c.endpoints {
            self.unplumb_endpoint(ep).await.map_err(|e| {
                AgentError::Internal(e.context(format!("failed to remove endpoint {}", c.name)))
            })?;
        }
        self.store.apply(&[StoreOp::DeleteContainer(&c.id)])?;
        self.containers.remove(&c.id);
        info!(endpoint = %c.name, "Docker endpoint deleted");
        self.state_changed();
        Ok(())
    }

    pub fn docker_endpoint_info(&self, req: &EndpointRef) -> AgentResult<Value> {
        let c = self.docker_endpoint(&req.endpoint_id).ok_or_else(|| {
            AgentError::NotFound(format!("endpoint {} not found", short(&req.endpoint_id)))
        })?;
        let ep = &c.endpoints[0];
        let mut info = BTreeMap::new();
        info.insert("netd.host_interface", json!(ep.host_ifname));
        info.insert("netd.address", json!(ep.ip.to_string()));
        if let Some(ip6) = ep.ip6 {
            info.insert("netd.address6", json!(ip6.to_string()));
        }
        info.insert(
            "com.docker.network.endpoint.macaddress",
            json!(format_mac(ep.mac())),
        );
        let ports: Vec<String> = c.ports.iter().map(|p| p.to_string()).collect();
        info.insert("netd.published", json!(ports));
        Ok(json!(info))
    }

    /// Publishes every portmap entry on the endpoint's address, all or
    /// nothing; a repeated call with the same ports changes nothing.
    pub fn docker_program(&mut self, req: types::Program) -> AgentResult<()> {
        let mut c = self.docker_endpoint(&req.endpoint_id).ok_or_else(|| {
            AgentError::NotFound(format!("endpoint {} not found", short(&req.endpoint_id)))
        })?;
        let net = self.docker_network(&c.endpoints[0].network_id)?;
        let target = super::publish::Target::of(&c.endpoints[0]);
        let bindings = types::portmap(&req.options).map_err(AgentError::Invalid)?;
        // Docker 28: another endpoint is the sandbox's IPv6 gateway and
        // publishes on the host's IPv6 addresses; this one does IPv4.
        let v6_elsewhere = types::flag(&req.options, types::OPT_NO_PROXY_6TO4);
        let mut wanted = Vec::new();
        for b in &bindings {
            let (proto, given, ports) = candidates(b)?;
            let mut families = Vec::new();
            let on = Families {
                v6: target.v6.is_some() && !v6_elsewhere,
                ..super::publish::families_of(&net)
            };
            for host_ip in host_addrs(given, on) {
                let m = tries(b, proto, host_ip, &ports, None).remove(0);
                if m.is_ipv6() && v6_elsewhere {
                    continue;
                }
                super::publish::check_family(&net, &m)?;
                families.push(host_ip);
            }
            if !families.is_empty() {
                wanted.push((b, proto, families, ports));
            }
        }
        if wanted.is_empty() && c.ports.is_empty() {
            return Ok(());
        }
        // Ports published before for this endpoint are replaced.
        let old = std::mem::take(&mut c.ports);
        self.unpublish(&old, None);
        self.containers.insert(c.id.clone(), c.clone());
        let mut done: Vec<PortMapping> = Vec::new();
        for (b, proto, families, ports) in wanted {
            let mut first = None;
            for host_ip in families {
                let list = tries(b, proto, host_ip, &ports, first);
                match self.publish_one_of(&net, list, target) {
                    Ok(m) => {
                        first.get_or_insert(m.host_port);
                        done.push(m);
                    }
                    Err(e) => {
                        self.unpublish(&done, None);
                        // Refused: what was published before stays published.
                        if let Ok(back) = self.realise_ports(old.clone(), target, false) {
                            c.ports = back;
                        }
                        self.store.apply(&[StoreOp::PutContainer(&c)])?;
                        self.containers.insert(c.id.clone(), c);
                        return Err(match e {
                            AgentError::Conflict(m) if b.host_port_end > b.host_port => {
                                AgentError::Conflict(format!(
                                    "no free host port in {}-{}: {m}",
                                    b.host_port, b.host_port_end
                                ))
                            }
                            e => e,
                        });
                    }
                }
            }
        }
        c.ports = done;
        if let Err(e) = self.store.apply(&[StoreOp::PutContainer(&c)]) {
            self.unpublish(&c.ports, None);
            return Err(e.into());
        }
        info!(endpoint = %c.name, ports = c.ports.len(), "Docker endpoint published");
        self.containers.insert(c.id.clone(), c);
        Ok(())
    }

    /// Publishes the first of `list` that is free.
    fn publish_one_of(
        &mut self,
        net: &Network,
        list: Vec<PortMapping>,
        target: super::publish::Target,
    ) -> AgentResult<PortMapping> {
        let mut last = None;
        for m in list {
            let step = self
                .check_mappings(net, vec![m])
                .and_then(|w| self.realise_ports(w, target, false));
            match step {
                Ok(mut done) if !done.is_empty() => return Ok(done.remove(0)),
                Ok(_) => {}
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| AgentError::Invalid("no host port to publish on".into())))
    }

    /// Networks with Docker endpoints still named by their id.
    pub fn docker_unnamed_networks(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .containers
            .values()
            .filter(|c| c.is_docker() && c.name == short(&c.id))
            .filter_map(|c| c.endpoints.first().map(|e| e.network_id.clone()))
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Names endpoints (endpoint id, container name) as dockerd says: the
    /// container's name, or `NAME.NETWORK` for its second endpoint.
    pub fn docker_name_endpoints(&mut self, names: &[(String, String)]) {
        let mut changed = false;
        for (endpoint, name) in names {
            let Some(mut c) = self.docker_endpoint(endpoint) else {
                continue;
            };
            let base = name.trim_start_matches('/');
            if c.name != short(&c.id) || super::validate_name("container", base).is_err() {
                continue;
            }
            let net = c.endpoints[0].network_id.clone();
            let net_name = self
                .networks
                .get(&net)
                .map(|n| n.name.clone())
                .unwrap_or_default();
            let taken = |n: &str| self.containers.values().any(|o| o.name == n);
            let Some(chosen) = [base.to_string(), format!("{base}.{net_name}")]
                .into_iter()
                .find(|n| !taken(n) && super::validate_name("container", n).is_ok())
            else {
                continue;
            };
            c.name = chosen;
            if self.store.apply(&[StoreOp::PutContainer(&c)]).is_ok() {
                info!(endpoint = %short(&c.id), name = %c.name, "Docker endpoint named");
                self.containers.insert(c.id.clone(), c);
                changed = true;
            }
        }
        if changed {
            self.state_changed();
        }
    }

    pub fn docker_revoke(&mut self, req: &EndpointRef) -> AgentResult<()> {
        let Some(mut c) = self.docker_endpoint(&req.endpoint_id) else {
            return Ok(());
        };
        if c.ports.is_empty() {
            return Ok(());
        }
        let ports = std::mem::take(&mut c.ports);
        self.store.apply(&[StoreOp::PutContainer(&c)])?;
        self.unpublish(&ports, c.endpoints.first().map(super::publish::Target::of));
        self.containers.insert(c.id.clone(), c);
        Ok(())
    }
}

/// What Docker left empty, filled in.
fn answer_for(c: &Container, net: &Network, given: &Interface) -> CreateEndpointAnswer {
    let ep = &c.endpoints[0];
    let mut iface = Interface::default();
    if let (true, Some(ip)) = (given.address.is_empty(), ep.ip4()) {
        iface.address = format!("{ip}/{}", net.subnet.prefix_len());
    }
    if given.address_ipv6.is_empty() {
        if let (Some(ip6), Some(v6)) = (ep.ip6, &net.ipv6) {
            iface.address_ipv6 = format!("{ip6}/{}", v6.subnet.prefix_len());
        }
    }
    if given.mac_address.is_empty() {
        iface.mac_address = format_mac(ep.mac());
    }
    let empty =
        iface.address.is_empty() && iface.address_ipv6.is_empty() && iface.mac_address.is_empty();
    CreateEndpointAnswer {
        interface: (!empty).then_some(iface),
    }
}

/// The netd request for a Docker network: named by its short id, with
/// Docker's internal flag, `-o` options and IPv6 pool.
fn docker_request(
    id: &str,
    options: &BTreeMap<String, Value>,
    v6: Option<(Ipv6Net, Option<Ipv6Addr>)>,
) -> NetworkCreate {
    NetworkCreate {
        name: short(id),
        internal: types::flag(options, types::OPT_INTERNAL),
        options: types::generic_options(options),
        ipv6: v6.is_some(),
        subnet6: v6.map(|(pool, _)| pool),
        gateway6: v6.and_then(|(_, gw)| gw),
        ..Default::default()
    }
}
