//! Bodies of the remote driver calls (`NetworkDriver.*`), as dockerd 20.10
//! sends them (see shared/RUNTIMES.md). Unknown fields are ignored; missing
//! optional ones take their defaults.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The keys of the `Options` objects netd reads.
pub const OPT_GENERIC: &str = "com.docker.network.generic";
pub const OPT_INTERNAL: &str = "com.docker.network.internal";
pub const OPT_IPV6: &str = "com.docker.network.enable_ipv6";
/// Docker 28: `false` for `docker network create --ipv4=false`.
pub const OPT_IPV4: &str = "com.docker.network.enable_ipv4";
pub const OPT_PORTMAP: &str = "com.docker.network.portmap";
/// Docker 28, in ProgramExternalConnectivity: another endpoint of the
/// sandbox is its IPv6 gateway (and deals with IPv6 host addresses).
pub const OPT_NO_PROXY_6TO4: &str = "com.docker.network.driver.private.no_proxy_6to4";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamData {
    #[serde(default)]
    pub pool: String,
    #[serde(default)]
    pub gateway: String,
}

#[derive(Debug, Deserialize)]
pub struct CreateNetwork {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "Options", default)]
    pub options: BTreeMap<String, Value>,
    #[serde(rename = "IPv4Data", default)]
    pub ipv4_data: Vec<IpamData>,
    #[serde(rename = "IPv6Data", default)]
    pub ipv6_data: Vec<IpamData>,
}

#[derive(Debug, Deserialize)]
pub struct NetworkRef {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Interface {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    #[serde(
        rename = "AddressIPv6",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub address_ipv6: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac_address: String,
}

#[derive(Debug, Deserialize)]
pub struct CreateEndpoint {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// Absent when the driver is to allocate everything.
    #[serde(rename = "Interface", default)]
    pub interface: Option<Interface>,
    #[serde(rename = "Options", default)]
    pub options: BTreeMap<String, Value>,
}

/// The answer to CreateEndpoint: only what Docker left empty.
#[derive(Debug, Default, Serialize)]
pub struct CreateEndpointAnswer {
    #[serde(rename = "Interface", skip_serializing_if = "Option::is_none")]
    pub interface: Option<Interface>,
}

/// DeleteEndpoint, EndpointOperInfo, Leave, RevokeExternalConnectivity.
#[derive(Debug, Deserialize)]
pub struct EndpointRef {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
}

#[derive(Debug, Deserialize)]
pub struct Join {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(rename = "SandboxKey", default)]
    pub sandbox_key: String,
    #[serde(rename = "Options", default)]
    pub options: BTreeMap<String, Value>,
}

#[derive(Debug, Serialize)]
pub struct InterfaceName {
    #[serde(rename = "SrcName")]
    pub src_name: String,
    #[serde(rename = "DstPrefix")]
    pub dst_prefix: String,
}

#[derive(Debug, Serialize)]
pub struct JoinAnswer {
    #[serde(rename = "InterfaceName")]
    pub interface_name: InterfaceName,
    /// Empty on internal networks (no default route, as Docker's bridge).
    #[serde(rename = "Gateway", skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    /// The IPv6 default route's next hop: empty without IPv6 and on
    /// internal networks.
    #[serde(rename = "GatewayIPv6", skip_serializing_if = "String::is_empty")]
    pub gateway_ipv6: String,
}

/// ProgramExternalConnectivity.
#[derive(Debug, Deserialize)]
pub struct Program {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(rename = "Options", default)]
    pub options: BTreeMap<String, Value>,
}

/// One `com.docker.network.portmap` entry.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    pub proto: u8,
    /// The container's port.
    pub port: u16,
    #[serde(rename = "HostIP", default)]
    pub host_ip: String,
    #[serde(default)]
    pub host_port: u16,
    #[serde(default)]
    pub host_port_end: u16,
}

/// The portmap in `options` (none when absent or null).
pub fn portmap(options: &BTreeMap<String, Value>) -> Result<Vec<PortBinding>, String> {
    match options.get(OPT_PORTMAP) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => {
            serde_json::from_value(v.clone()).map_err(|e| format!("bad {OPT_PORTMAP} option: {e}"))
        }
    }
}

/// `-o K=V` options of `docker network create`, as strings.
pub fn generic_options(options: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
    let Some(Value::Object(map)) = options.get(OPT_GENERIC) else {
        return BTreeMap::new();
    };
    map.iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), v)
        })
        .collect()
}

