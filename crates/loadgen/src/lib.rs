//! Rookery's load harness.
//!
//! - [`dataset`] / [`seed`]: a deterministic instance (power-law follower graph, statuses
//!   with replies and hashtags, favourites) bulk-loaded into the services' schemas, plus
//!   media and notification-producing activity through the public API;
//! - [`workload`]: the request mix of Zipf-chosen users;
//! - [`client`] / [`rate`]: open-loop (fixed arrival rate, no coordinated omission) or
//!   closed-loop HTTP/1.1 keep-alive connections, to loopback only;
//! - [`stats`]: HdrHistogram latencies per endpoint;
//! - [`probe`]: `/metrics` and `/proc` of the stack's processes;
//! - [`bench`]: the scenarios of `make bench` and their report;
//! - [`baseline`]: the bare axum and REST → gRPC endpoints the gateway is compared with.

pub mod api;
pub mod baseline;
pub mod bench;
pub mod client;
pub mod dataset;
pub mod graph;
pub mod probe;
pub mod rate;
pub mod seed;
pub mod stats;
pub mod store;
pub mod workload;
pub mod zipf;
