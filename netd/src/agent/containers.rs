//! Container operations: add (in any network mode) and remove.
use anyhow::Context;
use tracing::info;

use super::{validate_name, Agent};
use crate::{
    error::{conflict, invalid, AgentError, AgentResult},
    model::{new_id, now, requested_mac, Container, Mode, DEFAULT_NETWORK},
    net::ContainerNs,
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

impl Agent {
    pub async fn add_container(&mut self, req: ContainerAdd) -> AgentResult<Container> {
        validate_name("container", &req.name)?;
        if self.containers.values().any(|c| c.name == req.name) {
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
        let mut ports = Vec::new();
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
        match requested {
            Requested::Host => container.mode = Mode::Host,
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
            }
            Requested::None => {
                let ns = open_netns(&container)?;
                ns.lo_up().await?;
                container.mode = Mode::None;
            }
            Requested::Network(key) => {
                let net = self.find_network(&key)?.clone();
                super::networks::refuse_docker_network(
                    &net,
                    "attach containers to it with `docker run --network`",
                )?;
                ports = self.plan_ports(&net, &req.publish)?;
                let ns = open_netns(&container)?;
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
                if let Err(e) = self
                    .plumb_endpoint(&container.id, &ns, &net, &ep, true)
                    .await
                    .with_context(|| format!("failed to attach {} to {}", container.name, net.name))
                {
                    self.release_claim(&container.id, &net, ip).await;
                    return Err(e.into());
                }
                container.endpoints.push(ep);
                crate::fault::point("container-add:plumbed");
            }
        }
        let target = container.endpoints.first().map(|e| e.ip);
        let runtime_binds = container.runtime_binds_ports();
        let published = match target.map_or(Ok(Vec::new()), |ip| {
            self.realise_ports(ports, ip, runtime_binds)
        }) {
            Ok(ports) => ports,
            Err(e) => {
                for ep in &container.endpoints {
                    let _ = self.unplumb_endpoint(ep).await;
                }
                self.release_overlay_addresses(&container.id, &container.endpoints)
                    .await;
                return Err(e);
            }
        };
        container.ports = published;
        crate::fault::point("container-add:published");
        if let Err(e) = self.store.apply(&[StoreOp::PutContainer(&container)]) {
            self.unpublish(&container.ports, None);
            for ep in &container.endpoints {
                let _ = self.unplumb_endpoint(ep).await;
            }
            self.release_overlay_addresses(&container.id, &container.endpoints)
                .await;
            return Err(e.into());
        }
        info!(name = %container.name, mode = ?container.mode, "container added");
        self.containers
            .insert(container.id.clone(), container.clone());
        self.follow_cluster_view().await;
        Ok(container)
    }

    /// Removes a container, its endpoints and every container sharing its
    /// netns. With `force`, kernel clean-up errors do not stop the removal.
    pub async fn remove_container(&mut self, key: &str, force: bool) -> AgentResult<Vec<String>> {
        let container = self.find_container(key)?.clone();
        refuse_docker_container(&container)?;
        let mut doomed: Vec<Container> = self
            .containers
            .values()
            .filter(|c| c.mode == Mode::Container(container.id.clone()))
            .cloned()
            .collect();
        doomed.push(container);
        for c in &doomed {
            self.unpublish(&c.ports, c.endpoints.first().map(|e| e.ip));
            crate::fault::point("container-rm:unpublished");
            for ep in &c.endpoints {
                if let Err(e) = self.unplumb_endpoint(ep).await {
                    if !force {
                        return Err(e
                            .context(format!("failed to remove {} of {}", ep.ifname, c.name))
                            .into());
                    }
                }
            }
        }
        crate::fault::point("container-rm:unplumbed");
        let ops: Vec<StoreOp> = doomed
            .iter()
            .map(|c| StoreOp::DeleteContainer(&c.id))
            .collect();
        self.store.apply(&ops)?;
        for c in &doomed {
            self.containers.remove(&c.id);
            info!(name = %c.name, "container removed");
        }
        for c in &doomed {
            self.release_overlay_addresses(&c.id, &c.endpoints).await;
        }
        self.follow_cluster_view().await;
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

fn open_netns(container: &Container) -> AgentResult<ContainerNs> {
    if !container.netns.exists() {
        return invalid(format!(
            "network namespace {} does not exist",
            container.netns.display()
        ));
    }
    ContainerNs::open(&container.netns).map_err(|e| AgentError::Invalid(format!("{e:#}")))
}
