//! The environment a runtime hands the plugin: `CNI_COMMAND`,
//! `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_ARGS`.
use std::net::Ipv4Addr;

use super::error::{fail, CniResult, INVALID_ENV};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    fn parse(s: &str) -> CniResult<Self> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "" => {
                return fail(
                    INVALID_ENV,
                    "CNI_COMMAND is not set (ADD, DEL, CHECK, VERSION, STATUS or GC)",
                )
            }
            other => {
                return fail(
                    INVALID_ENV,
                    format!(
                        "unknown CNI_COMMAND {other:?} (ADD, DEL, CHECK, VERSION, STATUS or GC)"
                    ),
                )
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Status => "STATUS",
            Command::Gc => "GC",
        }
    }
}

/// What `CNI_ARGS` (`K=V;K=V`) carries that netd uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CniArgs {
    pub ip: Option<Ipv4Addr>,
    pub mac: Option<String>,
    pub pod_name: Option<String>,
    pub pod_namespace: Option<String>,
}

/// Keys runtimes send that netd has no use for but accepts.
const KNOWN_KEYS: &[&str] = &[
    "IgnoreUnknown",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
    "K8S_POD_NETWORK",
];

impl CniArgs {
    pub fn parse(s: &str) -> CniResult<Self> {
        let mut out = CniArgs::default();
        let pairs: Vec<(&str, &str)> = s
            .split(';')
            .filter(|p| !p.trim().is_empty())
            .map(|p| p.split_once('=').ok_or(p))
            .collect::<Result<_, _>>()
            .or_else(|p| fail(INVALID_ENV, format!("CNI_ARGS: {p:?} is not KEY=VALUE")))?;
        let ignore_unknown = pairs
            .iter()
            .any(|(k, v)| *k == "IgnoreUnknown" && matches!(*v, "1" | "true" | "True"));
        for (k, v) in pairs {
            match k {
                "IP" => {
                    // `IP=10.1.0.5` or `IP=10.1.0.5/24`.
                    let addr = v.split('/').next().unwrap_or(v);
                    let ip = addr.parse().or_else(|_| {
                        fail(
                            INVALID_ENV,
                            format!("CNI_ARGS: IP={v} is not an IPv4 address"),
                        )
                    })?;
                    out.ip = Some(ip);
                }
                "MAC" => out.mac = Some(v.to_string()),
                "K8S_POD_NAME" => out.pod_name = Some(v.to_string()).filter(|s| !s.is_empty()),
                "K8S_POD_NAMESPACE" => {
                    out.pod_namespace = Some(v.to_string()).filter(|s| !s.is_empty())
                }
                k if KNOWN_KEYS.contains(&k) || ignore_unknown => {}
                k => {
                    return fail(
                        INVALID_ENV,
                        format!(
                            "CNI_ARGS: unknown key {k:?} (add IgnoreUnknown=1 to pass it anyway)"
                        ),
                    )
                }
            }
        }
        Ok(out)
    }
}

#[derive(Clone, Debug)]
pub struct Env {
    pub command: Command,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: CniArgs,
}

impl Env {
    /// Reads the environment through `get` (the process's, or a test's).
    pub fn read(get: impl Fn(&str) -> Option<String>) -> CniResult<Self> {
        let command = Command::parse(&get("CNI_COMMAND").unwrap_or_default())?;
        let var = |k: &str| get(k).unwrap_or_default();
        let env = Env {
            command,
            container_id: var("CNI_CONTAINERID"),
            netns: var("CNI_NETNS"),
            ifname: var("CNI_IFNAME"),
            args: CniArgs::parse(&var("CNI_ARGS"))?,
        };
        env.validate()?;
        Ok(env)
    }

    fn validate(&self) -> CniResult<()> {
        let attachment = matches!(self.command, Command::Add | Command::Del | Command::Check);
        if !attachment {
            return Ok(());
        }
        let id_ok = self
            .container_id
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
            && self
                .container_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !id_ok {
            return fail(
                INVALID_ENV,
                format!(
                    "CNI_CONTAINERID {:?} is missing or invalid (letters, digits, '_', '.', '-')",
                    self.container_id
                ),
            );
        }
        if !valid_ifname(&self.ifname) {
            return fail(
                INVALID_ENV,
                format!(
                    "CNI_IFNAME {:?} is missing or not a valid interface name (1-15 characters, no '/', ':' or spaces)",
                    self.ifname
                ),
            );
        }
        // DEL gets an empty CNI_NETNS from containerd once the task is gone.
        if self.command != Command::Del && self.netns.is_empty() {
            return fail(
                INVALID_ENV,
                format!(
                    "CNI_NETNS is not set ({} needs the network namespace path)",
                    self.command.name()
                ),
            );
        }
        Ok(())
    }
}

pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cni_args_of_podman_and_static_addresses() {
        let a =
            CniArgs::parse("IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.5.0.9;MAC=02:00:00:00:00:09")
                .unwrap();
        assert_eq!(a.pod_name.as_deref(), Some("web"));
        assert_eq!(a.ip, Some(Ipv4Addr::new(10, 5, 0, 9)));
        assert_eq!(a.mac.as_deref(), Some("02:00:00:00:00:09"));
        assert_eq!(CniArgs::parse("").unwrap(), CniArgs::default());
        assert_eq!(
            CniArgs::parse("IP=10.1.0.2/24").unwrap().ip,
            Some(Ipv4Addr::new(10, 1, 0, 2))
        );
    }

    #[test]
    fn bad_cni_args_say_why() {
        for bad in ["FOO=1", "IP=nope", "garbage", "IP=fd00::1"] {
            let e = CniArgs::parse(bad).unwrap_err();
            assert_eq!(e.code, INVALID_ENV, "{bad}");
        }
        assert!(CniArgs::parse("IgnoreUnknown=1;FOO=1").is_ok());
    }

    #[test]
    fn environment_is_checked_per_verb() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            Env::read(move |k| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            })
        };
        assert_eq!(env(&[]).unwrap_err().code, INVALID_ENV);
        assert!(env(&[("CNI_COMMAND", "VERSION")]).is_ok());
        let add = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_IFNAME", "eth0"),
        ]);
        assert_eq!(add.unwrap_err().code, INVALID_ENV);
        let del = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_IFNAME", "eth0"),
        ]);
        assert!(del.is_ok(), "DEL without CNI_NETNS is valid");
        let bad_if = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0/x"),
        ]);
        assert_eq!(bad_if.unwrap_err().code, INVALID_ENV);
    }
}
