//! Container operations: add (in any network mode) and remove.
use anyhow::Context;
use tracing::info;

use super::{
    claims::{self, Claim, ClaimGuard},
    endpoints::Kernel,
    validate_name, Agent, SharedAgent,
};
use crate::{
    error::{conflict, invalid, AgentError, AgentResult},
    kernel::{ContainerNetns, NetnsDriver},
    metrics::phases::lap,
    model::{new_id, now, requested_mac, Container, Endpoint, Mode, Network, DEFAULT_NETWORK},
    ports::PortMapping,
    schema::ContainerAdd,
    store::StoreOp,
};

/// What `--network` asked for.
enum Requested {
    Network(String),
    None,
    Host,
    Container(String),
}

fn parse_mode(network: Option<&str>) -> Requested {
    match network.unwrap_or(DEFAULT_NETWORK) {
        "none" => Requested::None,
        "host" => Requested::Host,
        other => match other.strip_prefix("container:") {
            Some(target) => Requested::Container(target.to_string()),
            None => Requested::Network(other.to_string()),
        },
    }
}

/// What an add does in the kernel, decided under the state lock.
enum AddWork {
    /// Host or container mode: nothing.
    Nothing,
    /// None mode: `lo` up.
    LoUp,
    /// A network: one endpoint.
    Attach { net: Box<Network>, ep: Endpoint },
}

struct AddPlan {
    container: Container,
    work: AddWork,
    ports: Vec<PortMapping>,
    claim: ClaimGuard,
}

impl Agent {
    /// Checks an add against the state and the claims in flight and claims
    /// its name, address and ports; touches nothing in the kernel.
    async fn plan_add(&mut self, req: ContainerAdd) -> AgentResult<AddPlan> {
        validate_name("container", &req.name)?;
        if self.containers.values().any(|c| c.name == req.name)
            || self.claimed().container_name_taken(&req.name)
        {
            return conflict(format!("container name {} is already in use", req.name));
        }
        let requested = parse_mode(req.network.as_deref());
        if !req.publish.is_empty() && !matches!(requested, Requested::Network(_)) {
            return invalid("publishing ports needs a network (not none, host or container mode)");
        }
        if (req.ip.is_some() || req.ip6.is_some()) && !matches!(requested, Requested::Network(_)) {
            return invalid("--ip and --ip6 need a network to take the address from");
        }
        if (req.ifname.is_some() || req.mac.is_some())
            && !matches!(requested, Requested::Network(_))
        {
            return invalid("an interface name or MAC needs a network to attach to");
        }
        let mac = requested_mac(req.mac.as_deref())?;
        let mut container = Container {
            id: new_id(),
            name: req.name,
            netns: req.netns,
            mode: Mode::Bridge,
            endpoints: Vec::new(),
            ports: Vec::new(),
            created: now(),
            origin: req.origin,
            labels: req.labels,
            docker: None,
        };
        let mut claim = Claim {
            container_name: Some(container.name.clone()),
            ..Default::default()
        };
        let mut ports = Vec::new();
        let work = match requested {
            Requested::Host => {
                container.mode = Mode::Host;
                AddWork::Nothing
            }
            Requested::Container(target) => {
                let other = self.find_container(&target)?;
                refuse_docker_container(other)?;
                if let Mode::Container(_) = other.mode {
                    return invalid(format!(
                        "container {} itself shares another container's network",
                        other.name
                    ));
                }
                container.mode = Mode::Container(other.id.clone());
                container.netns = other.netns.clone();
                AddWork::Nothing
            }
            Requested::None => {
                check_netns(self.netns.as_ref(), &container)?;
                container.mode = Mode::None;
                AddWork::LoUp
            }
            Requested::Network(key) => {
                let net = self.find_network(&key)?.clone();
                super::networks::refuse_docker_network(
                    &net,
                    "attach containers to it with `docker run --network`",
                )?;
                ports = self.plan_ports(&net, &req.publish)?;
                check_netns(self.netns.as_ref(), &container)?;
                // On an overlay network the cluster store hands out the
                // address (the state is held meanwhile).
                let ip = self
                    .overlay_address(&container, &net, req.ip, &req.aliases, mac)
                    .await?;
                let ep = match self.new_endpoint(
                    &container,
                    &net,
                    (ip, req.ip6),
                    req.aliases,
                    req.ifname,
                    mac,
                ) {
                    Ok(ep) => ep,
                    Err(e) => {
                        self.release_claim(&container.id, &net, ip).await;
                        return Err(e);
                    }
                };
                claim.addresses.push((net.id.clone(), ep.ip));
                claim
                    .addresses6
                    .extend(ep.ip6.map(|ip| (net.id.clone(), ip)));
                claim.uses_networks.push(net.id.clone());
                claim.ports.clone_from(&ports);
                AddWork::Attach {
                    net: Box::new(net),
                    ep,
                }
            }
        };
        Ok(AddPlan {
            container,
            work,
            ports,
            claim: claims::take(&self.claims, claim),
        })
    }
}

impl SharedAgent {
    /// Adds a container in any network mode. Concurrent adds (and other
    /// phased operations) run their kernel steps side by side.
    pub async fn add_container(&self, req: ContainerAdd) -> AgentResult<Container> {
        let name = req.name.clone();
        crate::metrics::phases::timed(&name, self.add_container_timed(req)).await
    }

