//! Hostile host firewalls for a bed's host netns: what a host that also runs
//! Docker or ufw looks like, so the packet tests can show that netd's traffic
//! does not depend on the host's netfilter rules.
//!
//! `NETD_TEST_FIREWALL` picks the variant every [`crate::Bed`] gets:
//!
//! - unset, empty or `none`: no rules (the permissive host);
//! - `iptables`: iptables (nf_tables backend, `iptables-nft`) with FORWARD
//!   policy DROP and INPUT policy DROP accepting only loopback and
//!   established/related traffic (ufw's defaults), and
//!   `net.bridge.bridge-nf-call-iptables=1` (br_netfilter: every IP packet a
//!   bridge forwards goes through FORWARD), as dockerd sets it;
//! - `nftables`: an `inet filter` table with forward and input chains of
//!   policy drop (input accepting loopback and established/related), also
//!   with `bridge-nf-call-iptables=1`.
//!
//! Everything is set inside the bed's own host netns; the sysctl is per netns
//! on this kernel (checked: the root netns's value must not move). The
//! ruleset is recorded after it is installed and compared when the bed is
//! dropped: netd must not add, change or remove a rule.

use std::path::Path;

use anyhow::{bail, Context};

use crate::cmd::run_ok;
use crate::netns::path_of;

/// The environment variable that picks the variant.
pub const ENV: &str = "NETD_TEST_FIREWALL";

/// The pseudo drop reason of a flow the host's INPUT policy drops (see
/// [`crate::Bed::to_host`]): its witness is the firewall's own count of
/// IPv4 packets its INPUT policy dropped ([`input_drops`]).
pub const HOST_INPUT: &str = "host-input-policy";

const INPUT_COUNTER: &str = "netd-test: input policy drop";

const BRIDGE_NF_CALL: &str = "net/bridge/bridge-nf-call-iptables";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firewall {
    /// No rules at all.
    Permissive,
    /// iptables-nft: INPUT and FORWARD DROP, br_netfilter on.
    Iptables,
    /// nftables `inet filter`: input and forward policy drop, br_netfilter on.
    Nftables,
}

impl Firewall {
    /// The variant `NETD_TEST_FIREWALL` asks for; anything else is an error
    /// (a typo must not silently test the permissive host).
    pub fn from_env() -> anyhow::Result<Firewall> {
        let v = std::env::var(ENV).unwrap_or_default();
        Firewall::parse(&v).with_context(|| format!("{ENV}={v:?}"))
    }

