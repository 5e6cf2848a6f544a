//! `netd status`
use anyhow::Result;

use super::{
    args::{Format, StatusArgs},
    output::json,
};
use crate::api::client::Client;

pub async fn run(client: &Client, args: StatusArgs) -> Result<()> {
    let status = client.get("/v1/status").await?;
    if let Format::Json = args.format {
        json(&status);
        return Ok(());
    }
    println!(
        "netd {} up {}s",
        status["version"].as_str().unwrap_or("?"),
        status["uptime_seconds"]
    );
    println!(
        "networks: {}   containers: {}",
        status["networks"], status["containers"]
    );
    println!(
        "programs: {}   pinned links: {}",
        status["programs"], status["pinned_links"]
    );
    if let Some(maps) = status["maps"].as_object() {
        for (name, m) in maps {
            println!("map {name}: {} / {}", m["entries"], m["capacity"]);
        }
    }
    let ct = &status["conntrack"];
    println!("conntrack: {} / {} flows", ct["flows"], ct["capacity"]);
    if let Some(uplinks) = status["uplinks"].as_object() {
        for (name, u) in uplinks {
            println!(
                "uplink {name}: {} (snat ports {})",
                u["address"], status["snat_ports"]
            );
        }
    }
    println!("drops:");
    if let Some(drops) = status["drops"].as_object() {
        for (reason, n) in drops {
            println!("  {reason:<20} {n}");
        }
    }
    let repairs = status["last_reconcile"]["repairs"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    println!("last reconcile: {repairs} repairs");
    Ok(())
}