    async fn add_container_timed(&self, req: ContainerAdd) -> AgentResult<Container> {
        let _op = self.phased().await;
        let (plan, k) = {
            let mut state = self.state().await;
            (state.plan_add(req).await?, state.kernel())
        };
        lap("plan");
        let AddPlan {
            mut container,
            work,
            ports,
            claim,
        } = plan;
        // The overlay address (if any) goes back to the cluster store on
        // any failure below.
        let planned: Vec<Endpoint> = match &work {
            AddWork::Attach { ep, .. } => vec![ep.clone()],
            _ => Vec::new(),
        };
        match self
            .realise_add(&k, &mut container, work, ports, &claim)
            .await
        {
            Ok(()) => {}
            Err(e) => {
                self.state()
                    .await
                    .release_overlay_addresses(&container.id, &planned)
                    .await;
                return Err(e);
            }
        }
        let mut state = self.state().await;
        info!(name = %container.name, mode = ?container.mode, "container added");
        state
            .containers
            .insert(container.id.clone(), container.clone());
        drop(claim);
        state.follow_cluster_view().await;
        lap("commit");
        Ok(container)
    }

    /// The kernel steps of an add, its ports and its record in the store;
    /// on failure, undone.
    async fn realise_add(
        &self,
        k: &Kernel,
        container: &mut Container,
        work: AddWork,
        ports: Vec<PortMapping>,
        claim: &ClaimGuard,
    ) -> AgentResult<()> {
        match work {
            AddWork::Nothing => {}
            AddWork::LoUp => {
                let ns = open_netns(k.netns.as_ref(), container)?;
                ns.lo_up().await?;
            }
            AddWork::Attach { net, ep } => {
                let ns = open_netns(k.netns.as_ref(), container)?;
                lap("netns");
                // The only endpoint: it carries the routes of its families.
                let carries = super::gateways::Carries::of(&[], &ep);
                self.plumb(k, &container.id, ns.as_ref(), &net, &ep, carries)
                    .await
                    .with_context(|| {
                        format!("failed to attach {} to {}", container.name, net.name)
                    })?;
                container.endpoints.push(ep);
                crate::fault::point("container-add:plumbed");
            }
        }
        let published = {
            let mut state = self.state().await;
            let target = container.endpoints.first().map(super::publish::Target::of);
            let runtime_binds = container.runtime_binds_ports();
            target.map_or(Ok(Vec::new()), |ip| {
                state.realise_ports(ports, ip, runtime_binds)
            })
        };
        match published {
            Ok(ports) => {
                claim.extend(|c| c.ports.clone_from(&ports));
                container.ports = ports;
            }
            Err(e) => {
                self.unplumb_all(k, &container.endpoints).await;
                return Err(e);
            }
        }
        crate::fault::point("container-add:published");
        lap("ports");
        if let Err(e) = k
            .store
            .apply_grouped(&[StoreOp::PutContainer(container)])
            .await
        {
            self.state().await.unpublish(&container.ports, None);
            self.unplumb_all(k, &container.endpoints).await;
            return Err(e.into());
        }
        lap("store");
        Ok(())
    }

    async fn unplumb_all(&self, k: &Kernel, eps: &[Endpoint]) {
        for ep in eps {
            let _ = self.unplumb(k, ep).await;
        }
    }

    /// Removes a container, its endpoints and every container sharing its
    /// netns. With `force`, kernel clean-up errors do not stop the removal.
    pub async fn remove_container(&self, key: &str, force: bool) -> AgentResult<Vec<String>> {
        let (_op, _turn, id) = self.phased_on_container(key).await?;
        let (doomed, k) = {
            let state = self.state().await;
            let container = state.find_container(&id)?.clone();
            refuse_docker_container(&container)?;
            let mut doomed: Vec<Container> = state
                .containers
                .values()
                .filter(|c| c.mode == Mode::Container(container.id.clone()))
                .cloned()
                .collect();
            doomed.push(container);
            (doomed, state.kernel())
        };
        // The veths first: a removal that fails there keeps the container
        // whole in the store and in the datapath (its ports published), and
        // the next sweep puts back what went.
        for c in &doomed {
            for ep in &c.endpoints {
                if let Err(e) = self.unplumb(&k, ep).await {
                    if !force {
                        return Err(e
                            .context(format!("failed to remove {} of {}", ep.ifname, c.name))
                            .into());
                    }
                }
            }
        }
        {
            let mut state = self.state().await;
            for c in &doomed {
                state.unpublish(
                    &c.ports,
                    c.endpoints.first().map(super::publish::Target::of),
                );
            }
        }
        crate::fault::point("container-rm:unpublished");
        crate::fault::point("container-rm:unplumbed");
        let ops: Vec<StoreOp> = doomed
            .iter()
            .map(|c| StoreOp::DeleteContainer(&c.id))
            .collect();
        k.store.apply_grouped(&ops).await?;
        let mut state = self.state().await;
        for c in &doomed {
            state.containers.remove(&c.id);
            info!(name = %c.name, "container removed");
        }
        for c in &doomed {
            state.release_overlay_addresses(&c.id, &c.endpoints).await;
        }
        state.follow_cluster_view().await;
        Ok(doomed.into_iter().map(|c| c.name).collect())
    }
}

/// netd's API leaves Docker's endpoints to Docker.
pub(super) fn refuse_docker_container(c: &Container) -> AgentResult<()> {
    if c.is_docker() {
        return invalid(format!(
            "container {} is a Docker endpoint; change it with docker (docker rm, docker network disconnect)",
            c.name
        ));
    }
    Ok(())
}

fn check_netns(netns: &dyn NetnsDriver, container: &Container) -> AgentResult<()> {
    if !netns.exists(&container.netns) {
        return invalid(format!(
            "network namespace {} does not exist",
            container.netns.display()
        ));
    }
    Ok(())
}

fn open_netns(
    netns: &dyn NetnsDriver,
    container: &Container,
) -> AgentResult<Box<dyn ContainerNetns>> {
    check_netns(netns, container)?;
    netns
        .open(&container.netns)
        .map_err(|e| AgentError::Invalid(format!("{e:#}")))
}
