//! The kernel's view of a bed (links, addresses and default routes with
//! iproute2, pinned maps with bpftool) and [`consistency`], which compares
//! it with what the agent stored, both families.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use netd_tests::cmd::{ip_ns, run_timeout};
use netd_tests::Bed;
use serde_json::Value;

/// One line of `ip -o link`: name (without `@peer`), flags, master.
#[derive(Debug, Clone)]
pub struct Link {
    pub name: String,
    pub up: bool,
    pub master: Option<String>,
}

pub fn links_of(ns: &str) -> Result<Vec<Link>, String> {
    let s = ip_ns(ns, &["-o", "link", "show"]).map_err(|e| format!("{e:#}"))?;
    Ok(s.lines()
        .filter_map(|l| {
            let name = l.split(": ").nth(1)?;
            let name = name.split('@').next().unwrap_or(name).to_string();
            let flags = l.split('<').nth(1)?.split('>').next()?;
            let words: Vec<&str> = l.split_whitespace().collect();
            let master = words
                .iter()
                .position(|w| *w == "master")
                .and_then(|i| words.get(i + 1))
                .map(|m| m.to_string());
            Some(Link {
                name,
                up: flags.split(',').any(|f| f == "UP"),
                master,
            })
        })
        .collect())
}

/// Interface name -> ifindex in `ns`.
pub fn ifindexes(ns: &str) -> Result<BTreeMap<String, u32>, String> {
    let s = ip_ns(ns, &["-o", "link", "show"]).map_err(|e| format!("{e:#}"))?;
    Ok(s.lines()
        .filter_map(|l| {
            let mut f = l.split(": ");
            let index = f.next()?.trim().parse().ok()?;
            let name = f.next()?;
            Some((name.split('@').next().unwrap_or(name).to_string(), index))
        })
        .collect())
}

/// An address family as iproute2 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn flag(self) -> &'static str {
        match self {
            Family::V4 => "-4",
            Family::V6 => "-6",
        }
    }

    fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

/// `IP/PREFIX` addresses of `dev` in `ns` of family `f` (IPv6: global
/// scope only, not the link-local address every interface has).
pub fn addrs_of(ns: &str, dev: &str, f: Family) -> Result<Vec<String>, String> {
    let mut args = vec![f.flag(), "-o", "addr", "show", "dev", dev];
    if f == Family::V6 {
        args.extend(["scope", "global"]);
    }
    let s = ip_ns(ns, &args).map_err(|e| format!("{e:#}"))?;
    let word = if f == Family::V4 { "inet" } else { "inet6" };
    Ok(s.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.iter()
                .position(|x| *x == word)
                .and_then(|i| w.get(i + 1))
                .map(|a| a.to_string())
        })
        .collect())
}

/// The default routes of family `f` in `ns`: (gateway, device) each.
pub fn default_routes(ns: &str, f: Family) -> Result<Vec<(String, String)>, String> {
    let s = ip_ns(ns, &[f.flag(), "route", "show", "default"]).map_err(|e| format!("{e:#}"))?;
    Ok(s.lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let after = |key: &str| {
                w.iter()
                    .position(|x| *x == key)
                    .and_then(|i| w.get(i + 1))
                    .map(|x| x.to_string())
                    .unwrap_or_default()
            };
            (after("via"), after("dev"))
        })
        .collect())
}

/// A name netd gives the host end of a veth: `nd` and 11 hex digits.
pub fn is_host_veth(name: &str) -> bool {
    name.len() == 13 && name.starts_with("nd") && name[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// A bridge name netd makes (`br-<12 hex>`, or the default `netd0`).
fn is_netd_bridge(name: &str) -> bool {
    name == "netd0" || name.starts_with("br-")
}

// ---------------------------------------------------------------- maps

/// (host address, host port, protocol, container address, container port).
pub type PubEntry = (Ipv4Addr, u16, u8, Ipv4Addr, u16);

/// [`PubEntry`] of `PUBLISHED6` (`::`: every host IPv6 address).
pub type PubEntry6 = (Ipv6Addr, u16, u8, Ipv6Addr, u16);

/// [`PubEntry`] or [`PubEntry6`].
type PubEntryIp = (IpAddr, u16, u8, IpAddr, u16);

/// The key and value bytes of one map entry.
type MapEntry = (Vec<u8>, Vec<u8>);

fn hex_bytes(x: &Value) -> Vec<u8> {
    x.as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b.as_str())
        .filter_map(|b| u8::from_str_radix(b.trim_start_matches("0x"), 16).ok())
        .collect()
}

/// `bpftool -j map dump` of the pinned map `name`.
fn dump(bed: &Bed, name: &str) -> Result<Value, String> {
    let pin = bed.bpffs().join(format!("v1/maps/{name}"));
    let pin = pin.display().to_string();
    let out = run_timeout(
        "bpftool",
        &["-j", "map", "dump", "pinned", &pin],
        Duration::from_secs(10),
    );
    if !out.success() {
        return Err(format!("dumping {name}:\n{out}"));
    }
    serde_json::from_str(&out.stdout)
        .map_err(|e| format!("bpftool output is not JSON ({e}): {}", out.stdout))
}

/// The (key, value) bytes of every entry of the pinned map `name`.
pub fn map_entries(bed: &Bed, name: &str) -> Result<Vec<MapEntry>, String> {
    Ok(dump(bed, name)?
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (hex_bytes(&e["key"]), hex_bytes(&e["value"])))
        .collect())
}

