//! `netd container ...`
use anyhow::Result;

use super::{
    args::{ContainerCommand, Format},
    output::{json, segment, short_id, table},
};
use crate::{
    api::client::Client,
    schema::{ContainerAdd, ContainerView, Created, Removed, ResolvConf},
};

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
            let created: Created = client.post("/v1/containers", &req).await?;
            println!("{}", created.id);
        }
        ContainerCommand::Rm { force, names } => {
            for name in names {
                let q = if force { "?force=true" } else { "" };
                let _: Removed = client
                    .delete(&format!("/v1/containers/{}{q}", segment(&name)))
                    .await?;
                println!("{name}");
            }
        }
        ContainerCommand::Ls(args) => {
            let list: Vec<ContainerView> = client.get("/v1/containers").await?;
            if args.quiet {
                list.iter().for_each(|c| println!("{}", short_id(&c.id)));
            } else if let Format::Json = args.format {
                json(&list);
            } else {
                let rows: Vec<Vec<String>> = list.iter().map(row).collect();
                table(
                    &["CONTAINER ID", "NAME", "MODE", "NETWORKS", "PORTS"],
                    &rows,
                );
            }
        }
        ContainerCommand::ResolvConf { name } => {
            let v: ResolvConf = client
                .get(&format!("/v1/containers/{}/resolv-conf", segment(&name)))
                .await?;
            print!("{}", v.resolv_conf);
        }
        ContainerCommand::Inspect { names } => {
            let mut out: Vec<ContainerView> = Vec::new();
            for name in names {
                out.push(
                    client
                        .get(&format!("/v1/containers/{}", segment(&name)))
                        .await?,
                );
            }
            json(&out);
        }
    }
    Ok(())
}

/// `netd port`: one line per mapping, `80/tcp -> 0.0.0.0:8080`.
pub async fn port(client: &Client, container: &str, filter: Option<&str>) -> Result<()> {
    let c: ContainerView = client
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
    for m in &c.ports {
        let key = m.container_key();
        if filter.as_ref().is_some_and(|f| *f != key) {
            continue;
        }
        found = true;
        println!("{key} -> {}", m.host());
    }
    if let (Some(f), false) = (filter, found) {
        anyhow::bail!("no public port {f} published for {container}");
    }
    Ok(())
}

fn row(c: &ContainerView) -> Vec<String> {
    let networks: Vec<String> = c
        .networks
        .iter()
        .map(|(name, ep)| format!("{name}={}", ep.ip_address))
        .collect();
    let ports: Vec<String> = c
        .ports
        .iter()
        .map(|m| format!("{}->{}", m.host(), m.container_key()))
        .collect();
    vec![
        short_id(&c.id),
        c.name.clone(),
        c.mode.clone(),
        networks.join(","),
        ports.join(","),
    ]
}
