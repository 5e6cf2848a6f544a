//! clap definitions of every verb and flag (SPEC section 2).
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
};

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

#[derive(Parser, Debug)]
#[command(
    name = "netd",
    version,
    about = "Docker-style container networking with an eBPF datapath"
)]
pub struct Cli {
    /// The agent's API socket.
    #[arg(
        short = 'H',
        long = "host",
        env = "NETD_HOST",
        global = true,
        value_name = "SOCKET"
    )]
    pub host: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
// Parsed once per run: the daemon's many flags need no box.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run the agent (needs root): bridges, veths and eBPF programs.
    Daemon(DaemonArgs),
    /// Create, list, inspect, remove and (dis)connect networks.
    Network {
        #[command(subcommand)]
        command: NetworkCommand,
    },
    /// Attach network namespaces to networks and manage them.
    Container {
        #[command(subcommand)]
        command: ContainerCommand,
    },
    /// List a container's published ports, like `docker port`.
    Port {
        container: String,
        /// Only this container port: PORT or PORT/PROTO.
        port: Option<String>,
    },
    /// Show the agent, its programs, map fill and drop counters.
    Status(StatusArgs),
    /// The datapath's verdict for a packet: built as SRC would send it and
    /// run through every program it would meet (BPF_PROG_TEST_RUN on a
    /// copy of the maps; live flows are not touched).
    Explain(ExplainArgs),
    /// Live datapath events (drops with their reason and hook, ...), with
    /// container and network names, one line each, until interrupted.
    Monitor(MonitorArgs),
    /// Remove everything netd created (links, pins, stored state) and stop
    /// the agent.
    Reset {
        /// Required: there is no undo.
        #[arg(long)]
        force: bool,
    },
    /// Print the version, the git revision, the map layout version and the
    /// source hash.
    Version,
}

/// `netd daemon`'s flags. Each one is also a key of the config file, named
/// as the long flag without its dashes (see `config.rs`): declaring a flag
/// here is all it takes.
#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// Config file: one key per flag (`state-dir = "/var/lib/netd"`); flags
    /// given here win. A missing default file is fine; a missing --config
    /// file is an error.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the store lives.
    #[arg(long, default_value = "/var/lib/netd")]
    pub state_dir: PathBuf,
    /// Where the API socket (netd.sock) lives.
    #[arg(long, default_value = super::DEFAULT_RUN_DIR)]
    pub run_dir: PathBuf,
    /// Where maps, programs and links are pinned (a bpffs is mounted there
    /// if it is not one already).
    #[arg(long, default_value = "/sys/fs/bpf/netd")]
    pub bpffs: PathBuf,
    /// Candidate subnet for new networks (repeatable; replaces the built-in
    /// pools 172.18-31.0.0/16 and 192.168.x.0/20).
    #[arg(long = "default-pool", value_name = "CIDR")]
    pub default_pools: Vec<Ipv4Net>,
    /// Pool of IPv6 subnets for networks created with --ipv6 and no IPv6
    /// --subnet (repeatable; each gives its /64s in order). Default: a /48
    /// of fd00::/8 with a random 40-bit global id chosen once per host
    /// (RFC 4193, kept in the store).
    #[arg(long = "default-pool-v6", value_name = "CIDR")]
    pub default_pools_v6: Vec<Ipv6Net>,
    /// Give the default network `bridge` an IPv6 subnet too (from the
    /// IPv6 pool) when it is created, or at the next start.
    #[arg(long)]
    pub ipv6: bool,
    /// Uplink device for masquerade (repeatable; default: the devices of
    /// the IPv4 default routes, followed as they change).
    #[arg(long = "uplink", value_name = "IFACE")]
    pub uplinks: Vec<String>,
    /// Source ports masquerade allocates, MIN-MAX (keep it outside
    /// net.ipv4.ip_local_port_range).
    #[arg(long, value_name = "MIN-MAX", default_value = "61000-65535", value_parser = parse_port_range)]
    pub snat_ports: (u16, u16),
    /// Entries of each conntrack map (used when the maps are first created).
    #[arg(long, default_value_t = netd_common::DEFAULT_CT_SIZE)]
    pub ct_size: u32,
    /// Idle timeout of a conntrack state, KIND=SECONDS (repeatable; kinds:
    /// tcp, tcp-unreplied, tcp-closed, udp, udp-unreplied, icmp, other).
    #[arg(long = "ct-timeout", value_name = "KIND=SECONDS", value_parser = parse_ct_timeout)]
    pub ct_timeouts: Vec<String>,
    /// Upstream DNS server for names the embedded DNS does not know,
    /// IP[:PORT] (repeatable; default: the nameservers of /etc/resolv.conf).
    #[arg(long = "dns-upstream", value_name = "IP[:PORT]", value_parser = crate::dns::forward::parse_upstream)]
    pub dns_upstreams: Vec<std::net::SocketAddr>,
    /// cgroup2 directory whose sockets get published-port translation
    /// (default: the cgroup2 root). Only sockets in the agent's network
    /// namespace are ever translated.
    #[arg(long)]
    pub cgroup: Option<PathBuf>,
    /// Also serve Prometheus metrics (`/metrics` only) over TCP on
    /// ADDR:PORT; they are always on the API socket at `/metrics`.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Who forwards what the programs decided: `ebpf` (the programs
    /// deliver it themselves, past the bridge and the host's firewall) or
    /// `kernel` (the bridge and the kernel's routing do).
    #[arg(long, value_enum, default_value_t = crate::datapath::HostRouting::Ebpf)]
    pub host_routing: crate::datapath::HostRouting,
    /// The Docker remote network driver's socket: dockerd finds the driver
    /// by its base name (netd.sock is `docker network create -d netd`);
    /// `none` turns the driver off.
    #[arg(
        long,
        value_name = "PATH|none",
        default_value = "/run/docker/plugins/netd.sock"
    )]
    pub docker_plugin: String,
    /// dockerd's API socket (e.g. /run/docker.sock): netd then names
    /// Docker's endpoints after their containers (the driver protocol
    /// carries ids only). Without it they keep their endpoint ids.
    #[arg(long, value_name = "SOCKET")]
    pub docker_host: Option<PathBuf>,
    /// Do not create the default network `bridge`.
    #[arg(long)]
    pub no_default_bridge: bool,
    /// The etcd cluster (v3 API) that agents of several hosts share for
    /// overlay networks: etcd://HOST:PORT[,HOST:PORT...]. Without it netd
    /// is a single host (overlay networks are refused).
    #[arg(long, value_name = "etcd://HOST:PORT[,...]", value_parser = parse_cluster_store)]
    pub cluster_store: Option<String>,
    /// This host's tunnel address, where other hosts send VXLAN packets for
    /// its containers (default: the address this host reaches the cluster
    /// store from).
    #[arg(long, value_name = "IP")]
    pub advertise_addr: Option<Ipv4Addr>,
    /// Seconds this host's registration outlives its last renewal: a host
    /// that dies (or is cut off) disappears from the others after this.
    #[arg(long, value_name = "SECONDS", default_value_t = crate::cluster::DEFAULT_LEASE_TTL,
          value_parser = clap::value_parser!(u32).range(2..=3600))]
    pub cluster_lease_ttl: u32,
    /// Seconds another host may stay unregistered (dead, or cut off) before
    /// this one gives back the overlay addresses it held; 0: never. A host
    /// back after that gets its addresses again where no one took them.
    #[arg(long, value_name = "SECONDS", default_value_t = crate::cluster::DEFAULT_RECLAIM_AFTER)]
    pub cluster_reclaim_after: u32,
    /// error, warn, info, debug or trace (or a tracing filter such as
    /// `info,netd::dns=debug`).
    #[arg(long, default_value = "info", value_parser = parse_log_level)]
    pub log_level: String,
    /// Log lines as text (colour only on a terminal) or one JSON object per
    /// line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Group (name or numeric id) that may use the API socket: the socket
    /// becomes mode 0660 and the run dir 0750 for that group, as the docker
    /// group does for dockerd. Default: root only (0600).
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

