//! `netd monitor`: live datapath events, one line each.
use std::io::Write;

use anyhow::Result;
use serde_json::Value;

use super::{args::MonitorArgs, output::segment};
use crate::api::client::Client;

pub async fn run(client: &Client, args: MonitorArgs) -> Result<()> {
    let mut query = Vec::new();
    if !args.types.is_empty() {
        let types: Vec<&str> = args.types.iter().map(|t| t.name()).collect();
        query.push(format!("types={}", types.join(",")));
    }
    if let Some(c) = &args.container {
        query.push(format!("container={}", segment(c)));
    }
    if let Some(n) = &args.network {
        query.push(format!("network={}", segment(n)));
    }
    let path = format!("/v1/monitor?{}", query.join("&"));
    let json = matches!(args.format, super::args::LineFormat::Json);
    client
        .stream(&path, |line| {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                return true;
            };
            if v["type"] == "heartbeat" {
                return true;
            }
            let out = if json { line.to_string() } else { render(&v) };
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`| head`) ends the monitor.
            writeln!(stdout, "{out}").is_ok() && stdout.flush().is_ok()
        })
        .await
}

fn side(v: &Value) -> String {
    let addr = v["address"].as_str().unwrap_or("?");
    let mut s = match v["port"].as_u64() {
        Some(p) => format!("{addr}:{p}"),
        None => addr.to_string(),
    };
    if let (Some(c), Some(n)) = (v["container"].as_str(), v["network"].as_str()) {
        s.push_str(&format!(" ({c} on {n})"));
    }
    s
}

/// `drop from_container veth of a: icmp 10.0.0.2 (a on n1) -> ... network-isolation`
fn render(v: &Value) -> String {
    if v["type"] == "lost" {
        return format!("(monitor fell behind: {} events lost)", v["events"]);
    }
    let mut s = format!(
        "{} {} {}: {} {} -> {}",
        v["type"].as_str().unwrap_or("?"),
        v["hook"].as_str().unwrap_or("?"),
        v["device"].as_str().unwrap_or("?"),
        v["proto"].as_str().unwrap_or("?"),
        side(&v["src"]),
        side(&v["dst"]),
    );
    if let Some(r) = v["reason"].as_str() {
        s.push_str(&format!(" {r}"));
    }
    if let Some(nat) = v["nat"].as_str() {
        s.push_str(&format!(" {nat} to {}", side(&v["translated"])));
    }
    if let Some(n) = v["suppressed"].as_u64().filter(|n| *n > 0) {
        s.push_str(&format!(
            " ({n} earlier events suppressed by the rate limit)"
        ));
    }
    s
}
