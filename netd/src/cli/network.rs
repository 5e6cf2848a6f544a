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
            let created = client.post("/v1/networks", &create_request(args)).await?;
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
            aliases,
            network,
            container,
        } => {
            let req = NetworkConnect {
                container,
                ip,
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

fn create_request(a: NetworkCreateArgs) -> NetworkCreate {
    NetworkCreate {
        name: a.name,
        subnet: a.subnet,
        gateway: a.gateway,
        ip_range: a.ip_range,
        internal: a.internal,
        icc: a.icc,
        masquerade: a.masquerade,
        mtu: a.mtu,
        bridge: a.bridge,
        labels: a.labels.into_iter().collect(),
        options: a.options.into_iter().collect(),
    }
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