fn ip4_at(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

fn ip6_at(b: &[u8]) -> Ipv6Addr {
    let o: [u8; 16] = b[..16].try_into().expect("16 bytes");
    Ipv6Addr::from(o)
}

fn u32_at(b: &[u8]) -> u32 {
    u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
}

/// The pinned `PUBLISHED` map, one [`PubEntry`] per entry.
pub fn published_entries(bed: &Bed) -> Result<Vec<PubEntry>, String> {
    let mut entries = Vec::new();
    for (k, val) in map_entries(bed, "PUBLISHED")? {
        if k.len() < 7 || val.len() < 6 {
            return Err(format!("unexpected PUBLISHED entry {k:?} -> {val:?}"));
        }
        entries.push((
            ip4_at(&k),
            u16::from_be_bytes([k[4], k[5]]),
            k[6],
            ip4_at(&val),
            u16::from_be_bytes([val[4], val[5]]),
        ));
    }
    Ok(entries)
}

/// The pinned `PUBLISHED6` map (`PublishKey6` -> `PublishTarget6`).
pub fn published6_entries(bed: &Bed) -> Result<Vec<PubEntry6>, String> {
    let mut entries = Vec::new();
    for (k, val) in map_entries(bed, "PUBLISHED6")? {
        if k.len() < 19 || val.len() < 18 {
            return Err(format!("unexpected PUBLISHED6 entry {k:?} -> {val:?}"));
        }
        entries.push((
            ip6_at(&k),
            u16::from_be_bytes([k[16], k[17]]),
            k[18],
            ip6_at(&val),
            u16::from_be_bytes([val[16], val[17]]),
        ));
    }
    Ok(entries)
}

/// `ENDPOINT_BY_IP`: address -> ifindex.
pub fn endpoint_by_ip(bed: &Bed) -> Result<BTreeMap<IpAddr, u32>, String> {
    Ok(map_entries(bed, "ENDPOINT_BY_IP")?
        .iter()
        .filter(|(k, v)| k.len() >= 4 && v.len() >= 4)
        .map(|(k, v)| (IpAddr::from(ip4_at(k)), u32_at(v)))
        .collect())
}

/// `ENDPOINT6_BY_IP`: IPv6 address -> ifindex.
pub fn endpoint6_by_ip(bed: &Bed) -> Result<BTreeMap<IpAddr, u32>, String> {
    Ok(map_entries(bed, "ENDPOINT6_BY_IP")?
        .iter()
        .filter(|(k, v)| k.len() >= 16 && v.len() >= 4)
        .map(|(k, v)| (IpAddr::from(ip6_at(k)), u32_at(v)))
        .collect())
}

/// `ENDPOINT6`: ifindex -> the endpoint's IPv6 address.
pub fn endpoint6(bed: &Bed) -> Result<BTreeMap<u32, IpAddr>, String> {
    Ok(map_entries(bed, "ENDPOINT6")?
        .iter()
        .filter(|(k, v)| k.len() >= 4 && v.len() >= 16)
        .map(|(k, v)| (u32_at(k), IpAddr::from(ip6_at(v))))
        .collect())
}

/// `NETWORKS6` (an LPM trie: prefix length, then the address): the subnets.
fn networks6(bed: &Bed) -> Result<BTreeSet<(Ipv6Addr, u32)>, String> {
    Ok(map_entries(bed, "NETWORKS6")?
        .iter()
        .filter(|(k, _)| k.len() >= 20)
        .map(|(k, _)| (ip6_at(&k[4..]), u32_at(k)))
        .collect())
}

// ---------------------------------------------------------------- store

/// One IPAM config of a stored network: gateway, prefix length, subnet.
#[derive(Debug, Clone)]
struct Config {
    gateway: IpAddr,
    prefix: u64,
    subnet: IpAddr,
}

/// A stored network, by family.
#[derive(Debug, Clone, Default)]
struct StoredNet {
    name: String,
    v4: Option<Config>,
    v6: Option<Config>,
}

impl StoredNet {
    fn of(n: &Value) -> Result<StoredNet, String> {
        let mut net = StoredNet {
            name: n["Name"].as_str().unwrap_or_default().to_string(),
            ..StoredNet::default()
        };
        for c in n["IPAM"]["Config"].as_array().into_iter().flatten() {
            let (subnet, prefix) = c["Subnet"]
                .as_str()
                .and_then(|s| s.split_once('/'))
                .and_then(|(a, p)| Some((a.parse::<IpAddr>().ok()?, p.parse().ok()?)))
                .ok_or_else(|| format!("network {}: IPAM config {c}", net.name))?;
            let gateway = c["Gateway"]
                .as_str()
                .and_then(|g| g.parse::<IpAddr>().ok())
                .ok_or_else(|| format!("network {}: IPAM config {c}", net.name))?;
            let cfg = Some(Config {
                gateway,
                prefix,
                subnet,
            });
            let slot = match Family::of(subnet) {
                Family::V4 => &mut net.v4,
                Family::V6 => &mut net.v6,
            };
            if slot.is_some() {
                return Err(format!("network {}: two configs of one family", net.name));
            }
            *slot = cfg;
        }
        Ok(net)
    }

    fn config(&self, f: Family) -> Option<&Config> {
        match f {
            Family::V4 => self.v4.as_ref(),
            Family::V6 => self.v6.as_ref(),
        }
    }
}

/// What the store says about one endpoint.
#[derive(Debug, Clone)]
struct StoredEp {
    ctr: String,
    net: String,
    ifname: String,
    /// (address, prefix length, gateway) of IPv4 and of IPv6.
    v4: Option<(IpAddr, u64, String)>,
    v6: Option<(IpAddr, u64, String)>,
    /// Does the container's IPv4 default route leave by it? And its IPv6
    /// one?
    default_route: bool,
    default_route6: bool,
    ns: String,
    bridge: String,
}

impl StoredEp {
    fn addr(&self, f: Family) -> Option<&(IpAddr, u64, String)> {
        match f {
            Family::V4 => self.v4.as_ref(),
            Family::V6 => self.v6.as_ref(),
        }
    }
}

fn stored_addr(e: &Value, ip: &str, len: &str, gw: &str) -> Option<(IpAddr, u64, String)> {
    let ip = e[ip].as_str().filter(|s| !s.is_empty())?.parse().ok()?;
    let gw = e[gw].as_str().unwrap_or_default().to_string();
    Some((ip, e[len].as_u64().unwrap_or(0), gw))
}

/// A published port as stored: (host address, host port, protocol, the
/// container's addresses of that family, container port).
type WantPub = (IpAddr, u16, u8, Vec<IpAddr>, u16);

/// Compares the stored state (`network ls`, `container ls`, status) with the
/// kernel (host links, bridges and their addresses, container netns with
/// their addresses and default routes, pins, map entries), IPv4 and IPv6.
/// Returns every difference found.
pub fn consistency(bed: &Bed) -> Result<(), String> {
    let nets = bed.json(&["network", "ls", "--format", "json"]);
    let ctrs = bed.json(&["container", "ls", "--format", "json"]);
    let mut errs = Vec::new();

    // Bridge name -> network.
    let mut bridges: BTreeMap<String, StoredNet> = BTreeMap::new();
    for n in nets.as_array().into_iter().flatten() {
        let bridge = n["Options"]["com.docker.network.bridge.name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match StoredNet::of(n) {
            Ok(net) => {
                bridges.insert(bridge, net);
            }
            Err(e) => errs.push(e),
        }
    }
    // Host veth -> endpoint.
    let mut eps: BTreeMap<String, StoredEp> = BTreeMap::new();
    let mut per_ns: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in ctrs.as_array().into_iter().flatten() {
        let cname = c["Name"].as_str().unwrap_or_default().to_string();
        if c["Mode"].as_str() != Some("bridge") {
            continue;
        }
        let ns = c["NetnsPath"]
            .as_str()
            .and_then(|p| Path::new(p).file_name())
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        per_ns.entry(ns.clone()).or_default();
        for (net, e) in c["Networks"].as_object().into_iter().flatten() {
            let host_if = e["HostInterface"].as_str().unwrap_or_default().to_string();
            let bridge = bridges
                .iter()
                .find(|(_, n)| &n.name == net)
                .map(|(b, _)| b.clone())
                .unwrap_or_default();
            let ep = StoredEp {
                ctr: cname.clone(),
                net: net.clone(),
                ifname: e["Interface"].as_str().unwrap_or_default().to_string(),
                v4: stored_addr(e, "IPAddress", "PrefixLen", "Gateway"),
                v6: stored_addr(e, "GlobalIPv6Address", "GlobalIPv6PrefixLen", "IPv6Gateway"),
                default_route: e["DefaultRoute"].as_bool().unwrap_or(false),
                default_route6: e["DefaultRoute6"].as_bool().unwrap_or(false),
                ns: ns.clone(),
                bridge,
            };
            per_ns
                .entry(ns.clone())
                .or_default()
                .push(ep.ifname.clone());
            eps.insert(host_if, ep);
        }
    }

    // Host netns: no orphans, nothing missing, veths on their bridges.
    let host = links_of(bed.host_ns())?;
    let by_name: BTreeMap<&str, &Link> = host.iter().map(|l| (l.name.as_str(), l)).collect();
    for l in &host {
        if is_host_veth(&l.name) && !eps.contains_key(&l.name) {
            errs.push(format!("orphan veth {} in the host netns", l.name));
        }
        if is_netd_bridge(&l.name) && !bridges.contains_key(&l.name) {
            errs.push(format!("orphan bridge {} in the host netns", l.name));
        }
        if l.name.starts_with("nd") && !is_host_veth(&l.name) {
            errs.push(format!("unexpected link {} in the host netns", l.name));
        }
    }
    for (br, net) in &bridges {
        match by_name.get(br.as_str()) {
            None => errs.push(format!("bridge {br} of network {} missing", net.name)),
            Some(l) => {
                if !l.up {
                    errs.push(format!("bridge {br} of network {} is down", net.name));
                }
                for f in [Family::V4, Family::V6] {
                    let want: Vec<String> = net
                        .config(f)
                        .map(|c| format!("{}/{}", c.gateway, c.prefix))
                        .into_iter()
                        .collect();
                    match addrs_of(bed.host_ns(), br, f) {
                        Ok(a) if a == want => {}
                        Ok(a) => errs.push(format!(
                            "bridge {br} of network {} has {f:?} addresses {a:?}, expected {want:?}",
                            net.name
                        )),
                        Err(e) => errs.push(e),
                    }
                }
            }
        }
    }
    for (host_if, ep) in &eps {
        match by_name.get(host_if.as_str()) {
            None => errs.push(format!(
                "host veth {host_if} of {} on {} missing",
                ep.ctr, ep.net
            )),
            Some(l) => {
                if !l.up {
                    errs.push(format!("host veth {host_if} of {} is down", ep.ctr));
                }
                if l.master.as_deref() != Some(ep.bridge.as_str()) {
                    errs.push(format!(
                        "host veth {host_if} of {} has master {:?}, expected {}",
                        ep.ctr, l.master, ep.bridge
                    ));
                }
            }
        }
    }

    // Container netns: exactly lo and the stored interfaces, with their
    // addresses and the default route of each family.
    for (ns, ifs) in &per_ns {
        let want: BTreeSet<String> = ifs.iter().cloned().chain(["lo".to_string()]).collect();
        match links_of(ns) {
            Ok(ls) => {
                let got: BTreeSet<String> = ls.into_iter().map(|l| l.name).collect();
                if got != want {
                    errs.push(format!("netns {ns} has links {got:?}, store says {want:?}"));
                }
            }
            Err(e) => errs.push(format!("netns {ns}: {e}")),
        }
        let ns_eps: Vec<&StoredEp> = eps.values().filter(|e| &e.ns == ns).collect();
        for f in [Family::V4, Family::V6] {
            if let Err(e) = check_default_route(ns, f, &ns_eps) {
                errs.push(e);
            }
        }
    }
    for ep in eps.values() {
        for f in [Family::V4, Family::V6] {
            let want: Vec<String> = ep
                .addr(f)
                .map(|(ip, len, _)| format!("{ip}/{len}"))
                .into_iter()
                .collect();
            match addrs_of(&ep.ns, &ep.ifname, f) {
                Ok(a) if a == want => {}
                Ok(a) => errs.push(format!(
                    "{} of {} has {f:?} addresses {a:?}, store says {want:?}",
                    ep.ifname, ep.ctr
                )),
                Err(e) => errs.push(format!("{} of {}: {e}", ep.ifname, ep.ctr)),
            }
        }
    }

    // Pins: one per program per stored veth, none for others.
    let pins: BTreeSet<String> = bed
        .pinned_links()
        .iter()
        .filter_map(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
        .collect();
    for pin in &pins {
        if let Some((veth, _)) = pin.split_once('_') {
            if is_host_veth(veth) && !eps.contains_key(veth) {
                errs.push(format!("orphan pinned link {pin}"));
            }
        }
    }
    for (host_if, ep) in &eps {
        for prog in ["from_container", "to_container"] {
            if !pins.contains(&format!("{host_if}_{prog}")) {
                errs.push(format!("no pinned link {host_if}_{prog} for {}", ep.ctr));
            }
        }
    }

    errs.extend(check_published(bed, &ctrs));
    errs.extend(check_endpoint_maps(bed, &eps, &bridges));

    if errs.is_empty() {
        Ok(())
    } else {
        Err(format!("\n  - {}", errs.join("\n  - ")))
    }
}

/// The default route of family `f` in `ns` (whose endpoints are `eps`):
/// exactly one, by the endpoint `inspect` says carries that family's
/// (`DefaultRoute`, `DefaultRoute6`: the first endpoint with an address of
/// the family, as Docker 28 picks gateways); none when no endpoint has the
/// family.
fn check_default_route(ns: &str, f: Family, eps: &[&StoredEp]) -> Result<(), String> {
    let got = default_routes(ns, f)?;
    let carries = |e: &StoredEp| match f {
        Family::V4 => e.default_route,
        Family::V6 => e.default_route6,
    };
    let carriers: Vec<&&StoredEp> = eps.iter().filter(|e| carries(e)).collect();
    let with_f = eps.iter().filter(|e| e.addr(f).is_some()).count();
    let via = |e: &StoredEp| e.addr(f).map(|(_, _, gw)| (gw.clone(), e.ifname.clone()));
    let want: Vec<(String, String)> = carriers.iter().filter_map(|e| via(e)).collect();
    // One carrier exactly when some endpoint has the family.
    if carriers.len() != usize::from(with_f > 0) || want.len() != carriers.len() {
        return Err(format!(
            "netns {ns}: {} of {} endpoints with {f:?} shown as its default route's ({:?})",
            carriers.len(),
            with_f,
            carriers.iter().map(|e| &e.ifname).collect::<Vec<_>>()
        ));
    }
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "netns {ns} has {f:?} default routes (via, dev) {got:?}, the store wants {want:?}"
        ))
    }
}

