//! `netd network ...`
use anyhow::Result;
use serde_json::Value;

use super::{
    args::{Format, NetworkCommand, NetworkCreateArgs},
    output::{field, json, segment, short_id, table},
};
use crate::api::{
    client::Client,
    types::{NetworkConnect, NetworkCreate, NetworkDisconnect},
};

pub async fn run(client: &Client, command: NetworkCommand) -> Result<()> {
    match command {
        NetworkCommand::Create(args) => {
            let created = client.post("/v1/networks", &create_request(args)?).await?;
            println!("{}", field(&created, "Id"));
        }
        NetworkCommand::Ls(args) => {
            let nets = client.get("/v1/networks").await?;
            let nets = nets.as_array().cloned().unwrap_or_default();
            if args.quiet {
                nets.iter()
                    .for_each(|n| println!("{}", short_id(field(n, "Id"))));
            } else if let Format::Json = args.format {
                json(&Value::Array(nets));
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
            let mut out = Vec::new();
            for name in names {
                out.push(
                    client
                        .get(&format!("/v1/networks/{}", segment(&name)))
                        .await?,
                );
            }
            json(&Value::Array(out));
        }
        NetworkCommand::Rm { names } => {
            for name in names {
                client
                    .delete(&format!("/v1/networks/{}", segment(&name)))
                    .await?;
                println!("{name}");
            }
        }
        NetworkCommand::Prune { force } => {
            if !force && !confirm("Remove all user-defined networks no container uses?")? {
                anyhow::bail!("prune cancelled (use -f to skip this question)");
            }
            let pruned = client.post("/v1/networks/prune", &()).await?;
            for name in pruned["NetworksDeleted"].as_array().into_iter().flatten() {
                println!("{}", name.as_str().unwrap_or_default());
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
            client
                .post(&format!("/v1/networks/{}/connect", segment(&network)), &req)
                .await?;
        }
        NetworkCommand::Disconnect { network, container } => {
            let req = NetworkDisconnect {
                container,
                ..Default::default()
            };
            client
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

fn row(n: &Value) -> Vec<String> {
    let ipam = &n["IPAM"]["Config"][0];
    vec![
        short_id(field(n, "Id")),
        field(n, "Name").to_string(),
        field(n, "Driver").to_string(),
        field(ipam, "Subnet").to_string(),
        field(ipam, "Gateway").to_string(),
        n["Internal"].as_bool().unwrap_or_default().to_string(),
        field(&n["Options"], "com.docker.network.bridge.enable_icc").to_string(),
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
