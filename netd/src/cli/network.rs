//! `netd network ...`
use anyhow::Result;

use super::{
    args::{Format, NetworkCommand, NetworkCreateArgs},
    output::{json, segment, short_id, table},
};
use crate::{
    api::client::Client,
    schema::{
        ContainerView, Created, NetworkConnect, NetworkCreate, NetworkDisconnect, NetworkView,
        Pruned, Removed,
    },
};

pub async fn run(client: &Client, command: NetworkCommand) -> Result<()> {
    match command {
        NetworkCommand::Create(args) => {
            let created: Created = client.post("/v1/networks", &create_request(args)?).await?;
            println!("{}", created.id);
        }
        NetworkCommand::Ls(args) => {
            let nets: Vec<NetworkView> = client.get("/v1/networks").await?;
            if args.quiet {
                nets.iter().for_each(|n| println!("{}", short_id(&n.id)));
            } else if let Format::Json = args.format {
                json(&nets);
            } else {
                let rows: Vec<Vec<String>> = nets.iter().map(row).collect();
                table(
                    &[
                        "NETWORK ID",
                        "NAME",
                        "DRIVER",
                        "SUBNET",
                        "GATEWAY",
                        "INTERNAL",
                        "ICC",
                    ],
                    &rows,
                );
            }
        }
        NetworkCommand::Inspect { names } => {
            let mut out: Vec<NetworkView> = Vec::new();
            for name in names {
                out.push(
                    client
                        .get(&format!("/v1/networks/{}", segment(&name)))
                        .await?,
                );
            }
            json(&out);
        }
        NetworkCommand::Rm { names } => {
            for name in names {
                let _: Removed<String> = client
                    .delete(&format!("/v1/networks/{}", segment(&name)))
                    .await?;
                println!("{name}");
            }
        }
        NetworkCommand::Prune { force } => {
            if !force && !confirm("Remove all user-defined networks no container uses?")? {
                anyhow::bail!("prune cancelled (use -f to skip this question)");
            }
            let pruned: Pruned = client.post("/v1/networks/prune", &()).await?;
            for name in pruned.networks_deleted {
                println!("{name}");
            }
        }
        NetworkCommand::Connect {
            ip,
            ip6,
            aliases,
            network,
            container,
        } => {
            let req = NetworkConnect {
                container,
                ip,
                ip6,
                aliases,
                ..Default::default()
            };
            let _: ContainerView = client
                .post(&format!("/v1/networks/{}/connect", segment(&network)), &req)
                .await?;
        }
        NetworkCommand::Disconnect { network, container } => {
            let req = NetworkDisconnect {
                container,
                ..Default::default()
            };
            let _: ContainerView = client
                .post(
                    &format!("/v1/networks/{}/disconnect", segment(&network)),
                    &req,
                )
                .await?;
        }
    }
    Ok(())
}

/// One IPv4 and one IPv6 value at most of a repeatable flag, split by
/// family.
fn by_family<T, A, B>(
    flag: &str,
    values: Vec<T>,
    split: impl Fn(T) -> Result<A, B>,
) -> Result<(Option<A>, Option<B>)> {
    let (mut v4, mut v6) = (None, None);
    for value in values {
        let (slot, family) = match split(value) {
            Ok(a) => (v4.replace(a).is_some(), "IPv4"),
            Err(b) => (v6.replace(b).is_some(), "IPv6"),
        };
        if slot {
            anyhow::bail!(
                "--{flag} given twice for {family}: a network has one {family} {flag} at most"
            );
        }
    }
    Ok((v4, v6))
}

fn create_request(a: NetworkCreateArgs) -> Result<NetworkCreate> {
    use ipnet::IpNet;
    use std::net::IpAddr;
    let net = |n| match n {
        IpNet::V4(n) => Ok(n),
        IpNet::V6(n) => Err(n),
    };
    let addr = |ip| match ip {
        IpAddr::V4(ip) => Ok(ip),
        IpAddr::V6(ip) => Err(ip),
    };
    let (subnet, subnet6) = by_family("subnet", a.subnets, net)?;
    let (gateway, gateway6) = by_family("gateway", a.gateways, addr)?;
    let (ip_range, ip_range6) = by_family("ip-range", a.ip_ranges, net)?;
    Ok(NetworkCreate {
        name: a.name,
        subnet,
        gateway,
        ip_range,
        ipv6: a.ipv6,
        ipv4: a.ipv4,
        subnet6,
        gateway6,
        ip_range6,
        internal: a.internal,
        icc: a.icc,
        masquerade: a.masquerade,
        mtu: a.mtu,
        bridge: a.bridge,
        labels: a.labels.into_iter().collect(),
        options: a.options.into_iter().collect(),
        driver: Some(a.driver),
    })
}

fn row(n: &NetworkView) -> Vec<String> {
    let ipam = n.ipv4();
    vec![
        short_id(&n.id),
        n.name.clone(),
        n.driver.clone(),
        ipam.map(|p| p.subnet.to_string()).unwrap_or_default(),
        ipam.map(|p| p.gateway.to_string()).unwrap_or_default(),
        n.internal.to_string(),
        n.option("com.docker.network.bridge.enable_icc")
            .unwrap_or_default()
            .to_string(),
    ]
}

/// Asks on stderr, reads y/N from stdin; without a terminal, no.
fn confirm(question: &str) -> Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
