//! agentkey: issues and verifies Apache Airflow agent tokens with the wire
//! contract of the Astro API v1 Agent Token endpoints.

pub mod allowlist;
pub mod app;
pub mod authz;
pub mod bootstrap;
pub mod cache;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod console;
pub mod http;
pub mod metrics;
pub mod model;
pub mod roles;
pub mod serve;
pub mod store;
pub mod throttle;
pub mod token;
pub mod transport;
pub mod usage;
pub mod verify;
pub mod webhooks;
