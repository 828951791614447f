//! rackbox: Metal-as-a-Service in one static binary.
//!
//! The rooms of the house are described in ARCHITECTURE.md.

pub mod tftp;
