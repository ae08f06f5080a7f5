//! kioskd's integration tests, in one test binary (`it`): one link and one copy of the
//! dependencies' generic code instead of one per file, which is most of what building
//! the tests costs. cargo-nextest still runs every test in a process of its own; select a
//! file's tests with its module path, e.g. `cargo nextest run -E 'test(/^restart::/)'` or
//! simply `cargo nextest run restart::`.
//!
//! Each module below was a test binary of its own until 2026-12; they share `common`
//! (the test app, databases, clients and stand-ins).

mod common;

mod agent;
mod app_api;
mod attendance;
mod attendance_actor;
mod attendance_bulk;
mod attendance_cli;
mod attendance_ws;
mod bad_input;
mod broker;
mod catalog;
mod cli;
mod cluster;
mod demo;
mod edge;
mod flows;
mod hardening;
mod log_hygiene;
mod operators;
mod ops_cli;
mod ops_console;
mod packages;
mod phone;
mod pricing;
mod prometheus;
mod races;
mod rest;
mod restart;
mod upstream;
mod ws;
