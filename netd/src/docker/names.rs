//! Names Docker's endpoints after their containers (`--docker-host`): the
//! driver protocol carries ids only, so every few seconds netd asks dockerd
//! (`GET /networks/ID`) about the networks that still have unnamed
//! endpoints. dockerd is asked outside the agent lock and with a time
//! limit, so a slow or absent dockerd never holds up the agent.
use std::{path::PathBuf, sync::Arc, time::Duration};

use tracing::debug;

use crate::{agent::SharedAgent, api::client::Client};

const PERIOD: Duration = Duration::from_secs(2);
const LIMIT: Duration = Duration::from_secs(2);

pub async fn follow(agent: Arc<SharedAgent>, socket: PathBuf) {
    let client = Client::new(&socket);
    loop {
        tokio::time::sleep(PERIOD).await;
        let networks = agent.state().await.docker_unnamed_networks();
        for id in networks {
            let answer = tokio::time::timeout(
                LIMIT,
                client.get::<serde_json::Value>(&format!("/networks/{id}")),
            )
            .await;
            let v = match answer {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => {
                    debug!(network = %id, error = %format!("{e:#}"), "dockerd did not answer");
                    continue;
                }
                Err(_) => continue,
            };
            let names: Vec<(String, String)> = v["Containers"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(_, c)| {
                    Some((
                        c["EndpointID"].as_str()?.to_string(),
                        c["Name"].as_str()?.to_string(),
                    ))
                })
                .collect();
            agent.lock().await.docker_name_endpoints(&names);
        }
    }
}
