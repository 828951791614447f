//! What the API shows of the cache: images, boot resources, imports and gc reports as JSON.
//! The stored records are in [`super::records`]; these wrap them with what only the cache
//! knows (which image is a default, where machines download it).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::blob::Space;
use super::records::{BootResource, Image};

/// An image as the API shows it.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ImageView {
    #[serde(flatten)]
    pub image: Image,
    /// Whether deploys of its os/arch that name no image get this one.
    pub default: bool,
    /// Where machines download it (relative to the appliance's URL).
    pub download_path: String,
}

/// A boot resource as the API shows it.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct BootView {
    #[serde(flatten)]
    pub boot: BootResource,
    pub download_path: String,
}

/// Images and the cache's space.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ImageList {
    pub images: Vec<ImageView>,
    pub space: Space,
    /// Imports still running.
    pub imports_running: usize,
}

/// What gc removed.
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct GcReport {
    /// Digests (file names) of the removed blobs.
    pub removed: Vec<String>,
    pub freed_bytes: u64,
    pub space: Space,
}

/// The state of one import, as /api/v1/images/imports shows it.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ImportView {
    pub id: String,
    /// "image" or "boot_resource".
    pub kind: String,
    /// Image name, or arch/name of a boot resource.
    pub name: String,
    /// The URL, or "upload".
    pub source: String,
    /// running, done or failed.
    pub state: String,
    pub bytes_done: u64,
    /// Known from the request, Content-Length or Content-Range.
    pub bytes_total: Option<u64>,
    /// Download attempts so far (a resumed download counts each).
    pub attempts: u32,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    pub sha256: Option<String>,
    pub error: Option<String>,
}
