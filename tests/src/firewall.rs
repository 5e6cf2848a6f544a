//! Hostile host firewalls for a bed's host netns: what a host that also runs
//! Docker or ufw looks like, so the packet tests can show that netd's traffic
//! does not depend on the host's netfilter rules.
//!
//! `NETD_TEST_FIREWALL` picks the variant every [`crate::Bed`] gets:
//!
//! - unset, empty or `none`: no rules (the permissive host);
//! - `iptables`: iptables and ip6tables (nf_tables backend, `iptables-nft`,
//!   `ip6tables-nft`) with FORWARD policy DROP and INPUT policy DROP
//!   accepting only loopback and established/related traffic (ufw's
//!   defaults; for IPv6 also neighbour and router discovery with hop limit
//!   255, as ufw's `before6.rules` accept: without them a host cannot run
//!   IPv6 at all), and `net.bridge.bridge-nf-call-iptables=1` and
//!   `bridge-nf-call-ip6tables=1` (br_netfilter: every IP packet a bridge
//!   forwards goes through FORWARD), as dockerd sets them;
//! - `nftables`: an `inet filter` table (both families) with forward and
//!   input chains of policy drop (input accepting loopback,
//!   established/related and, for IPv6, neighbour and router discovery),
//!   with the same sysctls.
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
/// packets (both families) its INPUT policy dropped ([`input_drops`]).
pub const HOST_INPUT: &str = "host-input-policy";

const INPUT_COUNTER: &str = "netd-test: input policy drop";

/// The br_netfilter switches, IPv4 and IPv6.
const BRIDGE_NF_CALLS: [&str; 2] = [
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firewall {
    /// No rules at all.
    Permissive,
    /// iptables-nft and ip6tables-nft: INPUT and FORWARD DROP, br_netfilter on.
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
        let steps: Vec<(&str, &str, String)> = match self {
            Firewall::Permissive => return Ok(None),
            Firewall::Iptables => vec![
                ("iptables-nft-restore", "iptables", filter_rules("")),
                (
                    "ip6tables-nft-restore",
                    "ip6tables",
                    filter_rules(IP6_EXTRA),
                ),
            ],
            Firewall::Nftables => vec![("nft", "nft", NFT_RULES.to_string())],
        };
        for (tool, name, text) in steps {
            let file = scratch.join(format!("firewall-{name}.rules"));
            std::fs::write(&file, text)?;
            let file = file.display().to_string();
            let args: Vec<&str> = match self {
                Firewall::Iptables => vec![&file],
                _ => vec!["-f", &file],
            };
            in_ns(ns, tool, &args).with_context(|| {
                format!(
                    "installing the {} firewall with {tool} (is the `{}` package installed? \
                     `cargo xtask setup` installs it)",
                    self.name(),
                    if self == Firewall::Iptables {
                        "iptables"
                    } else {
                        "nftables"
                    }
                )
            })?;
        }
        for sysctl in BRIDGE_NF_CALLS {
            bridge_nf_call(ns, sysctl)?;
        }
        Ok(Some(ruleset(ns)?))
    }
}

/// ufw's defaults for iptables and ip6tables (`iptables-restore` input):
/// INPUT and FORWARD DROP, INPUT accepting loopback, established/related
/// and `extra` rules.
fn filter_rules(extra: &str) -> String {
    format!(
        "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A INPUT -i lo -j ACCEPT\n\
         -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n{extra}COMMIT\n"
    )
}

/// IPv6 also accepts neighbour and router discovery (ICMPv6 133-136 with
/// hop limit 255, so only from the link), as ufw's `before6.rules` do.
const IP6_EXTRA: &str = "\
-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 133 -m hl --hl-eq 255 -j ACCEPT
-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 134 -m hl --hl-eq 255 -j ACCEPT
-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 135 -m hl --hl-eq 255 -j ACCEPT
-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 136 -m hl --hl-eq 255 -j ACCEPT
";

