//! The versioned HTTP/JSON API on `RUN_DIR/netd.sock`, and its client.
pub mod client;
pub mod server;
pub mod types;