/// `PUBLISHED` and `PUBLISHED6` hold exactly the stored mappings of their
/// family, each to the container's address of that family.
fn check_published(bed: &Bed, ctrs: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    let mut want: Vec<WantPub> = Vec::new();
    for c in ctrs.as_array().into_iter().flatten() {
        let addrs = |key: &str| -> Vec<IpAddr> {
            c["Networks"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(_, e)| e[key].as_str()?.parse().ok())
                .collect()
        };
        let (ips4, ips6) = (addrs("IPAddress"), addrs("GlobalIPv6Address"));
        for p in c["Ports"].as_array().into_iter().flatten() {
            let proto = match p["Protocol"].as_str() {
                Some("tcp") => 6,
                Some("udp") => 17,
                Some("sctp") => 132,
                other => {
                    errs.push(format!("unknown protocol {other:?} in {p}"));
                    continue;
                }
            };
            let Some(hip) = p["HostIp"].as_str().and_then(|s| s.parse::<IpAddr>().ok()) else {
                errs.push(format!("no HostIp in {p}"));
                continue;
            };
            let ips = if hip.is_ipv4() { &ips4 } else { &ips6 };
            want.push((
                hip,
                p["HostPort"].as_u64().unwrap_or(0) as u16,
                proto,
                ips.clone(),
                p["ContainerPort"].as_u64().unwrap_or(0) as u16,
            ));
        }
    }
    let got: Result<Vec<PubEntryIp>, String> = published_entries(bed).and_then(|v4| {
        let v6 = published6_entries(bed)?;
        Ok(v4
            .into_iter()
            .map(|(h, hp, p, c, cp)| (h.into(), hp, p, c.into(), cp))
            .chain(
                v6.into_iter()
                    .map(|(h, hp, p, c, cp)| (h.into(), hp, p, c.into(), cp)),
            )
            .collect())
    });
    match got {
        Ok(got) => {
            let unmatched: Vec<_> = got
                .iter()
                .filter(|(hip, hport, proto, cip, cport)| {
                    !want
                        .iter()
                        .any(|(w_hip, w_hport, w_proto, w_ips, w_cport)| {
                            w_hip == hip
                                && w_hport == hport
                                && w_proto == proto
                                && w_cport == cport
                                && w_ips.contains(cip)
                        })
                })
                .collect();
            if !unmatched.is_empty() || got.len() != want.len() {
                errs.push(format!(
                    "PUBLISHED and PUBLISHED6 {got:?} do not match the stored ports {want:?}"
                ));
            }
        }
        Err(e) => errs.push(e),
    }
    errs
}