/// A boolean top-level option (`true` or `"true"`); `None` when absent
/// or not a boolean.
fn flag_value(options: &BTreeMap<String, Value>, key: &str) -> Option<bool> {
    match options.get(key) {
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
}

/// Is the option set to true?
pub fn flag(options: &BTreeMap<String, Value>, key: &str) -> bool {
    flag_value(options, key) == Some(true)
}

/// Is the option given and false (a default-on option turned off)?
pub fn flag_off(options: &BTreeMap<String, Value>, key: &str) -> bool {
    flag_value(options, key) == Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_network_as_observed() {
        let body = r#"{"NetworkID":"0a2d","Options":{"com.docker.network.enable_ipv6":false,"com.docker.network.generic":{"com.docker.network.bridge.enable_icc":"false","n":5},"com.docker.network.internal":true},"IPv4Data":[{"AddressSpace":"LocalDefault","Gateway":"172.18.0.1/16","Pool":"172.18.0.0/16"}],"IPv6Data":[]}"#;
        let req: CreateNetwork = serde_json::from_str(body).unwrap();
        assert_eq!(req.ipv4_data[0].pool, "172.18.0.0/16");
        assert_eq!(req.ipv4_data[0].gateway, "172.18.0.1/16");
        assert!(flag(&req.options, OPT_INTERNAL));
        assert!(!flag(&req.options, OPT_IPV6));
        let g = generic_options(&req.options);
        assert_eq!(g["com.docker.network.bridge.enable_icc"], "false");
        assert_eq!(g["n"], "5");
    }

    #[test]
    fn portmap_as_observed() {
        let body = r#"{"NetworkID":"n","EndpointID":"e","Options":{"com.docker.network.portmap":[{"Proto":6,"IP":"","Port":70,"HostIP":"","HostPort":7000,"HostPortEnd":7005},{"Proto":17,"IP":"","Port":53,"HostIP":"127.0.0.1","HostPort":5353,"HostPortEnd":5353}]}}"#;
        let req: Program = serde_json::from_str(body).unwrap();
        let pm = portmap(&req.options).unwrap();
        assert_eq!(pm.len(), 2);
        assert_eq!(
            (pm[0].host_port, pm[0].host_port_end, pm[0].port),
            (7000, 7005, 70)
        );
        assert_eq!((pm[1].proto, pm[1].host_ip.as_str()), (17, "127.0.0.1"));
        let none: Program = serde_json::from_str(
            r#"{"NetworkID":"n","EndpointID":"e","Options":{"com.docker.network.portmap":null}}"#,
        )
        .unwrap();
        assert!(portmap(&none.options).unwrap().is_empty());
        let bad: Program = serde_json::from_str(r#"{"NetworkID":"n","EndpointID":"e","Options":{"com.docker.network.portmap":[{"Proto":"x"}]}}"#).unwrap();
        assert!(portmap(&bad.options).is_err());
    }

    #[test]
    fn ipv6_network_and_endpoint_as_sent() {
        let body = r#"{"NetworkID":"0a2e","Options":{"com.docker.network.enable_ipv6":true,"com.docker.network.enable_ipv4":false},"IPv4Data":[],"IPv6Data":[{"AddressSpace":"LocalDefault","Gateway":"fd00:91::1/64","Pool":"fd00:91::/64"}]}"#;
        let req: CreateNetwork = serde_json::from_str(body).unwrap();
        assert_eq!(req.ipv6_data[0].pool, "fd00:91::/64");
        assert!(flag(&req.options, OPT_IPV6));
        assert!(flag_off(&req.options, OPT_IPV4) && !flag(&req.options, OPT_IPV4));
        assert!(!flag_off(&req.options, OPT_INTERNAL));
        let ep: CreateEndpoint = serde_json::from_str(r#"{"NetworkID":"n","EndpointID":"e","Interface":{"Address":"","AddressIPv6":"fd00:91::2/64","MacAddress":""}}"#).unwrap();
        assert_eq!(ep.interface.unwrap().address_ipv6, "fd00:91::2/64");
        let join = JoinAnswer {
            interface_name: InterfaceName {
                src_name: "x".into(),
                dst_prefix: "eth".into(),
            },
            gateway: String::new(),
            gateway_ipv6: "fd00:91::1".into(),
        };
        assert_eq!(
            serde_json::to_string(&join).unwrap(),
            r#"{"InterfaceName":{"SrcName":"x","DstPrefix":"eth"},"GatewayIPv6":"fd00:91::1"}"#
        );
    }

    #[test]
    fn endpoint_answer_has_only_what_was_empty() {
        let a = CreateEndpointAnswer {
            interface: Some(Interface {
                mac_address: "02:42:0a:00:00:02".into(),
                ..Default::default()
            }),
        };
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"Interface":{"MacAddress":"02:42:0a:00:00:02"}}"#
        );
        assert_eq!(
            serde_json::to_string(&CreateEndpointAnswer::default()).unwrap(),
            "{}"
        );
    }
}
