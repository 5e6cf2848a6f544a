//! `netd container ...`
use anyhow::Result;
use serde_json::Value;

use super::{
    args::{ContainerCommand, Format},
    output::{field, json, segment, short_id, table},
};
use crate::api::{client::Client, types::ContainerAdd};

pub async fn run(client: &Client, command: ContainerCommand) -> Result<()> {
    match command {
        ContainerCommand::Add {
            name,
            netns,
            network,
            ip,
            ip6,
            aliases,
            publish,
        } => {
            let req = ContainerAdd {
                name,
                netns,
                network,
                ip,
                ip6,
                aliases,
                publish,
                ..Default::default()
            };
            let created = client.post("/v1/containers", &req).await?;
            println!("{}", field(&created, "Id"));
        }
        ContainerCommand::Rm { force, names } => {
            for name in names {
                let q = if force { "?force=true" } else { "" };
                client
                    .delete(&format!("/v1/containers/{}{q}", segment(&name)))
                    .await?;
                println!("{name}");
            }
        }
        ContainerCommand::Ls(args) => {
            let list = client.get("/v1/containers").await?;
            let list = list.as_array().cloned().unwrap_or_default();
            if args.quiet {
                list.iter()
                    .for_each(|c| println!("{}", short_id(field(c, "Id"))));
            } else if let Format::Json = args.format {
                json(&Value::Array(list));
            } else {
                let rows: Vec<Vec<String>> = list.iter().map(row).collect();
                table(
                    &["CONTAINER ID", "NAME", "MODE", "NETWORKS", "PORTS"],
                    &rows,
                );
            }
        }
        ContainerCommand::ResolvConf { name } => {
            let v = client
                .get(&format!("/v1/containers/{}/resolv-conf", segment(&name)))
                .await?;
            print!("{}", field(&v, "ResolvConf"));
        }
        ContainerCommand::Inspect { names } => {
            let mut out = Vec::new();
            for name in names {
                out.push(
                    client
                        .get(&format!("/v1/containers/{}", segment(&name)))
                        .await?,
                );
            }
            json(&Value::Array(out));
        }
    }
    Ok(())
}

/// `netd port`: one line per mapping, `80/tcp -> 0.0.0.0:8080`.
pub async fn port(client: &Client, container: &str, filter: Option<&str>) -> Result<()> {
    let c = client
        .get(&format!("/v1/containers/{}", segment(container)))
        .await?;
    let filter = filter.map(|f| {
        if f.contains('/') {
            f.to_string()
        } else {
            format!("{f}/tcp")
        }
    });
    let mut found = false;
    for m in c["Ports"].as_array().into_iter().flatten() {
        let key = format!("{}/{}", m["ContainerPort"], field(m, "Protocol"));
        if filter.as_ref().is_some_and(|f| *f != key) {
            continue;
        }
        found = true;
        println!("{key} -> {}", host_port(m));
    }
    if let (Some(f), false) = (filter, found) {
        anyhow::bail!("no public port {f} published for {container}");
    }
    Ok(())
}

/// `HOST_IP:PORT` of a published port, an IPv6 address in brackets (as
/// `docker port` shows `[::]:8080`).
fn host_port(m: &Value) -> String {
    let ip = field(m, "HostIp");
    if ip.contains(':') {
        format!("[{ip}]:{}", m["HostPort"])
    } else {
        format!("{ip}:{}", m["HostPort"])
    }
}

fn row(c: &Value) -> Vec<String> {
    let networks: Vec<String> = c["Networks"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(name, ep)| format!("{name}={}", field(ep, "IPAddress")))
                .collect()
        })
        .unwrap_or_default();
    let ports: Vec<String> = c["Ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            format!(
                "{}->{}/{}",
                host_port(m),
                m["ContainerPort"],
                field(m, "Protocol")
            )
        })
        .collect();
    vec![
        short_id(field(c, "Id")),
        field(c, "Name").to_string(),
        field(c, "Mode").to_string(),
        networks.join(","),
        ports.join(","),
    ]
}