fn parse_cluster_store(s: &str) -> Result<String, String> {
    crate::cluster::parse_store_url(s)?;
    Ok(s.to_string())
}

fn parse_ct_timeout(s: &str) -> Result<String, String> {
    crate::datapath::CtTimeouts::default().set(s)?;
    Ok(s.to_string())
}

fn parse_log_level(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("{s:?} is not a log level (error, warn, info, debug, trace): {e}"))
}

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum EventType {
    Drop,
    Flow,
    Nat,
    Policy,
}

impl EventType {
    pub fn name(self) -> &'static str {
        match self {
            EventType::Drop => "drop",
            EventType::Flow => "flow",
            EventType::Nat => "nat",
            EventType::Policy => "policy",
        }
    }
}

/// `--format` of streams: a line per event for people, or JSON lines.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum LineFormat {
    #[default]
    Text,
    Json,
}

#[derive(Args, Debug)]
pub struct MonitorArgs {
    /// Only events of this container (its veth or its addresses).
    #[arg(long)]
    pub container: Option<String>,
    /// Only events of this network.
    #[arg(long)]
    pub network: Option<String>,
    /// Event type (repeatable; default: all). `policy`: drops by the
    /// isolation policy.
    #[arg(long = "type", value_enum)]
    pub types: Vec<EventType>,
    #[arg(long, value_enum, default_value_t = LineFormat::Text)]
    pub format: LineFormat,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// A container name, an address, `world` or `host`.
    pub src: String,
    /// DST[:PORT][/PROTO]: a container name, an address, `world` or
    /// `host`; no port means ICMP echo, a port alone means TCP.
    pub dst: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only print ids.
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// `--flag`, `--flag=true` or `--flag=false`.
#[derive(Args, Debug)]
pub struct NetworkCreateArgs {
    pub name: String,
    /// bridge (this host) or overlay (every host of the cluster: needs the
    /// daemon's --cluster-store).
    #[arg(short = 'd', long, default_value = "bridge", value_parser = parse_driver)]
    pub driver: String,
    /// Subnet in CIDR form, IPv4 or IPv6 (one of each at most; an IPv6 one
    /// needs --ipv6); picked from the pools when omitted.
    #[arg(long = "subnet", value_name = "CIDR")]
    pub subnets: Vec<IpNet>,
    /// Gateway address of the subnet of its family (default: the subnet's
    /// first address).
    #[arg(long = "gateway", value_name = "IP")]
    pub gateways: Vec<IpAddr>,
    /// Allocate container addresses from this sub-range only (of the subnet
    /// of its family).
    #[arg(long = "ip-range", value_name = "CIDR")]
    pub ip_ranges: Vec<IpNet>,
    /// Dual stack: an IPv6 subnet too (a /64 of the host's ULA prefix
    /// unless given with --subnet); containers get an IPv6 address and
    /// default route.
    #[arg(long)]
    pub ipv6: bool,
    /// IPv4 on the network (default true; false, with --ipv6, is an
    /// IPv6-only network).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub ipv4: Option<bool>,
    /// Restrict traffic to the subnet (and the host via the gateway).
    #[arg(long)]
    pub internal: bool,
    /// Let containers on the network talk to each other (default true).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub icc: Option<bool>,
    /// Masquerade egress to the world (default true).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub masquerade: Option<bool>,
    /// MTU of the bridge and of container interfaces (default 1500).
    #[arg(long)]
    pub mtu: Option<u32>,
    /// Bridge device name (default br-<first 12 hex of the id>).
    #[arg(long)]
    pub bridge: Option<String>,
    /// Metadata label K=V (repeatable).
    #[arg(long = "label", value_name = "K=V", value_parser = parse_key_value)]
    pub labels: Vec<(String, String)>,
    /// Driver option K=V (repeatable).
    #[arg(long = "opt", short = 'o', value_name = "K=V", value_parser = parse_key_value)]
    pub options: Vec<(String, String)>,
}

fn parse_driver(s: &str) -> Result<String, String> {
    crate::model::Driver::parse(s).map(|d| d.as_str().to_string())
}

fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (lo, hi) = s
        .split_once('-')
        .ok_or_else(|| format!("expected MIN-MAX, got {s:?}"))?;
    let lo: u16 = lo.parse().map_err(|_| format!("{lo:?} is not a port"))?;
    let hi: u16 = hi.parse().map_err(|_| format!("{hi:?} is not a port"))?;
    if lo == 0 || lo > hi {
        return Err(format!("{s:?} is not a port range (1-65535, MIN <= MAX)"));
    }
    Ok((lo, hi))
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected K=V, got {s:?}")),
    }
}