    pub fn parse(s: &str) -> anyhow::Result<Firewall> {
        match s {
            "" | "none" => Ok(Firewall::Permissive),
            "iptables" => Ok(Firewall::Iptables),
            "nftables" => Ok(Firewall::Nftables),
            other => bail!("unknown firewall {other:?}: use none, iptables or nftables"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Firewall::Permissive => "none",
            Firewall::Iptables => "iptables",
            Firewall::Nftables => "nftables",
        }
    }

    /// Does the host drop new connections to its own addresses (INPUT
    /// policy DROP)? Then a container reaching a socket of the host itself
    /// is dropped, as it is for Docker on a ufw host: that is the host's
    /// choice, not netd's traffic.
    pub fn drops_input(self) -> bool {
        self != Firewall::Permissive
    }

    /// Installs the rules in netns `ns`; `scratch` is a directory for the
    /// rule file. Returns the ruleset as installed (see [`ruleset`]).
    pub(crate) fn install(self, ns: &str, scratch: &Path) -> anyhow::Result<Option<String>> {
        let (tool, text) = match self {
            Firewall::Permissive => return Ok(None),
            Firewall::Iptables => ("iptables-nft-restore", IPTABLES_RULES),
            Firewall::Nftables => ("nft", NFT_RULES),
        };
        let file = scratch.join(format!("firewall-{}.rules", self.name()));
        std::fs::write(&file, text)?;
        let file = file.display().to_string();
        let args: Vec<&str> = match self {
            Firewall::Iptables => vec![&file],
            _ => vec!["-f", &file],
        };
        in_ns(ns, tool, &args).with_context(|| {
            format!(
                "installing the {} firewall (is the `{}` package installed? \
                 `cargo xtask setup` installs it)",
                self.name(),
                if self == Firewall::Iptables {
                    "iptables"
                } else {
                    "nftables"
                }
            )
        })?;
        bridge_nf_call_iptables(ns)?;
        Ok(Some(ruleset(ns)?))
    }
}

const IPTABLES_RULES: &str = "\
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
";

const NFT_RULES: &str = r#"
table inet filter {
    chain input {
        type filter hook input priority filter; policy drop;
        iif lo accept
        ct state established,related accept
        meta nfproto ipv4 counter comment "netd-test: input policy drop"
    }
    chain forward {
        type filter hook forward priority filter; policy drop;
    }
}
"#;

/// Runs `program args...` inside netns `ns` (nsenter: no /sys remount).
fn in_ns(ns: &str, program: &str, args: &[&str]) -> anyhow::Result<String> {
    let net = format!("--net={}", path_of(ns).display());
    let mut all = vec![net.as_str(), program];
    all.extend_from_slice(args);
    run_ok("nsenter", &all)
}

/// br_netfilter on, `bridge-nf-call-iptables=1` in `ns` only. Loads the
/// module when this kernel has it as one; refuses when the sysctl turns out
/// not to be per netns (the root netns's value moved; it is put back).
fn bridge_nf_call_iptables(ns: &str) -> anyhow::Result<()> {
    let root_path = Path::new("/proc/sys").join(BRIDGE_NF_CALL);
    if !root_path.exists() {
        // Built in on some kernels, a module on others.
        run_ok("modprobe", &["br_netfilter"])
            .context("br_netfilter is neither built in nor loadable (modprobe from kmod)")?;
    }
    let root_before = std::fs::read_to_string(&root_path)?;
    in_ns(
        ns,
        "sysctl",
        &["-qw", "net.bridge.bridge-nf-call-iptables=1"],
    )?;
    let root_after = std::fs::read_to_string(&root_path)?;
    if root_after != root_before {
        let _ = std::fs::write(&root_path, root_before.trim());
        bail!("net.bridge.bridge-nf-call-iptables is not per netns on this kernel; put back");
    }
    let inside = in_ns(ns, "cat", &[&format!("/proc/sys/{BRIDGE_NF_CALL}")])?;
    if inside.trim() != "1" {
        bail!("bridge-nf-call-iptables is {inside:?} in {ns} after setting it to 1");
    }
    Ok(())
}

/// IPv4 packets the INPUT policy of `firewall` in `ns` has dropped: the
/// policy counter of iptables' INPUT chain, or the counting rule at the end
/// of the nftables input chain.
pub fn input_drops(ns: &str, firewall: Firewall) -> anyhow::Result<u64> {
    let (text, what) = match firewall {
        Firewall::Permissive => return Ok(0),
        Firewall::Iptables => (
            in_ns(ns, "iptables-nft", &["-L", "INPUT", "-n", "-v", "-x"])?,
            "policy DROP ",
        ),
        Firewall::Nftables => (
            in_ns(ns, "nft", &["list", "chain", "inet", "filter", "input"])?,
            "counter packets ",
        ),
    };
    let line = text
        .lines()
        .find(|l| l.contains(what) && (firewall == Firewall::Iptables || l.contains(INPUT_COUNTER)))
        .with_context(|| format!("no INPUT drop counter in:\n{text}"))?;
    let n = line[line.find(what).unwrap_or(0) + what.len()..]
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .with_context(|| format!("unreadable INPUT drop counter: {line}"))?;
    Ok(n)
}

/// Everything netfilter holds in `ns`, comparable over time: `nft list
/// ruleset` (iptables-nft's tables included, packet counts left out), `iptables-nft-save` and
/// `iptables-legacy-save` without their comment lines and counters, and the
/// br_netfilter sysctl.
pub fn ruleset(ns: &str) -> anyhow::Result<String> {
    let strip = |s: String| -> String {
        s.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| match (l.starts_with(':'), l.rfind(" [")) {
                (true, Some(i)) => &l[..i],
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut out = String::new();
    out.push_str("== nft list ruleset\n");
    // iptables-nft's rules count packets: keep the rule, drop the numbers.
    for l in in_ns(ns, "nft", &["list", "ruleset"])?.lines() {
        let l = match l.find("counter packets ") {
            Some(i) => {
                let rest = &l[i + "counter packets ".len()..];
                let tail = rest.splitn(4, ' ').nth(3).unwrap_or("");
                format!("{}counter {tail}", &l[..i])
            }
            None => l.to_string(),
        };
        out.push_str(&l);
        out.push('\n');
    }
    out.push_str("\n== iptables-nft-save\n");
    out.push_str(&strip(in_ns(ns, "iptables-nft-save", &[])?));
    if let Ok(legacy) = in_ns(ns, "iptables-legacy-save", &[]) {
        out.push_str("\n== iptables-legacy-save\n");
        out.push_str(&strip(legacy));
    }
    let sysctl = in_ns(ns, "cat", &[&format!("/proc/sys/{BRIDGE_NF_CALL}")]).unwrap_or_default();
    out.push_str(&format!("\n== {BRIDGE_NF_CALL} = {}\n", sysctl.trim()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_parse_and_typos_are_refused() {
        assert_eq!(Firewall::parse("").unwrap(), Firewall::Permissive);
        assert_eq!(Firewall::parse("none").unwrap(), Firewall::Permissive);
        assert_eq!(Firewall::parse("iptables").unwrap(), Firewall::Iptables);
        assert_eq!(Firewall::parse("nftables").unwrap(), Firewall::Nftables);
        assert!(Firewall::parse("ufw").is_err());
        assert!(Firewall::Iptables.drops_input() && !Firewall::Permissive.drops_input());
    }
}