/// `ENDPOINTS`, `NETWORKS`, `ENDPOINT_BY_IP`, `ENDPOINT6`,
/// `ENDPOINT6_BY_IP` and `NETWORKS6` hold the stored endpoints and
/// networks, each address naming the ifindex of its host veth.
fn check_endpoint_maps(
    bed: &Bed,
    eps: &BTreeMap<String, StoredEp>,
    nets: &BTreeMap<String, StoredNet>,
) -> Vec<String> {
    let mut errs = Vec::new();
    let st = bed.json(&["status", "--format", "json"]);
    let ep_entries = st["maps"]["ENDPOINTS"]["entries"].as_u64();
    if ep_entries != Some(eps.len() as u64) {
        errs.push(format!(
            "ENDPOINTS map has {ep_entries:?} entries, store has {} endpoints",
            eps.len()
        ));
    }
    let with_v4 = nets.values().filter(|n| n.v4.is_some()).count();
    let net_entries = st["maps"]["NETWORKS"]["entries"].as_u64();
    if net_entries != Some(with_v4 as u64) {
        errs.push(format!(
            "NETWORKS map has {net_entries:?} entries, store has {with_v4} networks with IPv4"
        ));
    }
    let index = match ifindexes(bed.host_ns()) {
        Ok(i) => i,
        Err(e) => return vec![e],
    };
    let ifindex = |host_if: &str| index.get(host_if).copied().unwrap_or(0);
    for (map, f, got) in [
        ("ENDPOINT_BY_IP", Family::V4, endpoint_by_ip(bed)),
        ("ENDPOINT6_BY_IP", Family::V6, endpoint6_by_ip(bed)),
    ] {
        let want: BTreeMap<IpAddr, u32> = eps
            .iter()
            .filter_map(|(host_if, ep)| Some((ep.addr(f)?.0, ifindex(host_if))))
            .collect();
        match got {
            Ok(got) if got == want => {}
            Ok(got) => errs.push(format!(
                "{map} (address -> ifindex) is {got:?}, the store's endpoints are {want:?}"
            )),
            Err(e) => errs.push(e),
        }
    }
    let want6: BTreeMap<u32, IpAddr> = eps
        .iter()
        .filter_map(|(host_if, ep)| Some((ifindex(host_if), ep.v6.as_ref()?.0)))
        .collect();
    match endpoint6(bed) {
        Ok(got) if got == want6 => {}
        Ok(got) => errs.push(format!(
            "ENDPOINT6 (ifindex -> address) is {got:?}, the store's endpoints are {want6:?}"
        )),
        Err(e) => errs.push(e),
    }
    let subnets6: BTreeSet<(Ipv6Addr, u32)> = nets
        .values()
        .filter_map(|n| match n.v6.as_ref()?.subnet {
            IpAddr::V6(s) => Some((s, n.v6.as_ref()?.prefix as u32)),
            IpAddr::V4(_) => None,
        })
        .collect();
    match networks6(bed) {
        Ok(got) if got == subnets6 => {}
        Ok(got) => errs.push(format!(
            "NETWORKS6 is {got:?}, the store's IPv6 subnets are {subnets6:?}"
        )),
        Err(e) => errs.push(e),
    }
    errs
}
