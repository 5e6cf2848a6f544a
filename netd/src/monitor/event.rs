//! A ring buffer record as monitors see it: names resolved by the agent.
use std::{collections::HashMap, net::Ipv4Addr};

use netd_common::{
    programs, DropReason, Event, EVENT_DROP, EVENT_FLOW, EVENT_NAT, EVENT_POLICY,
    HOOK_FROM_CONTAINER, HOOK_OVERLAY_IN, HOOK_TO_CONTAINER, HOOK_UPLINK_IN, HOOK_UPLINK_OUT,
    HOOK_UPLINK_XDP, NAT_SNAT,
};
use serde::Serialize;

/// What the agent knows by name, refreshed after every change.
#[derive(Clone, Debug, Default)]
pub struct Names {
    /// Host veth ifindex -> (container, network).
    pub veths: HashMap<u32, (String, String)>,
    /// Container address -> (container, network).
    pub addrs: HashMap<Ipv4Addr, (String, String)>,
    /// Uplink ifindex -> name.
    pub uplinks: HashMap<u32, String>,
}

/// Event types by name, as `--type` takes them.
pub const TYPES: [(&str, u32); 4] = [
    ("drop", EVENT_DROP),
    ("flow", EVENT_FLOW),
    ("nat", EVENT_NAT),
    ("policy", EVENT_POLICY),
];

/// Drop reasons that are policy verdicts (SPEC section 4's table).
pub fn is_policy(reason: u8) -> bool {
    [
        DropReason::Spoofed,
        DropReason::Isolation,
        DropReason::Icc,
        DropReason::Internal,
        DropReason::NotAReply,
        DropReason::OverlayUnknownSource,
    ]
    .iter()
    .any(|r| *r as u8 == reason)
}

fn hook_name(h: u8) -> &'static str {
    match h {
        HOOK_FROM_CONTAINER => programs::FROM_CONTAINER,
        HOOK_TO_CONTAINER => programs::TO_CONTAINER,
        HOOK_UPLINK_XDP => programs::UPLINK_XDP,
        HOOK_UPLINK_IN => programs::UPLINK_IN,
        HOOK_UPLINK_OUT => programs::UPLINK_OUT,
        HOOK_OVERLAY_IN => programs::OVERLAY_IN,
        _ => "unknown",
    }
}

fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        132 => "sctp".into(),
        0 => "none".into(),
        n => n.to_string(),
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Side {
    pub address: Ipv4Addr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

/// One decoded event.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Decoded {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Kernel monotonic nanoseconds.
    pub ts_ns: u64,
    pub hook: &'static str,
    /// The device the hook runs on: a container's veth or an uplink.
    pub device: String,
    /// The container (and network) whose veth it is, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    pub proto: String,
    pub src: Side,
    pub dst: Side,
    /// NAT events: `snat` (the source becomes `translated`) or `dnat`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub translated: Option<Side>,
    /// Events this CPU held back (rate limit) before this one.
    pub suppressed: u32,
    #[serde(skip)]
    pub bits: u32,
}

impl Decoded {
    pub fn new(e: &Event, names: &Names) -> Decoded {
        let addr = |a: u32| Ipv4Addr::from(a.to_ne_bytes());
        let ports = e.proto == 6 || e.proto == 17 || e.proto == 132;
        let side = |a: u32, p: u16| {
            let address = addr(a);
            let owner = names.addrs.get(&address);
            Side {
                address,
                port: ports.then(|| u16::from_be(p)),
                container: owner.map(|o| o.0.clone()),
                network: owner.map(|o| o.1.clone()),
            }
        };
        let veth = names.veths.get(&e.ifindex);
        let device = veth
            .map(|(c, _)| format!("veth of {c}"))
            .or_else(|| names.uplinks.get(&e.ifindex).cloned())
            .unwrap_or_else(|| format!("ifindex {}", e.ifindex));
        let mut bits = e.kind;
        if e.kind == EVENT_DROP && is_policy(e.reason) {
            bits |= EVENT_POLICY;
        }
        // A translated new flow is a flow too.
        if e.kind == EVENT_NAT {
            bits |= EVENT_FLOW;
        }
        let nat_side = if e.reason == NAT_SNAT { "snat" } else { "dnat" };
        let nat = (e.kind == EVENT_NAT).then_some(nat_side);
        Decoded {
            kind: TYPES
                .iter()
                .find(|(_, b)| *b == e.kind)
                .map_or("unknown", |(n, _)| n),
            ts_ns: e.ts_ns,
            hook: hook_name(e.hook),
            device,
            container: veth.map(|v| v.0.clone()),
            network: veth.map(|v| v.1.clone()),
            reason: (e.kind == EVENT_DROP).then(|| {
                DropReason::ALL
                    .iter()
                    .find(|r| **r as u8 == e.reason)
                    .map_or("unknown", |r| r.name())
            }),
            proto: proto_name(e.proto),
            src: side(e.saddr, e.sport),
            dst: side(e.daddr, e.dport),
            nat,
            translated: nat.map(|_| side(e.xaddr, e.xport)),
            suppressed: e.suppressed,
            bits,
        }
    }

    /// Does it involve container `c` (its veth, or either address)?
    pub fn involves_container(&self, c: &str) -> bool {
        self.container.as_deref() == Some(c)
            || self.src.container.as_deref() == Some(c)
            || self.dst.container.as_deref() == Some(c)
    }

    pub fn involves_network(&self, n: &str) -> bool {
        self.network.as_deref() == Some(n)
            || self.src.network.as_deref() == Some(n)
            || self.dst.network.as_deref() == Some(n)
    }
}