const NFT_RULES: &str = r#"
table inet filter {
    chain input {
        type filter hook input priority filter; policy drop;
        iif lo accept
        ct state established,related accept
        icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } ip6 hoplimit 255 accept
        counter comment "netd-test: input policy drop"
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

/// br_netfilter on, `sysctl` (a `bridge-nf-call-*` path under
/// /proc/sys) = 1 in `ns` only. Loads the module when this kernel has it as
/// one; refuses when the sysctl turns out not to be per netns (the root
/// netns's value moved; it is put back).
fn bridge_nf_call(ns: &str, sysctl: &str) -> anyhow::Result<()> {
    let root_path = Path::new("/proc/sys").join(sysctl);
    if !root_path.exists() {
        // Built in on some kernels, a module on others.
        run_ok("modprobe", &["br_netfilter"])
            .context("br_netfilter is neither built in nor loadable (modprobe from kmod)")?;
    }
    let root_before = std::fs::read_to_string(&root_path)?;
    let name = sysctl.replace('/', ".");
    in_ns(ns, "sysctl", &["-qw", &format!("{name}=1")])?;
    let root_after = std::fs::read_to_string(&root_path)?;
    if root_after != root_before {
        let _ = std::fs::write(&root_path, root_before.trim());
        bail!("{name} is not per netns on this kernel; put back");
    }
    let inside = in_ns(ns, "cat", &[&format!("/proc/sys/{sysctl}")])?;
    if inside.trim() != "1" {
        bail!("{name} is {inside:?} in {ns} after setting it to 1");
    }
    Ok(())
}

/// Packets the INPUT policy of `firewall` in `ns` has dropped, both
/// families: the policy counters of iptables' and ip6tables' INPUT chains,
/// or the counting rule at the end of the nftables input chain. (IPv6
/// multicast a container sends to the bridge, MLD reports for one, counts
/// too: the witness may only grow beyond what a test's flows account for.)
pub fn input_drops(ns: &str, firewall: Firewall) -> anyhow::Result<u64> {
    match firewall {
        Firewall::Permissive => Ok(0),
        Firewall::Iptables => {
            let mut n = 0;
            for tool in ["iptables-nft", "ip6tables-nft"] {
                let text = in_ns(ns, tool, &["-L", "INPUT", "-n", "-v", "-x"])?;
                n += counter_after(&text, "policy DROP ", |_| true)?;
            }
            Ok(n)
        }
        Firewall::Nftables => {
            let text = in_ns(ns, "nft", &["list", "chain", "inet", "filter", "input"])?;
            counter_after(&text, "counter packets ", |l| l.contains(INPUT_COUNTER))
        }
    }
}

/// The number after `what` on the first line of `text` that has it and
/// passes `pick`.
fn counter_after(text: &str, what: &str, pick: impl Fn(&str) -> bool) -> anyhow::Result<u64> {
    let line = text
        .lines()
        .find(|l| l.contains(what) && pick(l))
        .with_context(|| format!("no INPUT drop counter in:\n{text}"))?;
    line[line.find(what).unwrap_or(0) + what.len()..]
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .with_context(|| format!("unreadable INPUT drop counter: {line}"))
}

/// Everything netfilter holds in `ns`, comparable over time: `nft list
/// ruleset` (iptables-nft's tables included, packet counts left out),
/// `iptables-nft-save`, `ip6tables-nft-save` and their legacy twins without
/// their comment lines and counters, and both br_netfilter sysctls.
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
    for tool in ["iptables-nft-save", "ip6tables-nft-save"] {
        out.push_str(&format!("\n== {tool}\n"));
        out.push_str(&strip(in_ns(ns, tool, &[])?));
    }
    for tool in ["iptables-legacy-save", "ip6tables-legacy-save"] {
        if let Ok(legacy) = in_ns(ns, tool, &[]) {
            out.push_str(&format!("\n== {tool}\n"));
            out.push_str(&strip(legacy));
        }
    }
    for sysctl in BRIDGE_NF_CALLS {
        let v = in_ns(ns, "cat", &[&format!("/proc/sys/{sysctl}")]).unwrap_or_default();
        out.push_str(&format!("\n== {sysctl} = {}\n", v.trim()));
    }
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
