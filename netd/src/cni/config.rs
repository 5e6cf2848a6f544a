//! The network configuration on stdin: the plugin's object from the
//! runtime's conflist, with `runtimeConfig`, `prevResult` and GC's
//! `cni.dev/valid-attachments` added by the runtime.
use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Deserialize;
use serde_json::Value;

use super::error::{
    fail, CniError, CniResult, DECODE_FAILURE, INCOMPATIBLE_VERSION, INVALID_CONFIG,
    UNSUPPORTED_FIELD,
};

/// Config versions netd-cni accepts (and speaks back).
pub const SUPPORTED_VERSIONS: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];
pub const LATEST_VERSION: &str = "1.1.0";
pub const PLUGIN_TYPE: &str = "netd-cni";
pub const DEFAULT_SOCKET: &str = "/run/netd/netd.sock";

/// Keys of the spec (or of runtimes) that netd-cni accepts without using.
const PASSIVE_KEYS: &[&str] = &["capabilities", "args", "dns", "disableCheck", "disableGC"];

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMap {
    pub host_port: u32,
    pub container_port: u32,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default, rename = "hostIP")]
    pub host_ip: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    #[serde(default)]
    pub port_mappings: Vec<PortMap>,
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub mac: Option<String>,
    /// Network name → aliases (podman's shape).
    #[serde(default)]
    pub aliases: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord, Clone)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// What netd-cni understands of its configuration.
#[derive(Debug, Default)]
pub struct NetConf {
    pub cni_version: String,
    /// The CNI network's name.
    pub name: String,
    /// The netd network (defaults to `name`).
    pub network: String,
    pub socket: PathBuf,
    pub create: NetworkSpec,
    pub runtime: RuntimeConfig,
    pub prev_result: Option<Value>,
    pub valid_attachments: Option<Vec<Attachment>>,
}

/// Keys that, when given, let ADD create the network on first use.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NetworkSpec {
    pub subnet: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    pub ip_range: Option<Ipv4Net>,
    /// Dual stack (`"ipv6": true`): an IPv6 subnet too, `subnet6` or one
    /// netd picks.
    pub ipv6: Option<bool>,
    /// `"ipv4": false` with `"ipv6": true`: an IPv6-only network.
    pub ipv4: Option<bool>,
    pub subnet6: Option<Ipv6Net>,
    pub gateway6: Option<Ipv6Addr>,
    pub ip_range6: Option<Ipv6Net>,
    pub internal: Option<bool>,
    pub icc: Option<bool>,
    pub masquerade: Option<bool>,
    pub mtu: Option<u32>,
    pub bridge: Option<String>,
}

impl NetworkSpec {
    pub fn is_empty(&self) -> bool {
        *self == NetworkSpec::default()
    }
}

fn field<T: serde::de::DeserializeOwned>(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    what: &str,
) -> CniResult<Option<T>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone()).map(Some).map_err(|e| {
            CniError::new(
                INVALID_CONFIG,
                format!("config key {key:?} must be {what}: {e}"),
            )
        }),
    }
}

/// The `cniVersion` of a config, checked against what netd-cni speaks.
pub fn check_version(v: &str) -> CniResult<()> {
    if SUPPORTED_VERSIONS.contains(&v) {
        Ok(())
    } else {
        fail(
            INCOMPATIBLE_VERSION,
            format!(
                "netd-cni does not speak cniVersion {v:?}; it supports {}",
                SUPPORTED_VERSIONS.join(", ")
            ),
        )
    }
}

