//! `netd explain SRC DST[:PORT][/PROTO]`
use anyhow::{bail, Result};
use serde_json::Value;

use super::{args::ExplainArgs, output::json};
use crate::{api::client::Client, schema::Explain};

/// Splits `DST[:PORT][/PROTO]` (names and IPv4 addresses hold neither
/// `:` nor `/`).
pub fn parse_target(s: &str) -> Result<(String, Option<u16>, Option<String>)> {
    let (rest, proto) = match s.rsplit_once('/') {
        Some((r, p)) => (r, Some(p.to_string())),
        None => (s, None),
    };
    let (dst, port) = match rest.rsplit_once(':') {
        Some((d, p)) => match p.parse::<u16>() {
            Ok(port) => (d, Some(port)),
            Err(_) => bail!("{p:?} in {s:?} is not a port (DST[:PORT][/PROTO])"),
        },
        None => (rest, None),
    };
    if dst.is_empty() {
        bail!("{s:?} names no destination (DST[:PORT][/PROTO])");
    }
    Ok((dst.to_string(), port, proto))
}

pub async fn run(client: &Client, args: ExplainArgs) -> Result<()> {
    let (dst, port, proto) = parse_target(&args.dst)?;
    let req = Explain {
        src: args.src,
        dst,
        port,
        proto,
    };
    let out: Value = client.post("/v1/explain", &req).await?;
    if let super::args::Format::Json = args.format {
        json(&out);
        return Ok(());
    }
    print!("{}", render(&out));
    Ok(())
}

fn side(v: &Value) -> String {
    let kind = v["kind"].as_str().unwrap_or("?");
    let addr = v["address"].as_str().unwrap_or("?");
    match kind {
        "container" => format!(
            "container {} ({addr} on {})",
            v["name"].as_str().unwrap_or("?"),
            v["network"].as_str().unwrap_or("?")
        ),
        "remote" => format!(
            "container {} ({addr} on {}, host {})",
            v["name"].as_str().unwrap_or("?"),
            v["network"].as_str().unwrap_or("?"),
            v["host"].as_str().unwrap_or("?")
        ),
        other => format!("{other} {addr}"),
    }
}

/// The walk as people read it: one line per hook, then the verdict.
pub fn render(out: &Value) -> String {
    let p = &out["packet"];
    let mut text = format!(
        "{} from {} to {}\n",
        p["proto"].as_str().unwrap_or("?"),
        side(&out["from"]),
        side(&out["to"])
    );
    for (i, s) in out["walk"].as_array().into_iter().flatten().enumerate() {
        let mut line = format!(
            "  {}. {:<14} {:<14} {}",
            i + 1,
            s["hook"].as_str().unwrap_or("?"),
            s["device"].as_str().unwrap_or("?"),
            s["verdict"].as_str().unwrap_or("?")
        );
        if let Some(r) = s["reason"].as_str() {
            line.push_str(&format!(" ({r})"));
        }
        for r in s["rewrites"].as_array().into_iter().flatten() {
            line.push_str(&format!(
                "  {} {} -> {}",
                r["kind"].as_str().unwrap_or("?"),
                r["from"].as_str().unwrap_or("?"),
                r["to"].as_str().unwrap_or("?")
            ));
        }
        text.push_str(&line);
        text.push('\n');
        text.push_str(&format!("     {}\n", s["packet"].as_str().unwrap_or("")));
        if let Some(n) = s["note"].as_str() {
            text.push_str(&format!("     ({n})\n"));
        }
    }
    match out["verdict"].as_str() {
        Some("dropped") => text.push_str(&format!(
            "dropped by {}: {}\n",
            out["hook"].as_str().unwrap_or("?"),
            out["reason"].as_str().unwrap_or("?")
        )),
        _ => text.push_str(&format!(
            "delivered: {}\n",
            out["delivered"]["note"].as_str().unwrap_or("?")
        )),
    }
    text
}

#[cfg(test)]
mod tests {
    use super::parse_target;

    #[test]
    fn targets() {
        let t = |s| parse_target(s).unwrap();
        assert_eq!(t("web"), ("web".into(), None, None));
        assert_eq!(t("web:80"), ("web".into(), Some(80), None));
        assert_eq!(
            t("10.0.0.2:53/udp"),
            ("10.0.0.2".into(), Some(53), Some("udp".into()))
        );
        assert_eq!(t("host/icmp"), ("host".into(), None, Some("icmp".into())));
        assert!(parse_target("web:http").is_err());
        assert!(parse_target(":80").is_err());
        assert!(parse_target("web:70000").is_err());
    }
}
