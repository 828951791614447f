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

/// Which catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatalogKind {
    /// Availability zones: where a machine is, for allocation by `zone`.
    Zone,
    /// Resource pools: groups of machines kept for one team or purpose, for allocation by `pool`.
    Pool,
    /// Tags: free labels on machines, for allocation by `tags`.
    Tag,
}

impl CatalogKind {
    /// The kind's name in messages and errors ("zone", "pool", "tag").
    pub fn name(self) -> &'static str {
        match self {
            CatalogKind::Zone => "zone",
            CatalogKind::Pool => "pool",
            CatalogKind::Tag => "tag",
        }
    }

    /// Whether machine `m` is in the zone or pool, or carries the tag, called `name`.
    pub fn used_by(self, m: &crate::model::Machine, name: &str) -> bool {
        match self {
            CatalogKind::Zone => m.zone == name,
            CatalogKind::Pool => m.pool == name,
            CatalogKind::Tag => m.tags.contains(name),
        }
    }
}