impl NetConf {
    pub fn parse(stdin: &[u8]) -> CniResult<Self> {
        let value: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                DECODE_FAILURE,
                "the network configuration on stdin is not JSON",
            )
            .with_details(e.to_string())
        })?;
        let Value::Object(obj) = value else {
            return fail(
                DECODE_FAILURE,
                "the network configuration on stdin is not a JSON object",
            );
        };
        let cni_version: String = field(&obj, "cniVersion", "a version string")?
            .ok_or_else(|| CniError::new(INVALID_CONFIG, "config has no \"cniVersion\""))?;
        check_version(&cni_version)?;
        let name: String = field(&obj, "name", "a string")?
            .filter(|n: &String| !n.is_empty())
            .ok_or_else(|| CniError::new(INVALID_CONFIG, "config has no \"name\""))?;
        let kind: String = field(&obj, "type", "a string")?.unwrap_or_default();
        if kind != PLUGIN_TYPE {
            return fail(
                INVALID_CONFIG,
                format!("config \"type\" is {kind:?}, expected {PLUGIN_TYPE:?}"),
            );
        }
        if obj.contains_key("ipam") {
            return fail(
                UNSUPPORTED_FIELD,
                "netd-cni allocates addresses itself: remove \"ipam\" and give \"subnet\"/\"gateway\"/\"ipRange\" instead",
            );
        }
        const OWN_KEYS: &[&str] = &[
            "cniVersion",
            "name",
            "type",
            "network",
            "socket",
            "subnet",
            "gateway",
            "ipRange",
            "ipv6",
            "ipv4",
            "subnet6",
            "gateway6",
            "ipRange6",
            "internal",
            "icc",
            "masquerade",
            "mtu",
            "bridge",
            "runtimeConfig",
            "prevResult",
            "cni.dev/valid-attachments",
        ];
        if let Some(unknown) = obj
            .keys()
            .find(|k| !OWN_KEYS.contains(&k.as_str()) && !PASSIVE_KEYS.contains(&k.as_str()))
        {
            return fail(
                UNSUPPORTED_FIELD,
                format!(
                    "unknown config key {unknown:?} (netd-cni knows network, socket, subnet, gateway, ipRange, ipv6, ipv4, subnet6, gateway6, ipRange6, internal, icc, masquerade, mtu, bridge)"
                ),
            );
        }
        let network: String =
            field(&obj, "network", "a network name")?.unwrap_or_else(|| name.clone());
        if network.is_empty() {
            return fail(INVALID_CONFIG, "config \"network\" is empty");
        }
        let create = NetworkSpec {
            subnet: field(&obj, "subnet", "an IPv4 CIDR like 10.88.0.0/16")?,
            gateway: field(&obj, "gateway", "an IPv4 address")?,
            ip_range: field(&obj, "ipRange", "an IPv4 CIDR")?,
            ipv6: field(&obj, "ipv6", "true or false")?,
            ipv4: field(&obj, "ipv4", "true or false")?,
            subnet6: field(&obj, "subnet6", "an IPv6 CIDR like fd00:88::/64")?,
            gateway6: field(&obj, "gateway6", "an IPv6 address")?,
            ip_range6: field(&obj, "ipRange6", "an IPv6 CIDR")?,
            internal: field(&obj, "internal", "true or false")?,
            icc: field(&obj, "icc", "true or false")?,
            masquerade: field(&obj, "masquerade", "true or false")?,
            mtu: field(&obj, "mtu", "a number")?,
            bridge: field(&obj, "bridge", "an interface name")?,
        };
        if create.subnet.is_none() && (create.gateway.is_some() || create.ip_range.is_some()) {
            return fail(
                INVALID_CONFIG,
                "\"gateway\" and \"ipRange\" need \"subnet\"",
            );
        }
        if create.subnet6.is_none() && (create.gateway6.is_some() || create.ip_range6.is_some()) {
            return fail(
                INVALID_CONFIG,
                "\"gateway6\" and \"ipRange6\" need \"subnet6\"",
            );
        }
        if create.subnet6.is_some() && create.ipv6 != Some(true) {
            return fail(INVALID_CONFIG, "\"subnet6\" needs \"ipv6\": true");
        }
        if create.ipv4 == Some(false) && create.ipv6 != Some(true) {
            return fail(
                INVALID_CONFIG,
                "\"ipv4\": false (an IPv6-only network) needs \"ipv6\": true",
            );
        }
        if create.ipv4 == Some(false) && create.subnet.is_some() {
            return fail(
                INVALID_CONFIG,
                "\"ipv4\": false (an IPv6-only network) takes no \"subnet\"",
            );
        }
        Ok(NetConf {
            cni_version,
            name,
            network,
            socket: field(&obj, "socket", "a path")?
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET)),
            create,
            runtime: field(&obj, "runtimeConfig", "an object")?.unwrap_or_default(),
            prev_result: field(&obj, "prevResult", "an object")?,
            valid_attachments: field(
                &obj,
                "cni.dev/valid-attachments",
                "a list of {containerID, ifname}",
            )?,
        })
    }

    /// Is the config at least `version` (the verb's minimum)?
    pub fn at_least(&self, version: &str) -> bool {
        let key = |v: &str| -> Vec<u32> { v.split('.').filter_map(|p| p.parse().ok()).collect() };
        key(&self.cni_version) >= key(version)
    }
}