#[derive(Subcommand, Debug)]
pub enum NetworkCommand {
    /// Create a bridge network (or, with --driver overlay, a network of
    /// every host of the cluster).
    Create(NetworkCreateArgs),
    /// List networks.
    Ls(ListArgs),
    /// Show networks as JSON.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove networks (refused while containers use them).
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every user-defined network no container uses.
    Prune {
        /// Do not ask for confirmation.
        #[arg(short, long)]
        force: bool,
    },
    /// Attach a container to one more network.
    Connect {
        /// Static address on this network.
        #[arg(long)]
        ip: Option<Ipv4Addr>,
        /// Static IPv6 address on this network (an IPv6 one).
        #[arg(long)]
        ip6: Option<Ipv6Addr>,
        /// Extra DNS name of the container on this network (repeatable).
        #[arg(long = "alias")]
        aliases: Vec<String>,
        network: String,
        container: String,
    },
    /// Detach a container from a network.
    Disconnect { network: String, container: String },
}

#[derive(Subcommand, Debug)]
pub enum ContainerCommand {
    /// Attach a network namespace as a container.
    Add {
        name: String,
        /// The container's network namespace (e.g. /run/netns/x, /proc/PID/ns/net).
        #[arg(long)]
        netns: PathBuf,
        /// A network, or none, host, container:OTHER (default: bridge).
        #[arg(long)]
        network: Option<String>,
        /// Static address on the network.
        #[arg(long)]
        ip: Option<Ipv4Addr>,
        /// Static IPv6 address on the network (an IPv6 one).
        #[arg(long)]
        ip6: Option<Ipv6Addr>,
        /// Extra DNS name on the network (repeatable).
        #[arg(long = "alias")]
        aliases: Vec<String>,
        /// Publish a port: [HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/tcp|udp|sctp]
        /// (repeatable; an omitted host port is chosen by netd).
        #[arg(short = 'p', long = "publish", value_name = "SPEC")]
        publish: Vec<String>,
    },
    /// Remove containers and their endpoints.
    Rm {
        /// Remove even if kernel clean-up fails.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// List containers.
    Ls(ListArgs),
    /// Print the resolv.conf a runtime should write into the container.
    ResolvConf { name: String },
    /// Show containers as JSON.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
}
