//! rackbox: Metal-as-a-Service in one static binary.
//!
//! The rooms of the house (see ARCHITECTURE.md): `model` (data and rules, no I/O), `store` (redb),
//! `service` (the only code that changes state), `http` (native API, later boot and MAAS faces),
//! `power` (BMC drivers), `tftp` (boot loaders for firmware), `cli` (the command-line client),
//! `daemon` (wiring and life of `rackbox serve`), `agent` (the machine side, in the ephemeral
//! ramdisk).

pub mod agent;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod http;
pub mod model;
pub mod power;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod tftp;
