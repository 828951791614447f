//! rackbox: Metal-as-a-Service in one static binary.
//!
//! The rooms of the house (see ARCHITECTURE.md): `model` (data and rules, no I/O), `store` (redb),
//! `service` (the only code that changes state), `http` (native API, later boot and MAAS faces),
//! `power` (BMC drivers), `tftp` (boot loaders for firmware), `images` (the image cache), `cli`
//! (the command-line client), `daemon` (wiring and life of `rackbox serve`), `net` (interfaces, raw
//! packet socket, frames), `dhcp` (the boot network's DHCP/proxyDHCP server) and `agent` (the
//! machine side, in the ephemeral ramdisk).

pub mod agent;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dhcp;
pub mod http;
pub mod images;
pub mod model;
pub mod net;
pub mod power;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod tftp;
