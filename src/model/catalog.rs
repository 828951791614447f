//! Zones, resource pools and tags: named groupings of machines, one record shape for all three.

/// A zone, resource pool or tag: a name with a description.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct NamedThing {
    /// Its name: what machines and allocation constraints refer to it by.
    pub name: String,
    /// What it is for, in the operator's words.
    #[serde(default)]
    pub description: String,
    /// When it was made, milliseconds since the Unix epoch.
    pub created_ms: u64,
}
