//! kioskd: a realtime session coordinator for pay-per-minute kiosks. The server crate:
//! configuration, HTTP adapters, storage, metrics and the CLI's building blocks. The
//! actors live in `kioskd-actors`, the wire formats in `kioskd-protocol`.

pub mod accounts;
pub mod agent;
pub mod app;
pub mod attendance;
pub mod audit;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod devices;
pub mod fleet;
pub mod games;
pub mod http;
pub mod identity;
pub mod kiosk_auth;
pub mod maintainers;
pub mod net;
pub mod operators;
pub mod opscli;
pub mod orders;
pub mod packages;
pub mod passwords;
pub mod payments;
pub mod platform;
pub mod reports;
pub mod sampler;
pub mod service_error;
pub mod services;
pub mod sms;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub mod timefmt;
pub mod upstream;

pub use app::Application;
pub use config::Config;