/// What VERSION reads: only `cniVersion`, and stdin may be empty.
pub fn version_of(stdin: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    v.get("cniVersion")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> CniResult<NetConf> {
        NetConf::parse(s.as_bytes())
    }

    #[test]
    fn podman_config_with_runtime_config() {
        let c = parse(
            r#"{"cniVersion":"1.0.0","name":"web","type":"netd-cni","socket":"/tmp/x.sock",
                "capabilities":{"portMappings":true,"aliases":true},
                "runtimeConfig":{"aliases":{"web":["abc123"]},
                "portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}}"#,
        )
        .unwrap();
        assert_eq!(c.network, "web");
        assert_eq!(c.socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!(c.runtime.port_mappings[0].host_port, 8080);
        assert_eq!(c.runtime.aliases["web"], vec!["abc123".to_string()]);
        assert!(c.create.is_empty());
    }

    #[test]
    fn bad_configs_get_the_spec_codes() {
        let cases = [
            ("nope", DECODE_FAILURE),
            ("[]", DECODE_FAILURE),
            (r#"{"name":"a","type":"netd-cni"}"#, INVALID_CONFIG),
            (
                r#"{"cniVersion":"0.3.1","name":"a","type":"netd-cni"}"#,
                INCOMPATIBLE_VERSION,
            ),
            (
                r#"{"cniVersion":"1.0.0","type":"netd-cni"}"#,
                INVALID_CONFIG,
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"a","type":"bridge"}"#,
                INVALID_CONFIG,
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"a","type":"netd-cni","subnet":"300.1.0.0/16"}"#,
                INVALID_CONFIG,
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"a","type":"netd-cni","gateway":"10.0.0.1"}"#,
                INVALID_CONFIG,
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"a","type":"netd-cni","ipam":{}}"#,
                UNSUPPORTED_FIELD,
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"a","type":"netd-cni","subnett":"10.0.0.0/8"}"#,
                UNSUPPORTED_FIELD,
            ),
        ];
        for (conf, code) in cases {
            assert_eq!(parse(conf).unwrap_err().code, code, "{conf}");
        }
    }

    #[test]
    fn ipv6_keys() {
        let c = parse(
            r#"{"cniVersion":"1.0.0","name":"a","type":"netd-cni","subnet":"10.88.0.0/24",
                "ipv6":true,"subnet6":"fd00:88::/64","gateway6":"fd00:88::1"}"#,
        )
        .unwrap();
        assert_eq!(c.create.ipv6, Some(true));
        assert_eq!(c.create.subnet6, Some("fd00:88::/64".parse().unwrap()));
        assert_eq!(c.create.gateway6, Some("fd00:88::1".parse().unwrap()));
        let only6 = parse(
            r#"{"cniVersion":"1.0.0","name":"a","type":"netd-cni","ipv6":true,"ipv4":false}"#,
        )
        .unwrap();
        assert_eq!(only6.create.ipv4, Some(false));
        assert!(!only6.create.is_empty());
        for bad in [
            r#"{"cniVersion":"1.0.0","name":"a","type":"netd-cni","ipv4":false}"#,
            r#"{"cniVersion":"1.0.0","name":"a","type":"netd-cni","ipv4":false,"ipv6":true,"subnet":"10.1.0.0/24"}"#,
            r#"{"cniVersion":"1.0.0","name":"a","type":"netd-cni","ipv4":"no","ipv6":true}"#,
            r#"{"cniVersion":"1.0.0","name":"a","type":"netd-cni","subnet6":"fd00:88::/64"}"#,
            r#"{"cniVersion":"1.0.0","name":"a","type":"netd-cni","ipv6":true,"gateway6":"fd00::1"}"#,
            r#"{"cniVersion":"1.0.0","name":"a","type":"netd-cni","ipv6":true,"subnet6":"10.0.0.0/8"}"#,
        ] {
            assert_eq!(parse(bad).unwrap_err().code, INVALID_CONFIG, "{bad}");
        }
    }

    #[test]
    fn versions_compare_numerically() {
        let c = parse(r#"{"cniVersion":"0.4.0","name":"a","type":"netd-cni"}"#).unwrap();
        assert!(c.at_least("0.4.0") && !c.at_least("1.1.0"));
        assert_eq!(
            version_of(br#"{"cniVersion":"1.0.0"}"#).as_deref(),
            Some("1.0.0")
        );
        assert_eq!(version_of(b""), None);
    }
}
