//! The integration tests, as one test binary (one build, one link): each
//! module is one area, through the real router, the real binary, real
//! SQLite files and, with `AGENTKEY_TEST_DATABASE_URL`, a real PostgreSQL
//! server. `common` holds the one `TestApp`, its request helpers, the
//! `on_every_backend!` macro and the process harness.

#[macro_use]
mod common;

mod abuse;
mod agent_tokens;
mod allowed_ip_ranges;
mod api_tokens;
mod audit;
mod authorize;
mod cli;
mod console;
mod console_browser;
mod docs_links;
mod durability;
mod e2e_binary;
mod errors;
mod first_start;
mod front_door;
mod gateway_nginx;
mod introspect;
mod list_edges;
mod metrics;
mod openapi;
mod permissions;
mod registry;
mod registry_updates;
mod replicas;
mod rotation;
mod store_contract;
mod transport;
mod tutorial;
mod webhook_retention;
mod webhooks;
