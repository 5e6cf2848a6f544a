//! The cluster session: register this host on a lease, publish its
//! endpoints again, take a snapshot, then follow the watch while renewing
//! the lease; whatever breaks (etcd down, this host cut off, the lease
//! ended) starts a new session a second later. Meanwhile the agent keeps
//! forwarding with the last view it had.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Result;
use tracing::{info, warn};

use super::SharedAgent;
use crate::cluster::{reclaim::Absences, records::HostRecord, Cluster};

/// Pause between two sessions.
const RETRY: Duration = Duration::from_secs(1);

/// Runs cluster sessions for as long as the agent runs (returns at once
/// without a cluster store).
pub async fn follow_cluster(agent: Arc<SharedAgent>) {
    let Some(cluster) = agent.lock().await.cluster.clone() else {
        return;
    };
    let since = crate::model::now();
    loop {
        let Err(e) = session(&agent, &cluster, &since).await;
        let was = cluster.session().connected;
        cluster.update(|s| {
            s.connected = false;
            s.last_error = Some(format!("{e:#}"));
        });
        if was {
            warn!(error = %format!("{e:#}"), "cluster store session lost; forwarding with the last known state");
        } else {
            tracing::debug!(error = %format!("{e:#}"), "cluster store not reachable");
        }
        tokio::time::sleep(RETRY).await;
    }
}

async fn session(
    agent: &Arc<SharedAgent>,
    cluster: &Cluster,
    since: &str,
) -> Result<std::convert::Infallible> {
    let store = &cluster.store;
    let config = &cluster.config;
    let lease = store.grant(i64::from(config.lease_ttl)).await?;
    let host = HostRecord {
        id: config.host_id.clone(),
        hostname: config.hostname.clone(),
        address: config.advertise,
        since: since.to_string(),
    };
    store.register(&host, lease).await?;
    // This host's endpoints, on the new lease; its claims no container
    // holds any more (released while the store was away) go.
    let before = store.snapshot().await?;
    let own = agent.lock().await.own_overlay_endpoints();
    let mut unpublished = Vec::new();
    for (ep, claim) in &own {
        if !store.republish(ep, claim, lease).await? {
            warn!(ip = %ep.ip, container = %ep.container, "overlay address taken by another container while this host was away; its endpoint is not published");
            unpublished.push(format!(
                "container {}: its address {} was given to another container while this host was \
                 away; other hosts do not reach it: disconnect and connect it again for a new address",
                ep.container, ep.ip
            ));
        }
    }
    for ((net, ip), claim) in &before.addresses {
        let held = own
            .iter()
            .any(|(e, c)| &e.network_id == net && e.ip == *ip && c == claim);
        if claim.host == config.host_id && !held {
            store.release_address(net, *ip, claim).await?;
        }
    }
    let view = store.snapshot().await?;
    let revision = view.revision;
    let mut watch = store.watch(revision).await?;
    cluster.update(|s| {
        s.connected = true;
        s.lease = lease;
        s.last_error = None;
        s.sessions += 1;
        s.last_contact = Some(crate::model::now());
        s.unpublished = unpublished;
    });
    info!(
        lease,
        revision,
        endpoints = own.len(),
        "cluster store session started"
    );
    agent.lock().await.cluster_synced(view).await;
    let period = Duration::from_secs(u64::from(config.lease_ttl).div_ceil(3).max(1));
    // A slow answer is not yet a lost store: wait up to the lease's TTL.
    let patience = Duration::from_secs(u64::from(config.lease_ttl).max(3));
    let keep = store.keep_alive(lease, period, patience);
    tokio::pin!(keep);
    let mut absences = Absences::default();
    let mut sweep = tokio::time::interval(period);
    loop {
        tokio::select! {
            e = &mut keep => return Err(e),
            _ = sweep.tick(), if config.reclaim_after.is_some() => {
                reclaim(agent, cluster, &mut absences).await?;
            }
            batch = watch.next() => {
                let (events, revision) = batch?;
                agent.lock().await.cluster_events(&events, revision).await;
                cluster.update(|s| s.last_contact = Some(crate::model::now()));
            }
        }
    }
}

/// Gives back the addresses of hosts away longer than
/// `--cluster-reclaim-after` (see `cluster::reclaim`).
async fn reclaim(
    agent: &Arc<SharedAgent>,
    cluster: &Cluster,
    absences: &mut Absences,
) -> Result<()> {
    let Some(after) = cluster.config.reclaim_after else {
        return Ok(());
    };
    let due = {
        let a = agent.lock().await;
        absences.due(
            &a.cluster_view,
            &cluster.config.host_id,
            Instant::now(),
            after,
        )
    };
    for (net, ip, claim) in due {
        if cluster.store.reclaim_address(&net, ip, &claim).await? {
            info!(%ip, network = %net, host = %claim.host, "overlay address given back: its host has been away longer than --cluster-reclaim-after");
        }
    }
    Ok(())
}
