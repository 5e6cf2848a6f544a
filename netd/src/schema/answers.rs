//! Small answers: ids, removals, errors, resolv.conf, check.
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Every error body: one line that says what was wrong.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub message: String,
}

/// Answer of create/add calls.
#[derive(Debug, Serialize, Deserialize)]
pub struct Created {
    #[serde(rename = "Id")]
    pub id: String,
}

/// Answer of `DELETE` calls and of `POST /v1/reset`: what was removed
/// (a network's name; a container's names, with the containers that
/// shared its namespace; everything reset removed).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Removed<T = Vec<String>> {
    #[serde(rename = "Removed")]
    pub removed: T,
}

/// Answer of `POST /v1/networks/prune`: the networks removed, by name.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Pruned {
    #[serde(rename = "NetworksDeleted")]
    pub networks_deleted: Vec<String>,
}

/// `GET /v1/containers/NAME/resolv-conf`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    pub resolv_conf: String,
}

/// `GET /v1/containers/NAME/check`: what the kernel lacks of the stored
/// state, one sentence each (empty: all there).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Problems {
    pub problems: Vec<String>,
}
